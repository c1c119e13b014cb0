"""The deterministic runbook planner: the floor every LLM provider chain ends on.

Remediations whose ``when`` conditions hold on the gathered evidence become actions, with
parameters resolved from evidence (``{from: inspect.memory_limit, scale: 2, max: 2g}``). When more
than one applies, the one with the better verified record for this alert and kind of target goes
first (the recall in the request; ties and unknowns keep runbook order), unless the runbook pins
its order (``order: pinned``: steps that build on each other). The result is validated like any
other plan: tools exist, parameters validate, the target is the incident's.
"""

from __future__ import annotations

import re
from typing import Any

from activities.catalog import Catalog, ToolFailure
from core.expectations import _MISSING, check, lookup
from core.memory import Recall
from core.models import (
    Action,
    Alert,
    Evidence,
    Hypothesis,
    Plan,
    PlanRequest,
    Runbook,
    TargetRef,
)
from core.units import parse_size


class ParamError(ValueError):
    pass


def _bound(value: Any) -> float:
    return float(parse_size(value)) if isinstance(value, str) else float(value)


ALERT_KEY = "alert"
"""Built-in evidence: the alert itself (``{from: alert.labels.relname}``), beside the diagnostics."""


def alert_evidence(alert: Alert) -> Evidence:
    return Evidence(
        key=ALERT_KEY,
        tool="alert",
        target="",
        ok=True,
        data={"name": alert.name, "labels": dict(alert.labels)},
    )


TARGET_KEY = "target"
"""Diagnostics' params may name the incident's target as triage resolved it (``{target.resource}``)."""

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)+)\}")


def quoted(value: Any) -> str:
    """A value inside a double-quoted string (PromQL, LogQL): escaped, so an alert's label cannot
    close the string and add to the query."""
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_template(template: str, evidence: dict[str, Evidence]) -> str:
    """``{template: 'up{instance="{alert.labels.instance}"}'}``: each ``{key.path}`` replaced by
    that evidence value, escaped for a double-quoted string."""

    def one(match: re.Match[str]) -> str:
        return quoted(resolve_param({"from": match.group(1)}, evidence))

    return PLACEHOLDER.sub(one, template)


def resolve_param(spec: Any, evidence: dict[str, Evidence]) -> Any:
    """A literal, ``{template: '...{key.path}...'}``, or ``{from: key.path, default?, scale?,
    add?, min?, max?, round_to?}`` over evidence (``alert.labels.X`` reads the alert's labels)."""
    if isinstance(spec, dict) and "template" in spec:
        return render_template(str(spec["template"]), evidence)
    if not (isinstance(spec, dict) and "from" in spec):
        return spec
    key, _, path = str(spec["from"]).partition(".")
    source = evidence.get(key)
    if source is None or not source.ok:
        if "default" in spec:
            return spec["default"]
        raise ParamError(f"evidence {key!r} is unavailable")
    value = lookup(source.data, path)
    if value is _MISSING or value is None:
        if "default" in spec:
            return spec["default"]
        raise ParamError(f"evidence {spec['from']!r} has no value")
    if not any(op in spec for op in ("scale", "add", "min", "max", "round_to")):
        return value
    number = float(value) * float(spec.get("scale", 1)) + float(spec.get("add", 0))
    if "min" in spec:
        number = max(number, _bound(spec["min"]))
    if "max" in spec:
        number = min(number, _bound(spec["max"]))
    step = float(spec.get("round_to", 1))
    return int(round(number / step) * step) if isinstance(value, int) or step >= 1 else number


