"""What the agents learn from verified outcomes, and the policy state humans decide.

* ``action_outcomes``: one row per applied (or failed) remediation of a closed incident, derived
  from its record (``incidents.record`` rewrites them with the record). Rollbacks and 👍/👎 are
  joined when read, so an undo or a vote after the close still counts.
* ``learned_restrictions``: an action that failed verification or was rolled back
  ``restrict_after`` times on a target is HARD there until a human clears it. Learning writes
  these on its own; it never writes an override.
* ``policy_overrides``: a lower level a human accepted (``policy accept``).

Every change of the last two is also a record in the append-only change log (step ``policy``).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from activities.memory.record import Outcome, bad_changes
from activities.memory.record import line as record_line
from activities.store.base import StoreBase
from activities.store.changes import append_change
from activities.store.schema import (
    action_outcomes,
    changes,
    feedback,
    incidents,
    learned_restrictions,
    policy_overrides,
)
from core.learning import LEARNED, POLICY_WORKFLOW, LearnedPolicy, Suggestion
from core.memory import target_kind
from core.models import (
    ApprovalVerdict,
    ChangeRecord,
    ChangeResult,
    IncidentState,
    Reversibility,
    RiskLevel,
)

REMEDIATION_STEP = "remediate"
"""The change log's step of a remediation (compensations and manual rollbacks are not learned)."""


class PolicyStateError(ValueError):
    """A policy change that cannot be made (nothing to clear, a FORBIDDEN action...)."""


def outcome_values(state: IncidentState, run_id: str) -> list[dict[str, Any]]:
    """The rows a closed incident contributes: its remediations that ran (applied or failed)."""
    triage = state.triage
    if state.outcome is None or triage is None or triage.target is None:
        return []
    if state.plan is not None and state.plan.source == "manual-rollback":
        return []  # a user's undo is not a remediation of the alert
    verified = state.verification.passed if state.verification is not None else None
    at = state.closed_at or state.opened_at
    rows = []
    for o in state.actions:
        if o.dry_run or not o.change_id:
            continue
        if o.result not in (ChangeResult.APPLIED, ChangeResult.FAILED):
            continue
        target = str(o.action.target)
        rows.append(
            {
                "workflow_id": state.workflow_id,
                "run_id": run_id,
                "action_id": o.action.id,
                "change_id": o.change_id,
                "alert": state.alert.name,
                "service": triage.service,
                "target_kind": target_kind(target),
                "target": target,
                "action": o.action.tool,
                "level": o.level.value,
                "approval": o.approval.value,
                "approver": o.approver,
                "result": o.result.value,
                "verified": verified if o.result is ChangeResult.APPLIED else None,
                "outcome": state.outcome.value,
                "at": at,
            }
        )
    return rows


def write_outcomes(conn: Connection, state: IncidentState, run_id: str) -> list[dict[str, Any]]:
    """Replace the incident's outcome rows (a record written again rewrites them)."""
    key = (action_outcomes.c.workflow_id == state.workflow_id) & (
        action_outcomes.c.run_id == run_id
    )
    conn.execute(action_outcomes.delete().where(key))
    rows = outcome_values(state, run_id)
    if rows:
        conn.execute(action_outcomes.insert(), rows)
    return rows


def _policy_change(
    action: str,
    target: str,
    what: str,
    level: RiskLevel,
    actor: str,
    reason: str,
    before: dict[str, Any],
    after: dict[str, Any],
    preview: str,
    human: bool,
) -> ChangeRecord:
    now = datetime.now(UTC)
    return ChangeRecord(
        change_id=str(uuid.uuid4()),
        incident_id=POLICY_WORKFLOW,
        workflow_id=POLICY_WORKFLOW,
        run_id="",
        at=now,
        step=POLICY_WORKFLOW,
        action=what,
        target=target,
        params={"action": action, "level": level.value, "reason": reason},
        level=level,
        level_reasons=[reason] if reason else [],
        approval=ApprovalVerdict.APPROVED if human else ApprovalVerdict.NOT_REQUIRED,
        approver=actor,
        before=before,
        after=after,
        result=ChangeResult.APPLIED,
        preview=preview,
        reversibility=Reversibility.STATELESS,
        started_at=now,
        finished_at=now,
    )


def _count_votes(rows: list[Outcome], votes: Sequence[Any]) -> None:
    """👍/👎 onto outcomes. A vote names a workflow and an action (or the whole incident); it
    belongs to the run of that workflow that closed last before the vote."""
    runs: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    by_run: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for r in rows:
        runs[r.workflow_id].append((r.at, r.run_id))
        by_run[(r.workflow_id, r.run_id)].append(r)
    for vote in votes:
        closed = sorted(run for run in runs[vote.workflow_id] if run[0] <= vote.at)
        if not closed:
            continue
        for r in by_run[(vote.workflow_id, closed[-1][1])]:
            if vote.action_id in ("", r.action_id):
                if vote.rating > 0:
                    r.thumbs_up += 1
                else:
                    r.thumbs_down += 1


