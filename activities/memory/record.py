"""The verified record of actions: outcomes in, decayed scores and sentences out.

Pure functions over the store's outcome rows (one per applied action of a closed incident, with
what is known about it now: did its incident's verification pass, was it rolled back since, 👍/👎).
Only verified facts count: a success is an applied action whose verification passed and that was
never rolled back; a failure is a failed verification or a rollback. Older outcomes count less
(``half_life``): what worked last week matters more than what worked last year.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.memory import ActionRecord, ago, short_name


@dataclass
class Outcome:
    """One applied (or failed) action of one closed incident, as the store knows it now."""

    workflow_id: str
    run_id: str
    action_id: str
    change_id: str
    alert: str
    target_kind: str
    target: str
    action: str
    approval: str
    result: str
    verified: bool | None
    at: datetime
    rolled_back: bool = False
    thumbs_up: int = 0
    thumbs_down: int = 0

    @property
    def applied(self) -> bool:
        return self.result == "applied"

    @property
    def success(self) -> bool:
        return self.applied and self.verified is True and not self.rolled_back

    @property
    def failure(self) -> bool:
        return self.applied and (self.verified is False or self.rolled_back)


def weight(at: datetime, now: datetime, half_life: timedelta) -> float:
    age = max((now - at).total_seconds(), 0.0)
    return float(0.5 ** (age / half_life.total_seconds()))


def score(rows: Iterable[Outcome], now: datetime, half_life: timedelta) -> float:
    """Laplace-smoothed, decayed success rate: 0.5 with no record, towards 1 or 0 with evidence."""
    good = bad = 0.0
    for row in rows:
        w = weight(row.at, now, half_life)
        good += w * (int(row.success) + row.thumbs_up)
        bad += w * (int(row.failure) + row.thumbs_down)
    return (good + 1) / (good + bad + 2)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def line(rows: list[Outcome], target: str, now: datetime) -> str:
    """``docker.start fixed ContainerKilled on web 4 of 4 times, last 2 days ago; 1 rollback on
    db``: the record from the point of view of ``target`` (or of the whole kind without one)."""
    first = rows[0]
    applied = [r for r in rows if r.applied]
    here = [r for r in applied if r.target == target] if target else applied
    where = short_name(target) if target else first.target_kind
    if here:
        wins = [r for r in here if r.success]
        text = (
            f"{first.action} fixed {first.alert} on {where} "
            f"{len(wins)} of {_plural(len(here), 'time')}"
        )
        if wins:
            text += f", last {ago(max(r.at for r in wins), now)}"
    else:
        text = f"{first.action} has not run for {first.alert} on {where}"
    parts = [text]
    others = [r for r in applied if target and r.target != target]
    fixed = sum(r.success for r in others)
    if fixed:
        targets = len({r.target for r in others})
        parts.append(f"{fixed} of {len(others)} on {_plural(targets, 'other target')}")
    failed: dict[str, int] = defaultdict(int)
    undone: dict[str, int] = defaultdict(int)
    for r in applied:
        if r.verified is False:  # rolled back by the saga or not: the verification said it
            failed[short_name(r.target)] += 1
        elif r.rolled_back:  # verified, then undone (a human's rollback, a later step's saga)
            undone[short_name(r.target)] += 1
    parts.extend(f"{_plural(n, 'failed verification')} on {t}" for t, n in sorted(failed.items()))
    parts.extend(f"{_plural(n, 'rollback')} on {t}" for t, n in sorted(undone.items()))
    failed_writes = sum(1 for r in rows if r.result == "failed")
    if failed_writes:
        parts.append(_plural(failed_writes, "failed write"))
    up, down = sum(r.thumbs_up for r in rows), sum(r.thumbs_down for r in rows)
    if up or down:
        parts.append(f"👍 {up} 👎 {down}")
    return "; ".join(parts)


def records(
    rows: Iterable[Outcome], now: datetime, half_life: timedelta, target: str = ""
) -> list[ActionRecord]:
    """One record per (alert, kind of target, action), best first."""
    groups: dict[tuple[str, str, str], list[Outcome]] = defaultdict(list)
    for row in rows:
        groups[(row.alert, row.target_kind, row.action)].append(row)
    out = []
    for (alert, kind, action), group in groups.items():
        wins = [r for r in group if r.success]
        out.append(
            ActionRecord(
                action=action,
                alert=alert,
                target_kind=kind,
                applied=sum(r.applied for r in group),
                verified=len(wins),
                failed_verification=sum(r.applied and r.verified is False for r in group),
                rolled_back=sum(r.applied and r.rolled_back for r in group),
                write_failed=sum(r.result == "failed" for r in group),
                approved=sum(r.approval == "approved" for r in group),
                thumbs_up=sum(r.thumbs_up for r in group),
                thumbs_down=sum(r.thumbs_down for r in group),
                score=round(score(group, now, half_life), 4),
                last_verified=max((r.at for r in wins), default=None),
                line=line(group, target, now),
            )
        )
    return sorted(out, key=lambda r: (-r.score, r.alert, r.target_kind, r.action))


def bad_changes(rows: Iterable[Outcome]) -> list[str]:
    """Changes whose verification failed or that were rolled back (each counted once)."""
    return sorted({r.change_id for r in rows if r.failure})
