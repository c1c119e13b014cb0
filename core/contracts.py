"""The fixed activities' contracts: name, input and output, declared once for both sides.

Activities register under ``contract.name`` and the workflows call through the same object
(``workflows.calls.call``), so an activity name is never a string repeated on two sides, and a
test checks that every contract has exactly one implementation with these types. Names follow
``<area>.<verb>``; they are part of workflow histories, so a rename needs ``workflow.patched``.
Catalog tools are not here: each is an activity named after the tool (``docker.start``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from core.models import (
    Admission,
    AdmitRequest,
    Alert,
    ApprovalRecord,
    ChangeRecord,
    DecisionCheck,
    DecisionProof,
    IncidentState,
    LockGrant,
    LockRequest,
    Notification,
    Plan,
    PlanRequest,
    PolicyDecision,
    PolicyRequest,
    PreparedWrite,
    ToolCall,
    Triage,
    VerificationResult,
    VerifyRequest,
)
from core.planning import LLMPlanOutcome, LLMPlanRequest, LLMRoute

Out = TypeVar("Out")


@dataclass(frozen=True)
class Contract(Generic[Out]):
    """An activity's name, the types of its arguments, and the type of its result."""

    name: str
    inputs: tuple[type[Any], ...]
    output: type[Out]


TRIAGE = Contract("incident.triage", (Alert,), Triage)
VERIFY = Contract("incident.verify", (VerifyRequest,), VerificationResult)
PLAN_RUNBOOK = Contract("plan.runbook", (PlanRequest,), Plan)
LLM_ROUTE = Contract("llm.route", (PlanRequest,), LLMRoute)
LLM_PLAN = Contract("llm.plan", (LLMPlanRequest,), LLMPlanOutcome)
PREPARE = Contract("tool.prepare", (ToolCall,), PreparedWrite)
POLICY = Contract("policy.evaluate", (PolicyRequest,), PolicyDecision)
ADMIT = Contract("policy.admit", (AdmitRequest,), Admission)
VERIFY_DECISION = Contract("approvals.verify", (DecisionCheck,), DecisionProof)
RECORD_CHANGE = Contract("changes.record", (ChangeRecord,), bool)
GET_CHANGE = Contract("changes.get", (str,), ChangeRecord)
RECORD_APPROVAL = Contract("approvals.record", (str, ApprovalRecord), bool)
RECORD_INCIDENT = Contract("incidents.record", (IncidentState,), type(None))
PAUSED = Contract("control.paused", (), bool)
LOCK_TAKE = Contract("lock.take", (LockRequest,), LockGrant)
LOCK_RELEASE = Contract("lock.release", (LockRequest,), int)
LOCK_CHECK = Contract("lock.check", (LockRequest,), bool)
LOCK_ACQUIRE = Contract("lock.acquire", (LockRequest,), type(None))  # 0.1 lock workflows
NOTIFY = Contract("notify.event", (Notification,), int)

ALL: list[Contract[Any]] = [
    TRIAGE,
    VERIFY,
    PLAN_RUNBOOK,
    LLM_ROUTE,
    LLM_PLAN,
    PREPARE,
    POLICY,
    ADMIT,
    VERIFY_DECISION,
    RECORD_CHANGE,
    GET_CHANGE,
    RECORD_APPROVAL,
    RECORD_INCIDENT,
    PAUSED,
    LOCK_TAKE,
    LOCK_RELEASE,
    LOCK_CHECK,
    LOCK_ACQUIRE,
    NOTIFY,
]

# --- proactive operations (scheduled workflows) ------------------------------------------------

from core.schedules import (  # noqa: E402 - appended section
    AnomalyInput,
    Evaluation,
    ForecastInput,
    PatternReport,
    PatternReportInput,
    RouteRequest,
    RouteResult,
    RunRecord,
    SweepInput,
)

FORECAST_EVALUATE = Contract("forecast.evaluate", (ForecastInput,), Evaluation)
ANOMALIES_EVALUATE = Contract("anomalies.evaluate", (AnomalyInput,), Evaluation)
PATTERNS_REPORT = Contract("patterns.report", (PatternReportInput,), PatternReport)
FINDINGS_ROUTE = Contract("findings.route", (RouteRequest,), RouteResult)
SCHEDULE_FINISH = Contract("schedules.finish", (RunRecord,), type(None))
SWEEP_CERTIFICATES = Contract("sweeps.certificates", (SweepInput,), Evaluation)
SWEEP_BACKUPS = Contract("sweeps.backups", (SweepInput,), Evaluation)

ALL.extend(
    [
        FORECAST_EVALUATE,
        ANOMALIES_EVALUATE,
        PATTERNS_REPORT,
        FINDINGS_ROUTE,
        SCHEDULE_FINISH,
        SWEEP_CERTIFICATES,
        SWEEP_BACKUPS,
    ]
)

# --- incident memory and learning ---------------------------------------------------------------

from core.memory import (  # noqa: E402 - appended section
    FlapRequest,
    FlapVerdict,
    Recall,
    RecallRequest,
    Remembered,
)

MEMORY_REMEMBER = Contract("memory.remember", (IncidentState,), Remembered)
MEMORY_RECALL = Contract("memory.recall", (RecallRequest,), Recall)
MEMORY_FLAPPING = Contract("memory.flapping", (FlapRequest,), FlapVerdict)

ALL.extend([MEMORY_REMEMBER, MEMORY_RECALL, MEMORY_FLAPPING])

# --- correlation: one incident per problem ------------------------------------------------------

from core.models import ProblemClaim, ProblemClaimRequest, ProblemRelease  # noqa: E402

PROBLEM_CLAIM = Contract("problems.claim", (ProblemClaimRequest,), ProblemClaim)
PROBLEM_RELEASE = Contract("problems.release", (ProblemRelease,), type(None))

ALL.extend([PROBLEM_CLAIM, PROBLEM_RELEASE])

# --- topology: a child's incident waits for its parent's -----------------------------------------

from core.models import ParentRequest  # noqa: E402

TOPOLOGY_OPEN_PARENT = Contract("topology.open_parent", (ParentRequest,), str)

ALL.append(TOPOLOGY_OPEN_PARENT)
