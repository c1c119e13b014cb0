"""From a model's answer to a catalog-validated ``Plan``, or the list of reasons it is refused.

An answer is refused (and counts as that provider failing, after one repair round) unless every
action names a tool offered for this incident (a write tool of its service that fits its target),
its parameters validate against the tool's parameter model, its target is the incident's target
exactly, and there are no more actions than the runbook allows. Anything the model says about
approval levels is dropped here: the policy alone sets levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from activities.catalog import Catalog, ToolFailure
from activities.llm.prompt import offered_tools
from core.config import Settings
from core.models import Action, Hypothesis, Plan, PlanRequest, TargetRef
from core.redact import redact_text

TEXT_LIMIT = 1000


class Draft(BaseModel):
    """What the model is asked to answer. Unknown keys (``level``, ``approved``...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    class Hyp(BaseModel):
        model_config = ConfigDict(extra="ignore")
        statement: str = Field(min_length=1)
        evidence: list[str] = Field(default_factory=list)
        confidence: float = Field(default=0.5, ge=0, le=1)

    class Act(BaseModel):
        model_config = ConfigDict(extra="ignore")
        tool: str = Field(min_length=1)
        target: str | None = None
        params: dict[str, Any] = Field(default_factory=dict)
        rationale: str = ""
        expected_effect: str = ""

    hypotheses: list[Hyp] = Field(default_factory=list)
    actions: list[Act] = Field(default_factory=list)
    confidence: float = Field(default=0.5, ge=0, le=1)
    escalate: bool = False
    notes: str = ""

    @field_validator("notes", mode="before")
    @classmethod
    def _notes(cls, value: Any) -> Any:
        if isinstance(value, list):
            return "; ".join(str(v) for v in value)
        return "" if value is None else value


def draft_schema() -> dict[str, Any]:
    """JSON schema of the answer (the ``submit_plan`` function's parameters in tools mode)."""
    return Draft.model_json_schema()


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S | re.I)


def parse_answer(text: str) -> tuple[Draft | None, list[str]]:
    """The answer as a ``Draft`` (a fenced ```json block is accepted), or why it is not one."""
    if not text or not text.strip():
        return None, ["the answer is empty"]
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text.strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, [
            f"the answer is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ]
    if not isinstance(data, dict):
        return None, [f"the answer must be a JSON object, not {type(data).__name__}"]
    try:
        return Draft.model_validate(data), []
    except ValidationError as exc:
        return None, [
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()
        ]


def _text(value: str) -> str:
    return redact_text(value)[:TEXT_LIMIT]


def validate_draft(
    draft: Draft, request: PlanRequest, catalog: Catalog, settings: Settings, source: str
) -> tuple[Plan | None, list[str]]:
    triage = request.triage
    target = triage.target
    runbook = triage.runbook
    if target is None or runbook is None:
        return None, ["the incident has no runbook or target: nothing may be planned"]
    errors: list[str] = []
    offered = {spec.name: spec for spec in offered_tools(catalog, request)}
    if settings.find_target(target.service, target.target) is None:
        errors.append(f"target {target} is not configured")
    if len(draft.actions) > runbook.max_actions:
        errors.append(
            f"{len(draft.actions)} actions proposed; this runbook allows at most {runbook.max_actions}"
        )
    actions: list[Action] = []
    for i, proposed in enumerate(draft.actions):
        where = f"actions.{i}"
        if proposed.tool not in offered:
            if proposed.tool not in catalog:
                why = "is not a tool in the catalog"
            elif not catalog.get(proposed.tool).is_write:
                why = "is a read tool, not a remediation"
            elif catalog.get(proposed.tool).service != target.service:
                why = f"is not a {target.service} tool"
            elif catalog.get(proposed.tool).needs_resource != bool(target.resource):
                why = f"does not act on a target like {target}"
            else:
                why = "is not one of this runbook's remediations (nor in llm.offer)"
            errors.append(
                f"{where}.tool: {proposed.tool!r} {why} (offered: {', '.join(sorted(offered))})"
            )
            continue
        if proposed.target is not None and proposed.target.strip() != str(target):
            errors.append(
                f"{where}.target: {proposed.target!r} is not the incident target {str(target)!r}"
            )
            continue
        try:
            offered[proposed.tool].parse_params(proposed.params)
        except ToolFailure as failure:
            errors.append(f"{where}.params: {failure.message}")
            continue
        actions.append(
            Action(
                id=f"a{i + 1}",
                tool=proposed.tool,
                target=TargetRef.model_validate(target.model_dump()),
                params=proposed.params,
                rationale=_text(proposed.rationale),
                expected_effect=_text(proposed.expected_effect),
            )
        )
    keys = {"alert", *(e.key for e in request.evidence)}
    hypotheses: list[Hypothesis] = []
    for i, hyp in enumerate(draft.hypotheses):
        unknown = [k for k in hyp.evidence if k not in keys]
        if unknown:
            errors.append(
                f"hypotheses.{i}.evidence: unknown key(s) {unknown} (keys: {', '.join(sorted(keys))})"
            )
            continue
        hypotheses.append(
            Hypothesis(
                statement=_text(hyp.statement), evidence=hyp.evidence, confidence=hyp.confidence
            )
        )
    if not draft.actions and not draft.escalate:
        errors.append(
            "no actions proposed: propose at least one action, or set escalate to true "
            "when none of the offered tools fits"
        )
    if errors:
        return None, errors
    notes = [_text(draft.notes)] if draft.notes.strip() else []
    return (
        Plan(
            source=source,
            hypotheses=hypotheses,
            actions=actions,
            confidence=draft.confidence,
            notes=notes,
            escalate=not actions,
        ),
        [],
    )
