"""The change log's hash chain: each row carries the hash of the row before it and of its own
canonical content, so a rewrite, a deletion or a reordering is seen by ``changes --verify``.

Triggers and grants stop the run-time role; the chain catches what bypasses them (a superuser
with ``session_replication_role = replica``, a copied database file). It cannot catch a rewrite
that recomputes every later hash, nor the removal of the newest rows: compare the head that
``changes --verify`` prints with one kept elsewhere (``--anchor SEQ:HASH``) for that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

GENESIS = "0" * 64

# The content a row's hash covers, fixed for this version of the chain: a column added to the
# table later is not part of old rows' hashes (a new chain version would have to say how).
CHAINED_COLUMNS = (
    "seq",
    "change_id",
    "incident_id",
    "workflow_id",
    "run_id",
    "at",
    "step",
    "action",
    "target",
    "params",
    "level",
    "level_reasons",
    "approval",
    "approver",
    "dry_run",
    "before_state",
    "after_state",
    "result",
    "error",
    "preview",
    "reversibility",
    "rollback_action",
    "rollback_params",
    "rollback_of",
    "started_at",
    "finished_at",
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def canonical(row: Mapping[str, Any]) -> bytes:
    """The row's chained columns as one JSON document: sorted keys, no spaces, UTC times."""
    content = {name: _plain(row[name]) for name in CHAINED_COLUMNS}
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def link_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """sha256 over the previous row's hash and this row's canonical content."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(row)).hexdigest()


Kind = Literal["altered", "missing", "reordered", "broken", "unchained", "anchor"]


class ChainProblem(BaseModel):
    kind: Kind
    seq: int | None
    change_id: str
    detail: str


class ChainReport(BaseModel):
    rows: int
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[ChainProblem] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        state = "intact" if self.ok else f"BROKEN ({len(self.problems)} problem(s))"
        out = [
            f"change log: {self.rows} row(s), chain {state}; head {self.head_seq}:{self.head_hash}"
        ]
        out += [
            f"  {p.kind}: seq {p.seq if p.seq is not None else '-'} change {p.change_id}: {p.detail}"
            for p in self.problems
        ]
        return out


def verify(rows: Iterable[Mapping[str, Any]], anchor: tuple[int, str] | None = None) -> ChainReport:
    """Walk the rows in ``seq`` order (unchained rows last) and name every break."""
    chained = []
    report = ChainReport(rows=0)
    for row in rows:
        report.rows += 1
        if row["seq"] is None or not row["row_hash"] or not row["prev_hash"]:
            report.problems.append(
                ChainProblem(
                    kind="unchained",
                    seq=row["seq"],
                    change_id=row["change_id"],
                    detail="it has no place in the chain: written around the store",
                )
            )
        else:
            chained.append(row)
    chained.sort(key=lambda r: int(r["seq"]))
    seq_of = {r["row_hash"]: int(r["seq"]) for r in chained}
    prev_seq, prev_hash = 0, GENESIS
    for row in chained:
        seq = int(row["seq"])
        if link_hash(row["prev_hash"], row) != row["row_hash"]:
            report.problems.append(
                ChainProblem(
                    kind="altered",
                    seq=seq,
                    change_id=row["change_id"],
                    detail="its content no longer matches its hash: rewritten after it was recorded",
                )
            )
        if seq != prev_seq + 1:
            report.problems.append(
                ChainProblem(
                    kind="missing",
                    seq=seq,
                    change_id=row["change_id"],
                    detail=f"row(s) {prev_seq + 1}..{seq - 1} before it are gone: deleted",
                )
            )
        elif row["prev_hash"] != prev_hash:
            follows = seq_of.get(row["prev_hash"])
            report.problems.append(
                ChainProblem(
                    kind="reordered" if follows is not None else "broken",
                    seq=seq,
                    change_id=row["change_id"],
                    detail=(
                        f"it was recorded after seq {follows} but now sits after seq {prev_seq}"
                        if follows is not None
                        else f"it does not follow seq {prev_seq}: that row was replaced"
                    ),
                )
            )
        prev_seq, prev_hash = seq, row["row_hash"]
    report.head_seq, report.head_hash = prev_seq, prev_hash
    if anchor is not None:
        seq, expected = anchor
        found = next((r for r in chained if int(r["seq"]) == seq), None)
        if found is None or found["row_hash"] != expected:
            report.problems.append(
                ChainProblem(
                    kind="anchor",
                    seq=seq,
                    change_id=found["change_id"] if found else "",
                    detail=(
                        f"the anchor {seq}:{expected} is not in the chain "
                        f"({'no such row' if found is None else 'its hash is ' + found['row_hash']})"
                        ": rows up to it were rewritten or removed"
                    ),
                )
            )
    return report
