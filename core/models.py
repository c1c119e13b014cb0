"""Domain models shared by every layer.

They cross process boundaries (HTTP, Temporal payloads, the SQL store), so every field is typed and
validated here once; the workflow, activities and CLI exchange nothing but these models.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.memory import FlapLimit, Recall
from core.redact import redact, redact_text
from core.units import Duration


class Model(BaseModel):
    """Base for boundary models: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


# --- risk and policy ---------------------------------------------------------------------------


class RiskLevel(StrEnum):
    """Approval levels, ordered from least to most restrictive."""

    NONE = "NONE"
    SOFT = "SOFT"
    HARD = "HARD"
    FORBIDDEN = "FORBIDDEN"

    @property
    def rank(self) -> int:
        return _LEVEL_ORDER.index(self)

    def at_least(self, other: RiskLevel) -> RiskLevel:
        return self if self.rank >= other.rank else other


_LEVEL_ORDER = [RiskLevel.NONE, RiskLevel.SOFT, RiskLevel.HARD, RiskLevel.FORBIDDEN]


class Reversibility(StrEnum):
    """What undoing a write means: a compensating action, nothing to undo, or impossible."""

    COMPENSATED = "compensated"
    STATELESS = "stateless"
    IRREVERSIBLE = "irreversible"


class ApprovalMode(StrEnum):
    AUTO = "auto"
    OBSERVE = "observe"
    MANUAL = "manual"


class PolicyDecision(Model):
    level: RiskLevel
    dry_run: bool = False
    reasons: list[str] = Field(default_factory=list)


# --- targets and tools -------------------------------------------------------------------------


class TargetRef(Model):
    """A resource on a configured target: ``docker:local/web`` = service, target name, resource."""

    service: str
    target: str
    resource: str = ""

    def __str__(self) -> str:
        base = f"{self.service}:{self.target}"
        return f"{base}/{self.resource}" if self.resource else base

    @classmethod
    def parse(cls, text: str) -> TargetRef:
        service, sep, rest = text.partition(":")
        if not sep or not service or not rest:
            raise ValueError(f"target {text!r} is not of the form service:target[/resource]")
        target, _, resource = rest.partition("/")
        if not target:
            raise ValueError(f"target {text!r} names no configured target")
        return cls(service=service, target=target, resource=resource)


class ToolKind(StrEnum):
    READ = "read"
    WRITE = "write"


class ToolErrorKind(StrEnum):
    """Typed failure classes so callers branch on kind, never on message text."""

    NOT_FOUND = "not_found"
    INVALID = "invalid"
    UNREACHABLE = "unreachable"
    CONFLICT = "conflict"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"
    UNAUTHORIZED = "unauthorized"  # credentials rejected or lacking a permission: never retried
    RATE_LIMITED = "rate_limited"  # the API asked us to slow down: retried after Retry-After


class ToolError(Model):
    kind: ToolErrorKind
    message: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


class ToolCall(Model):
    tool: str
    target: TargetRef
    params: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    change_id: str = ""
    before: dict[str, Any] | None = None
    incident_id: str = Field(
        default="", description="the incident a write belongs to (names its safety snapshot)"
    )
    restores: str = Field(
        default="", description="the change this write undoes (a compensation or a manual undo)"
    )


class ToolResult(Model):
    tool: str
    target: str
    ok: bool
    data: dict[str, Any] = Field(default_factory=dict)
    error: ToolError | None = None
    summary: str = ""


class PreparedWrite(Model):
    """Before-state, exact dry-run preview and compensation of a write, captured before it runs."""

    before: dict[str, Any] = Field(default_factory=dict)
    preview: str
    noop: bool = False
    reversibility: Reversibility
    compensation: ToolCall | None = None
    default_level: RiskLevel = RiskLevel.HARD
    timeout_seconds: float = 120.0
    error: ToolError | None = None
    binding: str = Field(
        default="", description="hash of the change a human approves (approval/signing.py)"
    )
    risks: list[str] = Field(
        default_factory=list, description="what raises this call to HARD (see PolicyRequest)"
    )


