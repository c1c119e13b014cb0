"""Incident memory: what the workflow asks the memory layer, and what it gets back.

Every model here travels in workflow history, so they stay small: a recall carries a handful of
past incidents and one record per action, never vectors or evidence. This module depends on
pydantic and ``core.units`` only, so ``core.models`` can use it (``PlanRequest.recall``,
``Runbook.flapping``) without an import cycle.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.units import Duration

if TYPE_CHECKING:
    from core.models import IncidentState


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FlapLimit(_Model):
    """When a re-firing alert is escalated instead of fixed again (``memory.flapping`` or a
    runbook's ``flapping``): the Nth incident of the same alert on the same target while the
    earlier N-1 were fixed within ``window``."""

    count: int = Field(
        default=3, ge=0, le=100, description="the incident that is escalated (0: never)"
    )
    window: Duration = timedelta(hours=1)

    @field_validator("count")
    @classmethod
    def _count(cls, value: int) -> int:
        if value == 1:
            raise ValueError("1 would escalate every incident: use 0 (off) or 2 and more")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


# --- recall -------------------------------------------------------------------------------------


class RecallRequest(_Model):
    """What the incident looks like, for the similarity search and the action record."""

    alert: str
    service: str
    target: str = Field(description="the incident's target, service:target[/resource]")
    runbook: str = ""
    text: str = Field(
        default="", max_length=6000, description="alert, labels and evidence digest (embedded)"
    )
    limit: int = Field(default=0, ge=0, le=20, description="0: memory.recall_limit")


class ActionRecord(_Model):
    """One action's verified record for one alert on one kind of target, with recency decay."""

    action: str
    alert: str
    target_kind: str
    applied: int = 0
    verified: int = Field(default=0, description="verification passed and never rolled back")
    failed_verification: int = 0
    rolled_back: int = 0
    write_failed: int = 0
    approved: int = Field(default=0, description="runs a human approved")
    thumbs_up: int = 0
    thumbs_down: int = 0
    score: float = Field(
        default=0.5, ge=0, le=1, description="decayed success rate; 0.5 without a record"
    )
    last_verified: datetime | None = None
    line: str = Field(default="", description="the record in words, for humans")


class PastIncident(_Model):
    """A similar closed incident and what came of it."""

    workflow_id: str
    target: str
    outcome: str
    score: float = Field(description="similarity")
    closed_at: datetime | None = None
    actions: list[str] = Field(default_factory=list, description="'docker.start: verified'")
    feedback: int = Field(default=0, description="👍 minus 👎")


class Recall(_Model):
    """Similar past incidents and the action record, for the planner, the prompt and humans."""

    incidents: list[PastIncident] = Field(default_factory=list)
    actions: list[ActionRecord] = Field(default_factory=list)
    embedder: str = ""
    notes: list[str] = Field(
        default_factory=list, description="why part of the memory was unavailable"
    )

    def record(self, action: str) -> ActionRecord | None:
        return next((r for r in self.actions if r.action == action), None)

    def lines(self) -> list[str]:
        """The recall in words: one line per action with a record, then the similar incidents."""
        out = [r.line for r in self.actions if r.line]
        for past in self.incidents[:3]:
            when = f"{past.closed_at:%Y-%m-%d %H:%M}" if past.closed_at else "?"
            did = ", ".join(past.actions) or "no action"
            out.append(
                f"similar ({past.score:.2f}): {past.workflow_id} on {past.target} {when}: "
                f"{past.outcome} ({did})"
            )
        return out

    @property
    def empty(self) -> bool:
        return not self.incidents and not self.actions


class Remembered(_Model):
    """What ``memory.remember`` did with a closed incident."""

    stored: bool
    point_id: str = ""
    collection: str = ""
    reason: str = Field(default="", description="why nothing was stored")


# --- flapping -----------------------------------------------------------------------------------


class FlapRequest(_Model):
    alert: str
    target: str
    limit: FlapLimit | None = Field(default=None, description="the runbook's; None: the config's")


class FlapVerdict(_Model):
    flapping: bool
    fixes: int = Field(default=0, description="earlier fixes of this alert on this target")
    limit: FlapLimit = Field(default_factory=FlapLimit)
    history: list[str] = Field(default_factory=list)
    reason: str = ""


# --- helpers shared by the workflow, the activities and the CLI ---------------------------------


def target_kind(target: str) -> str:
    """The kind of target as a pattern: ``docker:lab/web`` → ``docker:*/*``, ``hosts:nas`` →
    ``hosts:*`` (which engine or host does not change what an action does to its kind)."""
    service, _, rest = target.partition(":")
    return f"{service}:*/*" if "/" in rest else f"{service}:*"


def short_name(target: str) -> str:
    """What people call a target: its resource, else its name (``docker:lab/web`` → ``web``)."""
    rest = target.partition(":")[2]
    name, _, resource = rest.partition("/")
    return resource or name or target


_HEX_ID = re.compile(r"^[0-9a-f]{12,}$")
_TIMESTAMP = re.compile(r"^\[?\d{4}-\d{2}-\d{2}[T ][\d:.,]+(Z|[+-]\d{2}:?\d{2})?\]?\s*")
TEXT_LIMIT = 6000
EVIDENCE_LIMIT = 2000
_SKIP_LABELS = {"alertname", "severity"}


def _leaves(value: Any, path: str, out: list[str], budget: list[int]) -> None:
    """Scalar leaves that say what happened (states, exit codes, messages), not ids or clocks."""
    if budget[0] <= 0:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _leaves(item, f"{path}.{key}" if path else str(key), out, budget)
    elif isinstance(value, list):
        items = value if len(value) <= 6 else [*value[:2], *value[-4:]]  # logs end with the cause
        for item in items:
            _leaves(item, path, out, budget)
    elif isinstance(value, bool) or value is None:
        text = f"{path}={str(value).lower()}"
        out.append(text)
        budget[0] -= len(text) + 1
    elif isinstance(value, int) and abs(value) < 1000:
        text = f"{path}={value}"
        out.append(text)
        budget[0] -= len(text) + 1
    elif isinstance(value, str):
        clean = _TIMESTAMP.sub("", value.strip(), count=1)  # a time alone, or a log line's prefix
        if not clean or _HEX_ID.match(clean):
            return
        text = f"{path}={clean[:160]}"
        out.append(text)
        budget[0] -= len(text) + 1


def evidence_digest(evidence: list[Any], limit: int = EVIDENCE_LIMIT) -> str:
    """A bounded text of what the diagnostics found (each piece gets an equal share)."""
    if not evidence:
        return ""
    share = max(limit // len(evidence), 80)
    parts: list[str] = []
    for item in evidence:
        if not item.ok:
            kind = item.error.kind.value if item.error else "error"
            parts.append(f"{item.key} failed {kind}")
            continue
        leaves: list[str] = []
        _leaves(item.data, item.key, leaves, [share])
        parts.append(" ".join(leaves))
    return " ".join(p for p in parts if p)[:limit]


def incident_text(
    alert: str,
    service: str,
    target: str,
    runbook: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    digest: str,
) -> str:
    """The text an incident is embedded by: the same for the stored incident and the query."""
    summary = annotations.get("summary") or annotations.get("description") or ""
    label_text = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _SKIP_LABELS)
    pieces = [
        f"alert {alert}",
        f"service {service}",
        f"target {short_name(target)} kind {target_kind(target)}",
        f"runbook {runbook}" if runbook else "",
        summary[:500],
        label_text[:1000],
        digest,
    ]
    return "\n".join(p for p in pieces if p)[:TEXT_LIMIT]


def state_text(state: IncidentState) -> str:
    """``incident_text`` of an incident's state (at plan time or at close: the same text)."""
    triage = state.triage
    target = str(triage.target) if triage and triage.target else ""
    return incident_text(
        state.alert.name,
        triage.service if triage else "",
        target,
        triage.runbook.name if triage and triage.runbook else "",
        state.alert.labels,
        state.alert.annotations,
        evidence_digest(state.evidence),
    )


def recall_request(state: IncidentState) -> RecallRequest:
    """What the workflow asks ``memory.recall`` once it has triaged and diagnosed."""
    triage = state.triage
    assert triage is not None and triage.target is not None
    return RecallRequest(
        alert=state.alert.name,
        service=triage.service,
        target=str(triage.target),
        runbook=triage.runbook.name if triage.runbook else "",
        text=state_text(state),
    )


def ago(then: datetime, now: datetime) -> str:
    """``2 days ago``, ``5 minutes ago``: how humans read a record's last success."""
    seconds = max((now - then).total_seconds(), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
