"""The memory activities: remember a closed incident, recall similar ones with the action record,
and tell a flapping alert from a new one.

Memory is advice, never a reason for an incident to fail: an embedding failure or an unreachable
Qdrant is counted, noted in the answer and otherwise ignored (the verified record comes from the
SQL store and is still there). Learning reads verified outcomes only (the change log and incident
records), never chat text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from temporalio import activity

from activities.memory.embedders import Embedder, EmbeddingError, make_embedder
from activities.memory.qdrant import Hit, MemoryUnavailable, VectorStore, point_id
from activities.memory.record import Outcome, records
from activities.store import Store
from core import contracts
from core.config import Settings
from core.memory import (
    FlapRequest,
    FlapVerdict,
    PastIncident,
    Recall,
    RecallRequest,
    Remembered,
    short_name,
    state_text,
    target_kind,
)
from core.metrics import (
    MEMORY_EMBED_FAILURES,
    MEMORY_FLAPPING,
    MEMORY_RECALL_LATENCY,
    MEMORY_STORED,
    MEMORY_UNAVAILABLE,
)
from core.models import IncidentState
from core.units import human_duration

log = logging.getLogger(__name__)


def _run_id() -> str:
    return (activity.info().workflow_run_id or "") if activity.in_activity() else ""


def describe(row: Outcome) -> str:
    if row.result == "failed":
        status = "write failed"
    elif row.rolled_back:
        status = "rolled back"
    elif row.verified is True:
        status = "verified"
    elif row.verified is False:
        status = "failed verification"
    else:
        status = "unverified"
    return f"{row.action}: {status}"


def payload(state: IncidentState, run_id: str) -> dict[str, object]:
    """What a point carries: enough to show a past incident without the SQL store, and small
    (the embedded store holds every payload in memory)."""
    triage = state.triage
    assert triage is not None and triage.target is not None
    verified = state.verification.passed if state.verification else None
    closed = state.closed_at or state.opened_at
    actions = []
    for o in state.actions:
        status = o.result.value
        if o.result.value == "applied" and verified is not None:
            status = "verified" if verified else "failed verification"
        actions.append(f"{o.action.tool}: {status}")
    return {
        "workflow_id": state.workflow_id,
        "run_id": run_id,
        "alert": state.alert.name,
        "service": triage.service,
        "target": str(triage.target),
        "outcome": state.outcome.value if state.outcome else "",
        "closed_at": closed.isoformat(),
        "actions": actions,
    }


class MemoryActivities:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        vectors: VectorStore | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.memory = settings.memory
        self.store = store
        key = settings.memory.api_key
        self.vectors = vectors or VectorStore(
            settings.memory_location, key.get_secret_value() if key else None
        )
        self.embedder = embedder or make_embedder(settings.memory.embedder)

    # --- remember -------------------------------------------------------------------------------

    @activity.defn(name=contracts.MEMORY_REMEMBER.name)
    async def remember(self, state: IncidentState) -> Remembered:
        return await self.store_incident(state, _run_id())

    async def store_incident(self, state: IncidentState, run_id: str) -> Remembered:
        """Embed and upsert one closed incident (the activity, and `memory reindex`)."""
        if not self.memory.enabled:
            return Remembered(stored=False, reason="memory.enabled is off")
        triage = state.triage
        if state.outcome is None or triage is None or triage.target is None:
            return Remembered(stored=False, reason="nothing to remember: no target or not closed")
        if state.plan is not None and state.plan.source == "manual-rollback":
            return Remembered(stored=False, reason="a manual rollback is not an incident")
        try:
            vector = await self.embedder.embed(state_text(state))
        except EmbeddingError as exc:
            MEMORY_EMBED_FAILURES.labels(self.embedder.name, "remember").inc()
            log.warning("incident %s not remembered: %s", state.workflow_id, exc)
            return Remembered(stored=False, reason=f"embedding failed: {exc}")
        pid = point_id(state.workflow_id, run_id)
        try:
            name = await asyncio.to_thread(
                self.vectors.upsert, self.embedder.name, pid, vector, payload(state, run_id)
            )
        except MemoryUnavailable as exc:
            MEMORY_UNAVAILABLE.labels("remember").inc()
            log.warning("incident %s not remembered: %s", state.workflow_id, exc)
            return Remembered(stored=False, point_id=pid, reason=f"memory unavailable: {exc}")
        MEMORY_STORED.labels(self.embedder.name).inc()
        return Remembered(stored=True, point_id=pid, collection=name)

    # --- recall ---------------------------------------------------------------------------------

    @activity.defn(name=contracts.MEMORY_RECALL.name)
    async def recall(self, request: RecallRequest) -> Recall:
        if not self.memory.enabled:
            return Recall()
        started = time.perf_counter()
        now = datetime.now(UTC)
        rows = await asyncio.to_thread(
            self.store.outcomes,
            alert=request.alert,
            kind=target_kind(request.target),
            limit=self.memory.record_window,
        )
        recall = Recall(
            actions=records(rows, now, self.memory.half_life, target=request.target),
            embedder=self.embedder.name,
        )
        hits = await self._similar(request, recall.notes)
        recall.incidents = await asyncio.to_thread(self._past, hits)
        recall.embedder = self.embedder.name
        MEMORY_RECALL_LATENCY.observe(time.perf_counter() - started)
        return recall

    async def _similar(self, request: RecallRequest, notes: list[str]) -> list[Hit]:
        try:
            vector = await self.embedder.embed(request.text)
        except EmbeddingError as exc:
            MEMORY_EMBED_FAILURES.labels(self.embedder.name, "recall").inc()
            notes.append(f"no similar incidents: embedding failed ({exc})")
            return []
        try:
            return await asyncio.to_thread(
                self.vectors.search,
                self.embedder.name,
                request.service,
                request.alert,
                vector,
                request.limit or self.memory.recall_limit,
                self.memory.min_score,
            )
        except MemoryUnavailable as exc:
            MEMORY_UNAVAILABLE.labels("recall").inc()
            notes.append(f"no similar incidents: memory unavailable ({exc})")
            return []

    def _past(self, hits: list[Hit]) -> list[PastIncident]:
        keys = [(str(h.payload.get("workflow_id")), str(h.payload.get("run_id"))) for h in hits]
        now_rows: dict[tuple[str, str], list[Outcome]] = {}
        for row in self.store.run_outcomes(keys):
            now_rows.setdefault((row.workflow_id, row.run_id), []).append(row)
        out = []
        for hit, key in zip(hits, keys, strict=True):
            p = hit.payload
            rows = now_rows.get(key)
            if rows is not None:  # what is known now: later rollbacks and votes included
                actions = [describe(r) for r in rows]
                feedback = sum(r.thumbs_up - r.thumbs_down for r in rows)
            else:
                actions = [str(a) for a in p.get("actions", [])]
                feedback = 0
            closed = p.get("closed_at")
            out.append(
                PastIncident(
                    workflow_id=key[0],
                    target=str(p.get("target", "")),
                    outcome=str(p.get("outcome", "")),
                    score=round(hit.score, 4),
                    closed_at=datetime.fromisoformat(str(closed)) if closed else None,
                    actions=actions,
                    feedback=feedback,
                )
            )
        return out

    # --- flapping -------------------------------------------------------------------------------

    @activity.defn(name=contracts.MEMORY_FLAPPING.name)
    async def flapping(self, request: FlapRequest) -> FlapVerdict:
        limit = request.limit or self.memory.flapping
        if limit.count == 0:
            return FlapVerdict(flapping=False, limit=limit, reason="the flapping guard is off")
        now = datetime.now(UTC)
        fixes = await asyncio.to_thread(
            self.store.recent_fixes, request.alert, request.target, now - limit.window, _run_id()
        )
        window = human_duration(limit.window.total_seconds())
        history = [
            f"{f['closed_at']:%Y-%m-%d %H:%M:%S} UTC {f['workflow_id']}: fixed by "
            f"{', '.join(f['actions']) or 'no write'}"
            for f in fixes
        ]
        flapping = len(fixes) >= limit.count - 1
        if flapping:
            MEMORY_FLAPPING.labels(request.alert).inc()
            reason = (
                f"{request.alert} keeps firing on {short_name(request.target)}: fixed "
                f"{len(fixes)} time(s) in the last {window} (limit {limit.count}); "
                "escalated instead of fixed again"
            )
        else:
            reason = (
                f"{len(fixes)} earlier fix(es) in the last {window} (escalates at {limit.count})"
            )
        return FlapVerdict(
            flapping=flapping, fixes=len(fixes), limit=limit, history=history, reason=reason
        )