# --- alerts ------------------------------------------------------------------------------------


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Alert(Model):
    """One alert, normalised from Alertmanager or the Docker events watcher, or made here: a
    scheduled job's finding (``schedule``), a daily sweep's (``sweep``), a child incident's
    unreachable parent (``topology``)."""

    name: str
    status: AlertStatus
    fingerprint: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    source: Literal["alertmanager", "docker-events", "manual", "schedule", "sweep", "topology"] = (
        "alertmanager"
    )
    received_at: datetime | None = None

    @field_validator("annotations")
    @classmethod
    def _redact_annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        """Annotations are free text (a curl line with its Authorization header, a DSN) and an
        alert is a workflow's input: in its history for good. Secrets go before it gets there."""
        return dict(redact(annotations))

    @field_validator("generator_url")
    @classmethod
    def _redact_url(cls, url: str) -> str:
        return redact_text(url)

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "warning")


LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,127}$")
MAX_LABELS = 64
MAX_LABEL_VALUE_BYTES = 1024  # labels become search attributes and summaries (Temporal: 2 KB)
MAX_ANNOTATIONS = 64
MAX_ANNOTATION_BYTES = 8192
EARLIEST_START = datetime(2000, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(hours=1)


def _text_problem(value: str, limit: int) -> str | None:
    """Why a label or annotation value cannot travel on (to Temporal, SQL, chat), if it cannot."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    if size > limit:
        return f"is {size} bytes (limit {limit})"
    return None


def check_labels(labels: dict[str, str], kind: str = "labels") -> dict[str, str]:
    """Prometheus label names, bounded count and sizes, text that encodes: or a ValueError."""
    maximum, limit = (
        (MAX_LABELS, MAX_LABEL_VALUE_BYTES)
        if kind == "labels"
        else (MAX_ANNOTATIONS, MAX_ANNOTATION_BYTES)
    )
    if len(labels) > maximum:
        raise ValueError(f"{len(labels)} {kind} (limit {maximum})")
    for name, value in labels.items():
        if not LABEL_NAME.fullmatch(name):
            raise ValueError(f"{kind} name {name[:64]!r} is not a Prometheus label name")
        problem = _text_problem(value, limit)
        if problem:
            raise ValueError(f"{kind}.{name} {problem}")
    return labels


def _rfc3339(value: Any, field: str) -> Any:
    """Alertmanager sends RFC 3339 strings; a number is not a time here (5 is not 1970-01-01)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{field} must be an RFC 3339 time string, not {type(value).__name__}")
    if "\x00" in value or len(value) > 64:
        raise ValueError(f"{field} is not an RFC 3339 time")
    return value


class AlertmanagerAlert(BaseModel):
    """One element of ``alerts`` in an Alertmanager webhook v4 payload."""

    model_config = ConfigDict(extra="ignore")

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = Field(default="", max_length=2048)
    fingerprint: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")

    @field_validator("startsAt", "endsAt", mode="before")
    @classmethod
    def _times_are_strings(cls, value: Any, info: Any) -> Any:
        return None if value is None else _rfc3339(value, info.field_name)

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _times_have_zones(cls, value: datetime | None, info: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{info.field_name} has no time zone (RFC 3339 needs Z or an offset)")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        check_labels(labels)
        if not labels.get("alertname"):
            raise ValueError("labels.alertname is required")
        return labels

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        return check_labels(annotations, "annotations")

    @field_validator("generatorURL")
    @classmethod
    def _url(cls, url: str) -> str:
        problem = _text_problem(url, 2048)
        if problem:
            raise ValueError(f"generatorURL {problem}")
        return url

    def time_problem(self, received_at: datetime) -> str | None:
        """A firing alert that started before 2000 or in the future is not a real alert."""
        if self.status is AlertStatus.FIRING:
            if self.startsAt < EARLIEST_START:
                return f"startsAt {self.startsAt.isoformat()} is before {EARLIEST_START.year}"
            if self.startsAt > received_at + CLOCK_SKEW:
                return f"startsAt {self.startsAt.isoformat()} is in the future"
        return None

    def to_alert(self, received_at: datetime) -> Alert:
        ends = self.endsAt if self.endsAt and self.endsAt.year > 1 else None
        return Alert(
            name=self.labels["alertname"],
            status=self.status,
            fingerprint=self.fingerprint,
            labels=self.labels,
            annotations=self.annotations,
            starts_at=self.startsAt,
            ends_at=ends,
            generator_url=self.generatorURL,
            source="alertmanager",
            received_at=received_at,
        )


class AlertmanagerEnvelope(BaseModel):
    """The webhook body without its alerts, which are validated one by one."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: AlertStatus
    receiver: str = ""
    groupKey: str = ""
    alerts: list[Any] = Field(min_length=1, description="validated one by one")


# --- incidents ---------------------------------------------------------------------------------


class Phase(StrEnum):
    TRIAGE = "Triage"
    DIAGNOSE = "Diagnose"
    PLAN = "Plan"
    GATE = "Gate"
    AWAITING_APPROVAL = "AwaitingApproval"
    PAUSED = "Paused"
    REMEDIATE = "Remediate"
    VERIFY = "Verify"
    ROLLBACK = "Rollback"
    RESOLVED = "Resolved"
    ESCALATED = "Escalated"
    CLOSED = "Closed"


class Outcome(StrEnum):
    RESOLVED = "resolved"  # remediated and verified
    RECOVERED = "recovered"  # verification passed without any write (already fine)
    ALERT_RESOLVED = "alert_resolved"  # the alert cleared before we acted
    ESCALATED = "escalated"  # a human must look: no safe fix, denied, failed, rolled back
    ROLLED_BACK = "rolled_back"
    DRY_RUN = "dry_run"  # observe mode: plan previewed, nothing changed
    CANCELLED = "cancelled"  # a user cancelled the workflow: what it changed was compensated
    JOINED = "joined"  # another open incident owns this problem: the alert joined it


class Evidence(Model):
    """A diagnostic result kept under a key the runbook's conditions refer to."""

    key: str
    tool: str
    target: str
    ok: bool
    data: dict[str, Any] = Field(default_factory=dict)
    error: ToolError | None = None


class Hypothesis(Model):
    statement: str
    evidence: list[str] = Field(default_factory=list)
    confidence: float = Field(default=0.5, ge=0, le=1)


class Action(Model):
    id: str
    tool: str
    target: TargetRef
    params: dict[str, Any] = Field(default_factory=dict)
    rationale: str = ""
    expected_effect: str = ""


class Expectation(Model):
    """A condition on a tool result: ``path`` into its data, compared with one operator."""

    path: str
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None
    exists: bool | None = None
    stable: bool = False
    compare_equals: bool = Field(default=False, description="set when `equals` was given")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _mark_equals(cls, data: Any) -> Any:
        # `equals: null` is a real comparison; remember that it was asked for, in a field that
        # survives serialisation (model_fields_set does not).
        if isinstance(data, dict) and "equals" in data and "compare_equals" not in data:
            data = {**data, "compare_equals": True}
        return data


class Condition(Expectation):
    """An expectation on one piece of diagnostic evidence, named by its runbook key."""

    evidence: str


class Check(Model):
    """A read tool plus the expectations its result must meet.

    ``abort_when``: conditions that mean waiting longer cannot help (the container exited again),
    so verification fails at once instead of at its timeout.
    """

    tool: str
    params: dict[str, Any] = Field(default_factory=dict)
    expect: list[Expectation] = Field(default_factory=list)
    abort_when: list[Expectation] = Field(default_factory=list)


class VerificationSpec(Model):
    checks: list[Check] = Field(default_factory=list)
    timeout: Duration = timedelta(seconds=60)
    interval: Duration = timedelta(milliseconds=250)
    stable_for: Duration = timedelta(seconds=0)


class PlannerAttempt(Model):
    """One step of the planner chain: which LLM provider was asked, and what came of it."""

    provider: str
    model: str = ""
    round: Literal["plan", "repair"] = "plan"
    outcome: Literal["ok", "invalid", "failed", "skipped"]
    error_type: str = ""
    reason: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Plan(Model):
    source: str
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    confidence: float = Field(default=0.5, ge=0, le=1)
    notes: list[str] = Field(default_factory=list)
    escalate: bool = False
    attempts: list[PlannerAttempt] = Field(
        default_factory=list, description="LLM providers tried before this plan, in order"
    )


class ApprovalVerdict(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    TIMEOUT = "timeout"
    NOT_REQUIRED = "not_required"
    FORBIDDEN = "forbidden"


class SignedDecision(Model):
    """What binds a decision to one approval and proves who made it (approval/signing.py)."""

    run_id: str = Field(default="", description="the workflow run the approval belongs to")
    binding: str = Field(default="", description="hash of the exact change that was shown")
    signer: str = Field(default="", description="whose key signed: the approver, or telegram-bot")
    proof: str = Field(default="", description="Ed25519 signature (base64); empty: unsigned")


class ApprovalDecision(SignedDecision):
    """A human decision on one gated action, as sent by the CLI, Telegram or ``temporal``."""

    action_id: str = ""
    approve: bool
    approver: str = Field(min_length=1, max_length=200)
    via: str = "update"
    reason: str = ""


class ApprovalSignal(SignedDecision):
    """Payload of the ``approve``/``deny`` signals (``temporal workflow signal --input``)."""

    approver: str = Field(min_length=1, max_length=200)
    action_id: str = ""
    reason: str = ""


class ApprovalRecord(Model):
    """What the workflow recorded about a decision attempt (accepted or refused)."""

    action_id: str
    verdict: ApprovalVerdict
    approver: str = ""
    via: str = ""
    reason: str = ""
    at: datetime
    accepted: bool = True


class ApprovalRequest(Model):
    """Everything a human needs to decide on a gated action."""

    incident_id: str
    workflow_id: str
    action: Action
    level: RiskLevel
    reasons: list[str]
    preview: str
    rollback_plan: str
    deadline: datetime
    approval_id: str = Field(
        default="", description="what a decision names: the action id, or a1#2 when asked again"
    )
    run_id: str = ""
    binding: str = Field(default="", description="hash of the exact change shown (preview, facts)")

    @property
    def id(self) -> str:
        return self.approval_id or self.action.id


class DecisionCheck(Model):
    """A decision and the approval it claims to decide, for ``approvals.verify``."""

    workflow_id: str
    request: ApprovalRequest
    decision: ApprovalDecision


class DecisionProof(Model):
    """Whether a decision is proven, and how (``via``: key:<signer>, or unsigned when allowed)."""

    ok: bool
    via: str = ""
    reason: str = ""


class VerificationResult(Model):
    passed: bool
    checks: list[dict[str, Any]] = Field(default_factory=list)
    first_pass_at: datetime | None = None
    verified_at: datetime | None = None
    detail: str = ""


class ChangeResult(StrEnum):
    APPLIED = "applied"
    DRY_RUN = "dry_run"
    FAILED = "failed"
    DENIED = "denied"
    TIMEOUT = "timeout"
    FORBIDDEN = "forbidden"
    SKIPPED = "skipped"


class ChangeRecord(Model):
    """One write attempt, as the append-only change log stores it."""

    change_id: str
    incident_id: str
    workflow_id: str
    run_id: str
    at: datetime
    step: str
    action: str
    target: str
    params: dict[str, Any] = Field(default_factory=dict)
    level: RiskLevel
    level_reasons: list[str] = Field(default_factory=list)
    approval: ApprovalVerdict
    approver: str = ""
    dry_run: bool = False
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    result: ChangeResult
    error: str = ""
    preview: str = ""
    reversibility: Reversibility = Reversibility.STATELESS
    rollback_action: str = ""
    rollback_params: dict[str, Any] = Field(default_factory=dict)
    rollback_of: str = ""
    rolled_back_by: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Triage(Model):
    """What the triage activity decided, frozen into history so replays never re-read files."""

    incident_type: str
    service: str
    target: TargetRef | None
    severity: str
    critical: bool
    runbook: Runbook | None
    notes: list[str] = Field(default_factory=list)
    approval_timeout: Duration
    approvers: list[str]
    ui_url: str = ""
    llm_offer: list[str] = Field(
        default_factory=list, description="tools a human lets the LLM propose beyond the runbook's"
    )
    parent_incidents: bool = Field(
        default=False,
        description="a runbook answers TargetUnreachable for this service: a child whose target "
        "and parent do not answer waits for the parent's incident",
    )
    site_queues: dict[str, str] = Field(
        default_factory=dict,
        description="service:target → the task queue of the site worker that runs its tools",
    )
    silencer: TargetRef | None = Field(
        default=None,
        description="the Alertmanager that mutes this alert while a human is asked (alerts "
        "from Alertmanager, when one is configured to)",
    )


class RunbookRemediation(Model):
    tool: str
    params: dict[str, Any] = Field(default_factory=dict)
    resource: Any = Field(
        default=None,
        description="what the action acts on when the incident names none (an engine-wide disk "
        "alert fixed on one container): a literal or {from: evidence.path}",
    )
    when: list[Condition] = Field(default_factory=list)
    rationale: str = ""
    expected_effect: str = ""


class RunbookStep(Model):
    key: str
    tool: str
    params: dict[str, Any] = Field(default_factory=dict)
    on: str = Field(
        default="",
        description="a step of another service (prometheus.query for a container's incident): "
        "the name of that service's target to read; default: its only target",
    )
    target: TargetRef | None = Field(
        default=None,
        description="set at triage for a step of another service: the target it reads",
    )


class Runbook(Model):
    """Data-only recipe for one class of alert (loaded from YAML)."""

    name: str
    description: str = ""
    service: str
    alerts: list[str]
    match_labels: dict[str, str] = Field(default_factory=dict)
    incident_type: str
    resource_labels: list[str] = Field(default_factory=list)
    diagnostics: list[RunbookStep] = Field(default_factory=list)
    remediations: list[RunbookRemediation] = Field(default_factory=list)
    verification: VerificationSpec = Field(default_factory=VerificationSpec)
    hypotheses: list[str] = Field(default_factory=list)
    max_actions: int = Field(default=2, ge=0, le=10)
    waits_for_target: bool = Field(
        default=False,
        description="the incident of a target that does not answer (an engine, a node): its "
        "diagnostics are expected to fail, and it waits in verification for the target to answer "
        "again while the incidents of what runs on it wait for it",
    )
    escalate_if_no_action: bool = Field(
        default=False,
        description="diagnosis-only outcome: when no remediation applies, hand the incident to a "
        "human with the evidence at once instead of waiting for verification",
    )
    order: Literal["learned", "pinned"] = Field(
        default="learned",
        description="learned: when several remediations apply, the one with the better verified "
        "record goes first; pinned: always the order written here (steps that build on each other)",
    )
    flapping: FlapLimit | None = Field(
        default=None,
        description="escalate instead of fixing again when the alert keeps re-firing on the same "
        "target (default: memory.flapping)",
    )


class IncidentInput(Model):
    alert: Alert
    dry_run: bool = False
    rollback_of: str = Field(default="", description="change id to undo (a manual rollback run)")


class ActionOutcome(Model):
    action: Action
    level: RiskLevel
    level_reasons: list[str] = Field(default_factory=list)
    approval: ApprovalVerdict
    approver: str = ""
    change_id: str = ""
    dry_run: bool = False
    preview: str = ""
    result: ChangeResult
    error: str = ""
    compensation: ToolCall | None = None


class JoinedAlert(Model):
    """Another alert of the same problem, handed to the incident that owns it."""

    fingerprint: str
    name: str
    status: AlertStatus
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = ""
    via: str = Field(default="", description="the incident (workflow id) it arrived as")
    waiting: bool = Field(
        default=False,
        description="a child's incident waiting for this (its parent's) incident to close",
    )


class ProblemClaimRequest(Model):
    """Who owns this problem: the canonical target and the runbook's incident type."""

    key: str = Field(max_length=400)
    target: str
    incident_type: str
    workflow_id: str
    run_id: str
    fingerprint: str


class ProblemClaim(Model):
    owned: bool
    owner_workflow_id: str
    note: str = ""


class ProblemRelease(Model):
    key: str
    workflow_id: str


class ParentRequest(Model):
    """A child incident found its parent unreachable: open (or find) the parent's incident."""

    parent: TargetRef
    child: str = Field(description="the child's workflow id")
    reason: str = Field(default="", max_length=2000)


UNREACHABLE_ALERT = "TargetUnreachable"
"""The alert a child incident raises for its parent (an engine, a node) that does not answer."""


def problem_key(target: str, incident_type: str) -> str:
    """One incident per problem: the canonical target plus what is wrong with it."""
    return f"{target}#{incident_type}"


class IncidentState(Model):
    """What the workflow exposes through its ``state`` query (and the CLI/UI show)."""

    incident_id: str
    workflow_id: str
    alert: Alert
    phase: Phase
    opened_at: datetime
    triage: Triage | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    plan: Plan | None = None
    actions: list[ActionOutcome] = Field(default_factory=list)
    pending_approval: ApprovalRequest | None = None
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    verification: VerificationResult | None = None
    rollbacks: list[str] = Field(default_factory=list)
    alerts_received: int = 0
    notifications_sent: int = 0
    alert_resolved: bool = False
    joined: list[JoinedAlert] = Field(
        default_factory=list, description="other alerts of the same problem that joined this one"
    )
    joined_to: str = Field(default="", description="the incident this alert joined (JOINED)")
    paused: bool = False
    outcome: Outcome | None = None
    closed_at: datetime | None = None
    notes: list[str] = Field(default_factory=list)


Triage.model_rebuild()


class PlanRequest(Model):
    incident_id: str
    alert: Alert
    triage: Triage
    evidence: list[Evidence] = Field(default_factory=list)
    recall: Recall = Field(
        default_factory=Recall, description="similar past incidents and the action record"
    )


class VerifyRequest(Model):
    target: TargetRef
    spec: VerificationSpec


class PolicyRequest(Model):
    """What the policy needs to know about one write: never anything an LLM supplied."""

    action: str
    target: TargetRef
    default_level: RiskLevel
    reversibility: Reversibility
    target_critical: bool = False
    risks: list[str] = Field(
        default_factory=list,
        description="what this call would do beyond the tool's usual (shrink a resource, widen "
        "its reach), found by the tool from the real before-state: each makes it at least HARD",
    )


class AdmitRequest(Model):
    """The last look at a write, under the target's lock."""

    policy: PolicyRequest
    lock: LockRequest | None = None


class Admission(Model):
    decision: PolicyDecision
    holds: bool = Field(description="the lock is still this incident's")
    paused: bool = Field(description="the kill switch is on")


class LockRequest(Model):
    target: str
    task_queue: str
    holder_workflow_id: str
    request_id: str
    holder_run_id: str = ""


class LockGrant(Model):
    """The answer to a lock request: granted, or who holds it (the requester is queued)."""

    granted: bool
    holder: str = ""
    took_over_from: str = Field(default="", description="a closed holder whose lock was taken")


class Notification(Model):
    """An incident event for humans (Telegram and logs); delivery never blocks an incident."""

    kind: Literal[
        "opened",
        "plan",
        "approval",
        "approval_closed",
        "action",
        "verification",
        "rollback",
        "resolved",
        "escalated",
    ]
    incident_id: str
    workflow_id: str
    title: str
    lines: list[str] = Field(default_factory=list)
    severity: str = "warning"
    ui_url: str = ""
    approval: ApprovalRequest | None = None
    action_id: str = ""
    verdict: str = ""


class LockState(Model):
    """Carried across continue-as-new by the per-target lock workflow."""

    target: str = ""
    queue: list[LockRequest] = Field(default_factory=list)


def lock_workflow_id(task_queue: str, target: str) -> str:
    """One lock per target per deployment (deployments are told apart by task queue)."""
    return f"target-lock-{task_queue}-{target}"
