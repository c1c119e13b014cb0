"""What the CLI does with the learned record: statistics, the record of an incident, policy
suggestions a human may accept, clearing learned restrictions, rebuilding the vector memory.

Every policy change here is a human's (the CLI names who) and lands in the change log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from activities.catalog import Catalog, ToolFailure
from activities.memory.record import records
from activities.store import PolicyStateError, Store
from approval.policy import decide
from core.config import Settings
from core.learning import Suggestion
from core.memory import ActionRecord, target_kind
from core.models import ChangeRecord, IncidentState, PolicyRequest, RiskLevel, TargetRef


class LearningError(Exception):
    """A request the CLI refuses, phrased for the user."""


def action_stats(settings: Settings, store: Store, alert: str | None = None) -> list[ActionRecord]:
    rows = store.outcomes(alert=alert)
    return records(rows, datetime.now(UTC), settings.memory.half_life)


def incident_record(settings: Settings, store: Store, state: IncidentState) -> list[str]:
    """The record of the incident's actions (or its runbook's candidates) for its alert and
    kind of target, seen from its target: what `incident show` cites."""
    triage = state.triage
    if triage is None or triage.target is None:
        return []
    target = str(triage.target)
    tools = [a.tool for a in state.plan.actions] if state.plan else []
    if not tools and triage.runbook is not None:
        tools = [r.tool for r in triage.runbook.remediations]
    rows = store.outcomes(
        alert=state.alert.name, kind=target_kind(target), limit=settings.memory.record_window
    )
    rows = [r for r in rows if r.at < state.opened_at]  # the record when it was decided
    found = records(rows, datetime.now(UTC), settings.memory.half_life, target=target)
    return [r.line for r in found if r.action in tools]


def _write_spec(catalog: Catalog, action: str, target: str) -> tuple[Any, TargetRef]:
    try:
        spec = catalog.get(action)
        ref = TargetRef.parse(target)
    except (ToolFailure, ValueError) as exc:
        raise LearningError(str(exc)) from None
    if not spec.is_write:
        raise LearningError(f"{action} is a read tool: it never needs approval")
    if ref.service != spec.service:
        raise LearningError(f"{action} does not act on {ref.service} targets")
    return spec, ref


def level_now(settings: Settings, store: Store, catalog: Catalog, action: str, target: str) -> Any:
    """The decision the policy would make now (no recent writes assumed)."""
    spec, ref = _write_spec(catalog, action, target)
    request = PolicyRequest(
        action=action, target=ref, default_level=spec.level, reversibility=spec.reversibility
    )
    return decide(settings, request, 0, store.learned_policy(action, str(ref)))


@dataclass
class Proposal:
    suggestion: Suggestion
    level: RiskLevel
    reasons: list[str]


def suggest(settings: Settings, store: Store, catalog: Catalog) -> list[Proposal]:
    """Suggestions whose level today is above the one suggested (nothing to lower otherwise)."""
    out = []
    for s in store.suggestions(settings.memory.suggest_after):
        try:
            decision = level_now(settings, store, catalog, s.action, s.target)
        except LearningError:
            continue  # a tool that no longer exists
        if decision.level.rank > s.suggested.rank and decision.level is not RiskLevel.FORBIDDEN:
            out.append(Proposal(s, decision.level, decision.reasons))
    return out


def accept(
    settings: Settings,
    store: Store,
    catalog: Catalog,
    action: str,
    target: str,
    level: RiskLevel,
    actor: str,
    reason: str,
    force: bool = False,
) -> tuple[ChangeRecord, RiskLevel, RiskLevel]:
    """A human lowers ``action`` on ``target`` to ``level``: (the change record, level before,
    level after). Only a current suggestion is accepted unless ``force``."""
    spec, ref = _write_spec(catalog, action, target)
    target = str(ref)
    if level not in (RiskLevel.NONE, RiskLevel.SOFT):
        raise LearningError("accept lowers to NONE or SOFT; raise levels in approval.overrides")
    if spec.level is RiskLevel.FORBIDDEN:
        raise LearningError(f"{action} is FORBIDDEN: no record lowers it")
    before = level_now(settings, store, catalog, action, target).level
    if not force and not any(
        p.suggestion.action == action and p.suggestion.target == target
        for p in suggest(settings, store, catalog)
    ):
        raise LearningError(
            f"{action} on {target} is not a current suggestion (homelab-agents policy suggest); "
            "--force accepts it anyway"
        )
    try:
        record = store.accept_override(action, target, level, actor, reason)
    except PolicyStateError as exc:
        raise LearningError(str(exc)) from None
    after = level_now(settings, store, catalog, action, target).level
    return record, before, after


def clear(store: Store, catalog: Catalog, action: str, target: str, actor: str, reason: str) -> Any:
    _, ref = _write_spec(catalog, action, target)
    try:
        return store.clear_restriction(action, str(ref), actor, reason)
    except PolicyStateError as exc:
        raise LearningError(str(exc)) from None


def revoke(
    store: Store, catalog: Catalog, action: str, target: str, actor: str, reason: str
) -> Any:
    _, ref = _write_spec(catalog, action, target)
    try:
        return store.revoke_override(action, str(ref), actor, reason)
    except PolicyStateError as exc:
        raise LearningError(str(exc)) from None


async def reindex(settings: Settings, store: Store) -> dict[str, int]:
    """Embed every recorded incident into the current embedder's collections (after a switch of
    embedder, or when Qdrant was down at close). Idempotent: point ids do not change."""
    from activities.memory.activities import MemoryActivities

    memory = MemoryActivities(settings, store)
    counts = {"stored": 0, "skipped": 0, "failed": 0}
    try:
        for state, run_id in store.iter_incidents():
            done = await memory.store_incident(state, run_id)
            if done.stored:
                counts["stored"] += 1
            elif done.reason.startswith(("embedding failed", "memory unavailable")):
                counts["failed"] += 1
                if done.reason.startswith("memory unavailable") and counts["stored"] == 0:
                    raise LearningError(done.reason)
            else:
                counts["skipped"] += 1
    finally:
        memory.vectors.close()
    return counts