def by_record(
    candidates: list[tuple[int, Action]], recall: Recall
) -> tuple[list[tuple[int, Action]], str]:
    """Candidates, the best verified record first (stable: equal records keep runbook order),
    and a note saying why when the order changed."""
    scores = {}
    for _, action in candidates:
        record = recall.record(action.tool)
        scores[action.tool] = record.score if record is not None else 0.5
    ordered = sorted(candidates, key=lambda c: -scores[c[1].tool])
    if [c[0] for c in ordered] == [c[0] for c in candidates]:
        return candidates, ""
    parts = []
    for _, action in ordered:
        record = recall.record(action.tool)
        told = (
            f"{record.verified} of {record.applied} verified, {record.failed_verification} "
            f"failed verification, {record.rolled_back} rolled back"
            if record is not None
            else "no record"
        )
        parts.append(f"{action.tool} ({scores[action.tool]:.2f}: {told})")
    return ordered, "ordered by verified record: " + " before ".join(parts)


def runbook_plan(request: PlanRequest, catalog: Catalog) -> Plan:
    triage = request.triage
    runbook: Runbook | None = triage.runbook
    if runbook is None or triage.target is None:
        return Plan(source="runbook", escalate=True, notes=list(triage.notes) or ["no runbook"])
    evidence = {ALERT_KEY: alert_evidence(request.alert), **{e.key: e for e in request.evidence}}
    learned = runbook.order == "learned" and bool(request.recall.actions)
    notes: list[str] = []
    candidates: list[tuple[int, Action]] = []
    for index, remediation in enumerate(runbook.remediations):
        if len(candidates) >= runbook.max_actions and not learned:
            break
        unmet = []
        for condition in remediation.when:
            source = evidence.get(condition.evidence)
            if source is None or not source.ok:
                unmet.append(f"{condition.evidence} unavailable")
                continue
            ok, reason = check(condition, source.data)
            if not ok:
                unmet.append(reason)
        if unmet:
            notes.append(f"skipped {remediation.tool}: {'; '.join(unmet)}")
            continue
        target = TargetRef.model_validate(triage.target.model_dump())
        try:
            params = {k: resolve_param(v, evidence) for k, v in remediation.params.items()}
            catalog.get(remediation.tool).parse_params(params)
            if remediation.resource is not None:
                resource = resolve_param(remediation.resource, evidence)
                if not isinstance(resource, str) or not resource:
                    raise ParamError(f"resource {resource!r} is not a name")
                target = target.model_copy(update={"resource": resource})
        except (ParamError, ToolFailure) as exc:
            notes.append(f"skipped {remediation.tool}: {exc}")
            continue
        candidates.append(
            (
                index,
                Action(
                    id=f"a{index + 1}",
                    tool=remediation.tool,
                    target=target,
                    params=params,
                    rationale=remediation.rationale,
                    expected_effect=remediation.expected_effect,
                ),
            )
        )
    if learned and len(candidates) > 1:
        candidates, why = by_record(candidates, request.recall)
        if why:
            notes.append(why)
    for _, action in candidates[runbook.max_actions :]:
        notes.append(f"not planned: {action.tool} (at most {runbook.max_actions} action(s))")
    actions = [action for _, action in candidates[: runbook.max_actions]]
    for action in actions:
        record = request.recall.record(action.tool)
        if record is not None and record.line:
            notes.append(f"record: {record.line}")
    if request.recall.incidents:
        best = request.recall.incidents[0]
        notes.append(
            f"recalled {len(request.recall.incidents)} similar incident(s); closest "
            f"{best.workflow_id} ({best.score:.2f}): {best.outcome}"
            + (f" ({', '.join(best.actions)})" if best.actions else "")
        )
    notes.extend(f"memory: {n}" for n in request.recall.notes)
    hypotheses = [
        Hypothesis(statement=h, evidence=[e.key for e in request.evidence if e.ok], confidence=0.6)
        for h in runbook.hypotheses
    ]
    if not actions:
        notes.append("no remediation applies to the evidence")
        if runbook.escalate_if_no_action:
            return Plan(
                source=f"runbook:{runbook.name}",
                hypotheses=hypotheses,
                confidence=0.3,
                notes=[*notes, "diagnosis only: a human decides (see the evidence)"],
                escalate=True,
            )
    return Plan(
        source=f"runbook:{runbook.name}",
        hypotheses=hypotheses,
        actions=actions,
        confidence=0.7 if actions else 0.3,
        notes=notes,
    )
