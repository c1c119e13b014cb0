"""The agents' own Prometheus metrics (served by the intake's and the worker's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

ALERTS_RECEIVED = Counter(
    "homelab_alerts_received_total",
    "Alerts received by the intake, by source, status and routing result.",
    ["source", "status", "result"],
)
INTAKE_REJECTED = Counter(
    "homelab_intake_rejected_total", "Webhook requests or alerts rejected, by reason.", ["reason"]
)
INTAKE_LATENCY = Histogram(
    "homelab_intake_request_seconds", "Time to validate and route one webhook.", buckets=_LATENCY
)
TOOL_CALLS = Counter(
    "homelab_tool_calls_total",
    "Tool invocations by tool, kind and outcome.",
    ["tool", "kind", "outcome"],
)
TOOL_LATENCY = Histogram(
    "homelab_tool_duration_seconds", "Tool execution time.", ["tool"], buckets=_LATENCY
)
CHANGES = Counter(
    "homelab_changes_total", "Write attempts recorded in the change log.", ["action", "result"]
)
APPROVALS = Counter(
    "homelab_approvals_total", "Approval outcomes by verdict and channel.", ["verdict", "via"]
)
INCIDENTS_CLOSED = Counter(
    "homelab_incidents_closed_total",
    "Closed incidents by service and outcome.",
    ["service", "outcome"],
)
INCIDENT_DURATION = Histogram(
    "homelab_incident_duration_seconds",
    "Open to close, by outcome.",
    ["outcome"],
    buckets=(1, 2, 3, 5, 10, 30, 60, 120, 300, 600, 1800),
)
WATCHER_EVENTS = Counter(
    "homelab_docker_events_total", "Docker engine events seen by the watcher.", ["engine", "action"]
)
WATCHER_CONNECTED = Gauge(
    "homelab_docker_watcher_connected",
    "1 while the events stream of an engine is open.",
    ["engine"],
)
NOTIFICATIONS = Counter(
    "homelab_notifications_total", "Notifications by channel and outcome.", ["channel", "outcome"]
)
LLM_REQUESTS = Counter(
    "homelab_llm_requests_total",
    "LLM planner calls by provider, model and outcome (ok, invalid, cached, rate_limited, "
    "timeout, server_error, rejected, unreachable, config, error).",
    ["provider", "model", "outcome"],
)
LLM_TOKENS = Counter(
    "homelab_llm_tokens_total",
    "Tokens sent (in) and received (out) by the LLM planner, by provider and model.",
    ["provider", "model", "direction"],
)
LLM_COST = Counter(
    "homelab_llm_cost_usd_total",
    "LLM planner spend in USD (provider price override or litellm's bundled price map).",
    ["provider", "model"],
)
LLM_LATENCY = Histogram(
    "homelab_llm_request_seconds",
    "LLM planner call latency by provider and model.",
    ["provider", "model"],
    buckets=_LATENCY,
)
LLM_MONTH_SPEND = Gauge(
    "homelab_llm_month_spend_usd",
    "LLM spend recorded in the store for the current calendar month (UTC).",
)

# --- proactive operations: scheduled runs and their findings -----------------------------------

SCHEDULE_RUNS = Counter(
    "homelab_schedule_runs_total",
    "Scheduled runs by schedule, workflow and outcome (ok, failed).",
    ["schedule", "workflow", "outcome"],
)
SCHEDULE_RUN_DURATION = Histogram(
    "homelab_schedule_run_seconds",
    "Duration of a scheduled run, start to finish.",
    ["schedule"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
SCHEDULE_FINDINGS = Gauge(
    "homelab_schedule_findings",
    "Findings of the schedule's last run.",
    ["schedule"],
)
SCHEDULE_ROUTED = Counter(
    "homelab_schedule_findings_routed_total",
    "Findings routed as alerts, by schedule and result (opened, renotified, resolved, "
    "suppressed: incident closed within repeat_interval).",
    ["schedule", "result"],
)
SCHEDULE_LAST_SUCCESS = Gauge(
    "homelab_schedule_last_success_timestamp_seconds",
    "Unix time of the schedule's last successful run (the worker's start until the first).",
    ["schedule"],
)
SCHEDULE_PERIOD = Gauge(
    "homelab_schedule_period_seconds",
    "The longest expected gap between two runs of the schedule (from the config).",
    ["schedule"],
)

# --- incident memory and learning --------------------------------------------------------------

MEMORY_STORED = Counter(
    "homelab_memory_incidents_stored_total",
    "Closed incidents written to the incident memory, by embedder.",
    ["embedder"],
)
MEMORY_EMBED_FAILURES = Counter(
    "homelab_memory_embedding_failures_total",
    "Texts the embedder could not turn into a vector (nothing was stored or searched), by "
    "embedder and stage (remember, recall).",
    ["embedder", "stage"],
)
MEMORY_UNAVAILABLE = Counter(
    "homelab_memory_unavailable_total",
    "Calls to the vector store that failed (Qdrant unreachable, storage locked), by stage.",
    ["stage"],
)
MEMORY_RECALL_LATENCY = Histogram(
    "homelab_memory_recall_seconds",
    "Time to recall similar incidents and the action record for one incident.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MEMORY_FLAPPING = Counter(
    "homelab_memory_flapping_total",
    "Incidents found flapping (escalated instead of fixed again), by alert.",
    ["alert"],
)
LEARNED_RESTRICTIONS = Counter(
    "homelab_policy_learned_restrictions_total",
    "Actions made HARD on a target by learning (failed verifications or rollbacks).",
    ["action"],
)

# --- the intake's outbox: accepted alerts until Temporal has them -------------------------------

INTAKE_BACKLOG = Gauge(
    "homelab_intake_backlog",
    "Alerts the intake accepted (committed to its outbox) that Temporal does not have yet.",
)
INTAKE_BACKLOG_AGE = Gauge(
    "homelab_intake_backlog_oldest_seconds",
    "Age of the oldest alert waiting in the intake's outbox (0 when it is empty).",
)
INTAKE_DELIVERY = Histogram(
    "homelab_intake_delivery_seconds",
    "From the intake's 202 to Temporal having the alert (signal-with-start or signal).",
    buckets=_LATENCY,
)
INTAKE_DELIVERED = Counter(
    "homelab_intake_delivered_total",
    "Outbox rows closed, by result (delivered, refused: Temporal will never take the alert).",
    ["result"],
)

# --- correlation: one incident per problem ------------------------------------------------------

ALERTS_JOINED = Counter(
    "homelab_alerts_joined_total",
    "Alerts that joined an open incident of the same problem instead of opening their own, by "
    "incident type.",
    ["incident_type"],
)
INCIDENT_ALERTS = Histogram(
    "homelab_incident_alerts",
    "Alerts per closed incident (its own and those that joined it).",
    buckets=(1, 2, 3, 5, 10, 20, 50, 100),
)
CHILDREN_WAITING = Counter(
    "homelab_incidents_waiting_for_parent_total",
    "Incidents that took no action of their own because their parent (engine, node) did not "
    "answer: they waited for the parent's incident, by service.",
    ["service"],
)