class Learning(StoreBase):
    # --- outcomes -------------------------------------------------------------------------------

    def outcomes(
        self,
        *,
        alert: str | None = None,
        kind: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Outcome]:
        """Outcome rows, newest first, with their rollbacks and 👍/👎 as of now."""
        t = action_outcomes.c
        where = [
            column == value
            for column, value in (
                (t.alert, alert),
                (t.target_kind, kind),
                (t.action, action),
                (t.target, target),
            )
            if value is not None
        ]
        if since is not None:
            where.append(t.at > since)
        return self._outcomes(where, limit)

    def run_outcomes(self, keys: list[tuple[str, str]]) -> list[Outcome]:
        """The outcome rows of these (workflow id, run id) incidents (recalled ones)."""
        if not keys:
            return []
        t = action_outcomes.c
        return self._outcomes([sa.or_(*((t.workflow_id == w) & (t.run_id == r) for w, r in keys))])

    def _outcomes(self, where: list[Any], limit: int | None = None) -> list[Outcome]:
        """One query for the rows and whether each was rolled back since, one for their votes
        (both bounded by the same filter: no id lists bound as parameters)."""
        t = action_outcomes.c
        undo = changes.alias("undo")
        undone = (
            sa.exists()
            .where(undo.c.rollback_of == t.change_id)
            .where(undo.c.result == ChangeResult.APPLIED.value)
        )
        columns = [
            t.workflow_id,
            t.run_id,
            t.action_id,
            t.change_id,
            t.alert,
            t.target_kind,
            t.target,
            t.action,
            t.approval,
            t.result,
            t.verified,
            t.at,
        ]
        query = sa.select(*columns, undone.label("rolled_back")).where(*where)
        query = query.order_by(t.at.desc())
        picked = sa.select(t.workflow_id).where(*where).order_by(t.at.desc())
        if limit is not None:
            query, picked = query.limit(limit), picked.limit(limit)
        with self._tx() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return []
            votes = conn.execute(
                sa.select(
                    feedback.c.workflow_id,
                    feedback.c.action_id,
                    feedback.c.rating,
                    feedback.c.at,
                ).where(feedback.c.workflow_id.in_(picked.scalar_subquery()))
            ).all()
        out = [
            Outcome(
                workflow_id=r.workflow_id,
                run_id=r.run_id,
                action_id=r.action_id,
                change_id=r.change_id,
                alert=r.alert,
                target_kind=r.target_kind,
                target=r.target,
                action=r.action,
                approval=r.approval,
                result=r.result,
                verified=r.verified,
                at=r.at,
                rolled_back=bool(r.rolled_back),
            )
            for r in rows
        ]
        if votes:
            _count_votes(out, votes)
        return out

    # --- flapping -------------------------------------------------------------------------------

    def recent_fixes(
        self, alert: str, target: str, since: datetime, exclude_run: str = ""
    ) -> list[dict[str, Any]]:
        """Incidents of ``alert`` on ``target`` closed as fixed (resolved) since ``since``."""
        query = (
            sa.select(
                incidents.c.workflow_id,
                incidents.c.run_id,
                incidents.c.outcome,
                incidents.c.closed_at,
            )
            .where(incidents.c.alert == alert)
            .where(incidents.c.target == target)
            .where(incidents.c.outcome == "resolved")
            .where(incidents.c.closed_at >= since)
            .where(incidents.c.run_id != exclude_run)
            .order_by(incidents.c.closed_at)
        )
        with self._tx() as conn:
            found = [dict(r._mapping) for r in conn.execute(query)]
            for row in found:
                row["actions"] = list(
                    conn.execute(
                        sa.select(action_outcomes.c.action)
                        .where(action_outcomes.c.workflow_id == row["workflow_id"])
                        .where(action_outcomes.c.run_id == row["run_id"])
                        .where(action_outcomes.c.result == ChangeResult.APPLIED.value)
                    ).scalars()
                )
        return found

    # --- learned restrictions (learning raises, only a human lowers) -----------------------------

    def restriction(self, action: str, target: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            return self._restriction(conn, action, target)

    def _restriction(self, conn: Connection, action: str, target: str) -> dict[str, Any] | None:
        t = learned_restrictions.c
        row = conn.execute(
            sa.select(learned_restrictions).where((t.action == action) & (t.target == target))
        ).first()
        return dict(row._mapping) if row else None

    def learn_restriction(
        self, action: str, target: str, threshold: int, now: datetime | None = None
    ) -> tuple[dict[str, Any] | None, bool]:
        """Make ``action`` HARD on ``target`` if it failed verification or was rolled back
        ``threshold`` times since a human last cleared it: (the active restriction, whether this
        call created it)."""
        existing = self.restriction(action, target)
        if existing and existing["active"]:
            return existing, False
        since = existing["cleared_at"] if existing else None
        rows = [
            r
            for r in self.outcomes(action=action, target=target, since=since)
            if r.applied and (r.verified is not None or r.rolled_back)
        ]
        bad = bad_changes(rows) + self._rolled_back_unrecorded(action, target, since, rows)
        if len(bad) < threshold:
            return None, False
        reason = (
            f"{action} failed verification or was rolled back {len(bad)} times on {target} "
            f"since {'a human last cleared it' if since else 'the record began'}"
        )
        now = now or datetime.now(UTC)
        values = {
            "level": RiskLevel.HARD.value,
            "active": True,
            "reason": reason,
            "evidence": sorted(bad),
            "since": now,
            "cleared_by": "",
            "cleared_at": None,
        }
        record = _policy_change(
            action,
            target,
            "policy.restrict",
            RiskLevel.HARD,
            LEARNED,
            reason,
            before={"restricted": False},
            after={"restricted": True, "level": RiskLevel.HARD.value, "changes": sorted(bad)},
            preview=f"{action} on {target}: at least HARD until a human clears it (learned)",
            human=False,
        )
        with self._tx(exclusive=True) as conn:
            current = self._restriction(conn, action, target)
            if current and current["active"]:
                return current, False  # another process learned it first
            t = learned_restrictions.c
            if current:
                conn.execute(
                    learned_restrictions.update()
                    .where((t.action == action) & (t.target == target))
                    .values(**values)
                )
            else:
                conn.execute(
                    learned_restrictions.insert().values(action=action, target=target, **values)
                )
            append_change(conn, record)
            return self._restriction(conn, action, target), True

    def _rolled_back_unrecorded(
        self, action: str, target: str, since: datetime | None, known: list[Outcome]
    ) -> list[str]:
        """Rolled-back remediations whose incident has no outcome row yet (still open, or its
        record predates learning): the change log alone says they were undone."""
        seen = {r.change_id for r in known}
        original, undo = changes.alias("original"), changes.alias("undo")
        query = (
            sa.select(original.c.change_id)
            .join(undo, undo.c.rollback_of == original.c.change_id)
            .where(original.c.action == action)
            .where(original.c.target == target)
            .where(original.c.step == REMEDIATION_STEP)
            .where(original.c.result == ChangeResult.APPLIED.value)
            .where(undo.c.result == ChangeResult.APPLIED.value)
        )
        if since is not None:
            query = query.where(original.c.at > since)
        with self._tx() as conn:
            return sorted({c for c in conn.execute(query).scalars() if c not in seen})

    def clear_restriction(self, action: str, target: str, actor: str, reason: str) -> ChangeRecord:
        """A human lifts a learned restriction (audited); failures before now no longer count."""
        current = self.restriction(action, target)
        if current is None or not current["active"]:
            raise PolicyStateError(f"no learned restriction on {action} for {target}")
        record = _policy_change(
            action,
            target,
            "policy.clear",
            RiskLevel.HARD,
            actor,
            reason,
            before={"restricted": True, "reason": current["reason"]},
            after={"restricted": False},
            preview=f"{action} on {target}: learned restriction cleared by {actor}",
            human=True,
        )
        with self._tx(exclusive=True) as conn:
            t = learned_restrictions.c
            conn.execute(
                learned_restrictions.update()
                .where((t.action == action) & (t.target == target))
                .values(active=False, cleared_by=actor, cleared_at=record.at)
            )
            append_change(conn, record)
        return record

    def restrictions(self, active_only: bool = True) -> list[dict[str, Any]]:
        query = sa.select(learned_restrictions).order_by(learned_restrictions.c.since)
        if active_only:
            query = query.where(learned_restrictions.c.active.is_(True))
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # --- accepted overrides (only a human lowers) ------------------------------------------------

    def override(self, action: str, target: str) -> dict[str, Any] | None:
        t = policy_overrides.c
        with self._tx() as conn:
            row = conn.execute(
                sa.select(policy_overrides).where((t.action == action) & (t.target == target))
            ).first()
        return dict(row._mapping) if row else None

    def overrides(self) -> list[dict[str, Any]]:
        with self._tx() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(policy_overrides).order_by(policy_overrides.c.accepted_at)
                )
            ]

    def accept_override(
        self, action: str, target: str, level: RiskLevel, actor: str, reason: str
    ) -> ChangeRecord:
        """A human accepts a level for one action on one target (audited)."""
        if level is RiskLevel.FORBIDDEN:
            raise PolicyStateError("FORBIDDEN is set in the config, not accepted")
        previous = self.override(action, target)
        record = _policy_change(
            action,
            target,
            "policy.accept",
            level,
            actor,
            reason,
            before={"override": previous["level"] if previous else None},
            after={"override": level.value},
            preview=f"{action} on {target}: {level.value} accepted by {actor}",
            human=True,
        )
        values = {
            "level": level.value,
            "accepted_by": actor,
            "accepted_at": record.at,
            "reason": reason,
            "change_id": record.change_id,
        }
        with self._tx(exclusive=True) as conn:
            t = policy_overrides.c
            key = (t.action == action) & (t.target == target)
            if conn.execute(sa.select(t.action).where(key)).first():
                conn.execute(policy_overrides.update().where(key).values(**values))
            else:
                conn.execute(
                    policy_overrides.insert().values(action=action, target=target, **values)
                )
            append_change(conn, record)
        return record

    def revoke_override(self, action: str, target: str, actor: str, reason: str) -> ChangeRecord:
        previous = self.override(action, target)
        if previous is None:
            raise PolicyStateError(f"no accepted override on {action} for {target}")
        record = _policy_change(
            action,
            target,
            "policy.revoke",
            RiskLevel(previous["level"]),
            actor,
            reason,
            before={"override": previous["level"]},
            after={"override": None},
            preview=f"{action} on {target}: accepted {previous['level']} revoked by {actor}",
            human=True,
        )
        with self._tx(exclusive=True) as conn:
            t = policy_overrides.c
            conn.execute(
                policy_overrides.delete().where((t.action == action) & (t.target == target))
            )
            append_change(conn, record)
        return record

    # --- what the policy reads ------------------------------------------------------------------

    def learned_policy(self, action: str, target: str) -> LearnedPolicy:
        restriction = self.restriction(action, target)
        override = self.override(action, target)
        rows = self.outcomes(action=action, target=target, limit=200)
        learned = LearnedPolicy()
        if restriction and restriction["active"]:
            learned.restriction = restriction["reason"]
            learned.restriction_since = restriction["since"]
        if override:
            learned.override = RiskLevel(override["level"])
            learned.override_by = override["accepted_by"]
            learned.override_at = override["accepted_at"]
        if rows:
            by_alert: dict[str, list[Outcome]] = defaultdict(list)
            for r in rows:
                by_alert[r.alert].append(r)
            now = datetime.now(UTC)
            learned.record = " | ".join(record_line(g, target, now) for g in by_alert.values())
        return learned

    def suggestions(self, after: int) -> list[Suggestion]:
        """Actions approved ``after`` times or more on a target, every run verified, none
        rolled back or 👎, with no learned restriction: candidates for a lower level."""
        t = action_outcomes.c
        with self._tx() as conn:
            groups = conn.execute(
                sa.select(t.action, t.target, sa.func.count())
                .where(t.approval == ApprovalVerdict.APPROVED.value)
                .where(t.result == ChangeResult.APPLIED.value)
                .group_by(t.action, t.target)
                .having(sa.func.count() >= after)
            ).all()
        out = []
        for action, target, _ in groups:
            restriction = self.restriction(action, target)
            if restriction and restriction["active"]:
                continue
            rows = self.outcomes(action=action, target=target)
            if any(r.failure or r.result == "failed" or r.thumbs_down for r in rows):
                continue
            if any(r.applied and r.verified is not True for r in rows):
                continue  # every run must have been verified, not just not failed
            approved = [r for r in rows if r.approval == ApprovalVerdict.APPROVED.value]
            out.append(
                Suggestion(
                    action=action,
                    target=target,
                    approvals=len(approved),
                    runs=len(rows),
                    last_approved=max(r.at for r in approved),
                    approvers=sorted(self._approvers(approved)),
                )
            )
        return sorted(out, key=lambda s: (-s.approvals, s.action, s.target))

    def _approvers(self, rows: list[Outcome]) -> set[str]:
        t = action_outcomes.c
        keys = [(r.workflow_id, r.run_id, r.action_id) for r in rows]
        with self._tx() as conn:
            found = conn.execute(
                sa.select(t.approver).where(
                    sa.or_(
                        *(
                            (t.workflow_id == w) & (t.run_id == run) & (t.action_id == a)
                            for w, run, a in keys
                        )
                    )
                )
            ).scalars()
            return {a for a in found if a}
