"""Plan validation (activities/llm/validate.py): what a model's answer may and may not become.

Plain test functions on real inputs (the built-in catalog and runbooks), so that
tests/unit/test_plan_validation_mutants.py can run them against every single-fault variant of the
validator (``python -m tests.mutate activities.llm.validate tests.unit.test_plan_validation``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.llm.validate import Draft, draft_schema, parse_answer, validate_draft
from activities.runbooks import load_runbooks
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import (
    Action,
    Alert,
    AlertStatus,
    Evidence,
    Hypothesis,
    Plan,
    PlanRequest,
    Runbook,
    TargetRef,
    Triage,
)

CATALOG = default_catalog()
RUNBOOKS = {rb.name: rb for rb in load_runbooks(CATALOG, [])}
SETTINGS = Settings(docker=[{"name": "lab", "url": "unix:///nonexistent.sock"}])
WEB = TargetRef(service="docker", target="lab", resource="web")
ENGINE = TargetRef(service="docker", target="lab")
LONG = "x" * 1500  # more than validate.TEXT_LIMIT


def request(
    runbook: Runbook | None = RUNBOOKS["docker-container-exited"],
    target: TargetRef | None = WEB,
    offer: tuple[str, ...] = (),
    evidence: tuple[str, ...] = ("inspect", "logs"),
) -> PlanRequest:
    alert = Alert(
        name="ContainerKilled",
        status=AlertStatus.FIRING,
        fingerprint="abc123",
        labels={"alertname": "ContainerKilled", "container": "web"},
        starts_at=datetime(2026, 11, 27, tzinfo=UTC),
    )
    triage = Triage(
        incident_type="container_exited",
        service="docker",
        target=target,
        severity="warning",
        critical=False,
        runbook=runbook,
        approval_timeout=timedelta(minutes=5),
        approvers=["alice"],
        llm_offer=list(offer),
    )
    return PlanRequest(
        incident_id="incident-abc123",
        alert=alert,
        triage=triage,
        evidence=[
            Evidence(key=key, tool="docker.inspect", target="docker:lab/web", ok=True)
            for key in evidence
        ],
    )


def act(tool: str = "docker.start", **fields: Any) -> dict[str, Any]:
    return {"tool": tool, **fields}


def check(
    answer: dict[str, Any],
    req: PlanRequest | None = None,
    settings: Settings = SETTINGS,
) -> tuple[Plan | None, list[str]]:
    return validate_draft(
        Draft.model_validate(answer), req or request(), CATALOG, settings, "llm:test"
    )


def refused(answer: dict[str, Any], req: PlanRequest | None = None) -> list[str]:
    plan, errors = check(answer, req)
    assert plan is None, plan
    assert errors
    return errors


# --- a valid answer ------------------------------------------------------------------------------


def test_a_runbook_remediation_on_the_incident_target_becomes_the_plan() -> None:
    plan, errors = check(
        {
            "hypotheses": [
                {"statement": "it crashed", "evidence": ["inspect", "alert"], "confidence": 0.8}
            ],
            "actions": [
                act(
                    target="docker:lab/web",
                    rationale="it exited",
                    expected_effect="it runs",
                )
            ],
            "confidence": 0.7,
            "notes": "watch it",
        }
    )
    assert errors == []
    assert plan == Plan(
        source="llm:test",
        hypotheses=[
            Hypothesis(statement="it crashed", evidence=["inspect", "alert"], confidence=0.8)
        ],
        actions=[
            Action(
                id="a1",
                tool="docker.start",
                target=WEB,
                rationale="it exited",
                expected_effect="it runs",
            )
        ],
        confidence=0.7,
        notes=["watch it"],
        escalate=False,
    )


def test_actions_are_numbered_in_the_order_proposed() -> None:
    plan, errors = check(
        {"actions": [act("docker.restart"), act("docker.start")]},
        request(RUNBOOKS["docker-container-unhealthy"]),
    )
    assert errors == [] and plan is not None
    assert [(a.id, a.tool) for a in plan.actions] == [
        ("a1", "docker.restart"),
        ("a2", "docker.start"),
    ]


def test_the_models_approval_level_is_dropped_the_policy_alone_sets_levels() -> None:
    """A model cannot declare its action NONE (or FORBIDDEN, or approved): those keys vanish."""
    plan, errors = check(
        {"actions": [act(level="NONE", approved=True, risk="FORBIDDEN")], "level": "NONE"}
    )
    assert errors == [] and plan is not None
    dumped = plan.model_dump_json()
    assert "approved" not in dumped and '"level"' not in dumped and "FORBIDDEN" not in dumped


def test_an_omitted_target_is_the_incident_target() -> None:
    plan, _ = check({"actions": [act()]})
    assert plan is not None and plan.actions[0].target == WEB


def test_the_incident_target_with_surrounding_blanks_is_the_incident_target() -> None:
    plan, errors = check({"actions": [act(target="  docker:lab/web\n")]})
    assert errors == [] and plan is not None and str(plan.actions[0].target) == "docker:lab/web"


def test_the_action_target_is_a_copy_of_the_incident_target() -> None:
    req = request()
    plan, _ = check({"actions": [act()]}, req)
    assert plan is not None and plan.actions[0].target == req.triage.target
    assert plan.actions[0].target is not req.triage.target


# --- target ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        "docker:lab/db",  # another container
        "docker:other/web",  # another engine
        "docker:lab",  # the engine, not the container
        "proxmox:lab/web",  # another service
        "lab/web",  # second names of the same target...
        "web",
        "docker:lab/web/",
        "docker:LAB/web",
        "docker:lab/Web",
        "docker: lab/web",
        "docker:lab//web",
        "docker:lab/0123456789ab",  # a container id
        "",
    ],
)
def test_another_target_or_another_name_for_it_is_refused(other: str) -> None:
    errors = refused({"actions": [act(target=other)]})
    assert errors == [f"actions.0.target: {other!r} is not the incident target 'docker:lab/web'"]


def test_an_engine_incident_refuses_a_container_target() -> None:
    req = request(RUNBOOKS["docker-disk-full"], ENGINE)
    plan, errors = check({"actions": [act("docker.prune_images", target="docker:lab")]}, req)
    assert errors == [] and plan is not None and plan.actions[0].target == ENGINE
    errors = refused({"actions": [act("docker.prune_images", target="docker:lab/web")]}, req)
    assert errors == ["actions.0.target: 'docker:lab/web' is not the incident target 'docker:lab'"]


def test_an_unconfigured_target_is_refused() -> None:
    for settings in (Settings(), Settings(docker=[{"name": "other", "url": "unix:///x.sock"}])):
        plan, errors = check({"actions": [act()]}, settings=settings)
        assert plan is None
        assert errors == ["target docker:lab/web is not configured"]


def test_an_incident_without_target_or_runbook_cannot_be_planned() -> None:
    for req in (request(target=None), request(runbook=None)):
        plan, errors = check({"escalate": True}, req)
        assert plan is None
        assert errors == ["the incident has no runbook or target: nothing may be planned"]


# --- tools -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "why"),
    [
        ("docker.explode", "is not a tool in the catalog"),
        ("docker.inspect", "is a read tool, not a remediation"),
        ("proxmox.nodes", "is a read tool, not a remediation"),  # read of another service
        ("proxmox.start", "is not a docker tool"),
        ("docker.prune_images", "does not act on a target like docker:lab/web"),
        ("docker.recreate", "is not one of this runbook's remediations (nor in llm.offer)"),
        ("docker.stop", "is not one of this runbook's remediations (nor in llm.offer)"),
    ],
)
def test_a_tool_not_offered_is_refused_with_the_reason(tool: str, why: str) -> None:
    errors = refused({"actions": [act(tool)]})
    assert errors == [f"actions.0.tool: {tool!r} {why} (offered: docker.start)"]


def test_a_container_tool_on_an_engine_incident_is_refused() -> None:
    req = request(RUNBOOKS["docker-disk-full"], ENGINE)
    errors = refused({"actions": [act("docker.clear_logs")]}, req)
    assert errors == [
        "actions.0.tool: 'docker.clear_logs' does not act on a target like docker:lab "
        "(offered: docker.prune_images)"
    ]


def test_a_tool_offered_by_config_is_accepted_and_listed() -> None:
    req = request(offer=("docker.stop", "docker.re*"))
    plan, errors = check({"actions": [act("docker.recreate", params={"image": "nginx:1"})]}, req)
    assert errors == [] and plan is not None
    assert plan.actions[0].tool == "docker.recreate"
    assert plan.actions[0].params == {"image": "nginx:1"}
    errors = refused({"actions": [act("docker.clear_logs")]}, req)
    assert errors == [
        "actions.0.tool: 'docker.clear_logs' is not one of this runbook's remediations (nor in "
        "llm.offer) (offered: docker.recreate, docker.restart, docker.start, docker.stop)"
    ]


def test_config_cannot_offer_a_tool_of_another_scope() -> None:
    req = request(offer=("docker.prune_images",))
    errors = refused({"actions": [act("docker.prune_images")]}, req)
    assert errors == [
        "actions.0.tool: 'docker.prune_images' does not act on a target like docker:lab/web "
        "(offered: docker.start)"
    ]


def test_a_runbook_without_remediations_offers_nothing() -> None:
    req = request(RUNBOOKS["docker-engine-unreachable"], ENGINE)
    plan, errors = check({"actions": [act("docker.prune_images")]}, req)
    assert plan is None
    assert errors == [
        "1 actions proposed; this runbook allows at most 0",
        "actions.0.tool: 'docker.prune_images' is not one of this runbook's remediations (nor in "
        "llm.offer) (offered: )",
    ]


# --- parameters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"timeout": -5}, "timeout: Input should be greater than or equal to 0"),
        (
            {"timeout": "soon"},
            "timeout: Input should be a valid integer, unable to parse string as an integer",
        ),
        ({"force": True}, "force: Extra inputs are not permitted"),
    ],
)
def test_params_that_fail_the_tools_schema_are_refused(
    params: dict[str, Any], problem: str
) -> None:
    req = request(offer=("docker.restart",))
    errors = refused({"actions": [act("docker.restart", params=params)]}, req)
    assert errors == [f"actions.0.params: invalid parameters for docker.restart: {problem}"]


def test_valid_params_are_kept_as_proposed() -> None:
    req = request(offer=("docker.restart",))
    plan, errors = check({"actions": [act("docker.restart", params={"timeout": 30})]}, req)
    assert errors == [] and plan is not None and plan.actions[0].params == {"timeout": 30}


def test_a_missing_required_param_is_refused() -> None:
    req = request(offer=("docker.recreate",))
    errors = refused({"actions": [act("docker.recreate")]}, req)
    assert errors == [
        "actions.0.params: invalid parameters for docker.recreate: image: Field required"
    ]


# --- limits and every action checked ---------------------------------------------------------------


def test_more_actions_than_the_runbook_allows_are_refused() -> None:
    req = request(offer=("docker.restart", "docker.stop"))
    plan, errors = check({"actions": [act("docker.restart"), act("docker.start")]}, req)
    assert errors == [] and plan is not None and len(plan.actions) == 2  # exactly the limit
    errors = refused(
        {"actions": [act("docker.restart"), act("docker.start"), act("docker.stop")]}, req
    )
    assert errors == ["3 actions proposed; this runbook allows at most 2"]


def test_the_limit_is_the_runbooks() -> None:
    one = RUNBOOKS["docker-container-exited"].model_copy(update={"max_actions": 1})
    errors = refused({"actions": [act(), act()]}, request(one))
    assert errors == ["2 actions proposed; this runbook allows at most 1"]


def test_every_action_is_checked_and_every_problem_reported() -> None:
    req = request(offer=("docker.restart",))
    errors = refused(
        {
            "actions": [
                act("docker.restart", params={"timeout": -1}),
                act("docker.explode"),
                act(target="docker:lab/db"),
            ]
        },
        req,
    )
    assert errors == [
        "3 actions proposed; this runbook allows at most 2",
        "actions.0.params: invalid parameters for docker.restart: timeout: Input should be "
        "greater than or equal to 0",
        "actions.1.tool: 'docker.explode' is not a tool in the catalog "
        "(offered: docker.restart, docker.start)",
        "actions.2.target: 'docker:lab/db' is not the incident target 'docker:lab/web'",
    ]


def test_one_bad_action_refuses_the_whole_plan() -> None:
    errors = refused({"actions": [act(), act("docker.explode")]})
    assert errors == [
        "actions.1.tool: 'docker.explode' is not a tool in the catalog (offered: docker.start)"
    ]


# --- hypotheses ------------------------------------------------------------------------------------


def test_hypotheses_may_cite_the_alert_and_the_evidence_keys() -> None:
    plan, errors = check(
        {
            "hypotheses": [
                {"statement": "a", "evidence": ["alert"]},
                {"statement": "b", "evidence": ["logs", "inspect"], "confidence": 0.9},
                {"statement": "c"},
            ],
            "actions": [act()],
        }
    )
    assert errors == [] and plan is not None
    assert plan.hypotheses == [
        Hypothesis(statement="a", evidence=["alert"], confidence=0.5),
        Hypothesis(statement="b", evidence=["logs", "inspect"], confidence=0.9),
        Hypothesis(statement="c", evidence=[], confidence=0.5),
    ]


def test_a_hypothesis_citing_unknown_evidence_is_refused() -> None:
    errors = refused(
        {
            "hypotheses": [
                {"statement": "ok", "evidence": ["logs"]},
                {"statement": "made up", "evidence": ["logs", "stats", "dmesg"]},
            ],
            "actions": [act()],
        },
        request(evidence=("logs",)),
    )
    assert errors == [
        "hypotheses.1.evidence: unknown key(s) ['stats', 'dmesg'] (keys: alert, logs)"
    ]


# --- escalation --------------------------------------------------------------------------------


def test_no_actions_without_escalating_is_refused() -> None:
    for answer in ({}, {"actions": [], "notes": "all good"}, {"escalate": False}):
        assert refused(answer) == [
            "no actions proposed: propose at least one action, or set escalate to true "
            "when none of the offered tools fits"
        ]


def test_escalating_without_actions_is_a_plan_that_escalates() -> None:
    plan, errors = check({"escalate": True, "notes": "disk full, no tool fits"})
    assert errors == []
    assert plan == Plan(
        source="llm:test", escalate=True, notes=["disk full, no tool fits"], actions=[]
    )


def test_a_plan_with_actions_does_not_escalate() -> None:
    plan, errors = check({"escalate": True, "actions": [act()]})
    assert errors == [] and plan is not None and plan.escalate is False


def test_escalating_does_not_excuse_a_bad_action() -> None:
    errors = refused({"escalate": True, "actions": [act("docker.explode")]})
    assert errors == [
        "actions.0.tool: 'docker.explode' is not a tool in the catalog (offered: docker.start)"
    ]


# --- notes and free text -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notes", "expected"),
    [
        ("look at the disk", ["look at the disk"]),
        (["one", 2], ["one; 2"]),
        (None, []),
        ("", []),
        ("  \n", []),
        ([], []),
    ],
)
def test_notes_become_one_note_or_none(notes: Any, expected: list[str]) -> None:
    plan, errors = check({"escalate": True, "notes": notes})
    assert errors == [] and plan is not None and plan.notes == expected


def test_free_text_is_redacted_and_cut() -> None:
    secret = "password=hunter2 "
    plan, errors = check(
        {
            "hypotheses": [{"statement": secret + LONG, "evidence": ["alert"]}],
            "actions": [act(rationale=secret + LONG, expected_effect=secret + LONG)],
            "notes": secret + LONG,
        }
    )
    assert errors == [] and plan is not None
    texts = [
        plan.hypotheses[0].statement,
        plan.actions[0].rationale,
        plan.actions[0].expected_effect,
        plan.notes[0],
    ]
    for text in texts:
        assert "hunter2" not in text and text.startswith("password=")
        assert len(text) == 1000


def test_short_free_text_is_kept_whole() -> None:
    plan, _ = check({"actions": [act(rationale="short")], "notes": "n"})
    assert plan is not None and plan.actions[0].rationale == "short" and plan.notes == ["n"]


# --- parsing the answer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"escalate": true}',
        '  {"escalate": true}\n',
        '```json\n{"escalate": true}\n```',
        '```JSON {"escalate": true} ```',
        '\n```\n{"escalate": true}\n```\n',
    ],
)
def test_a_json_object_is_parsed_fenced_or_not(text: str) -> None:
    draft, errors = parse_answer(text)
    assert errors == [] and draft is not None and draft.escalate is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["the answer is empty"]),
        (" \n\t", ["the answer is empty"]),
        ("Sure! {", ["the answer is not valid JSON: Expecting value at line 1 column 1"]),
        (
            '{\n"escalate": tru}',
            ["the answer is not valid JSON: Expecting value at line 2 column 13"],
        ),
        ("[1, 2]", ["the answer must be a JSON object, not list"]),
        ('"plan"', ["the answer must be a JSON object, not str"]),
        (
            '{"actions": [{"tool": ""}], "confidence": 2}',
            [
                "actions.0.tool: String should have at least 1 character",
                "confidence: Input should be less than or equal to 1",
            ],
        ),
        (
            '{"actions": [{"params": []}]}',
            [
                "actions.0.tool: Field required",
                "actions.0.params: Input should be a valid dictionary",
            ],
        ),
    ],
)
def test_an_answer_that_is_not_a_plan_object_is_refused_with_reasons(
    text: str, expected: list[str]
) -> None:
    assert parse_answer(text) == (None, expected)


def test_unknown_keys_of_the_answer_are_ignored() -> None:
    draft, errors = parse_answer('{"escalate": true, "level": "NONE", "approved": true}')
    assert errors == [] and draft == Draft(escalate=True)


def test_the_schema_asked_of_the_model_is_the_drafts() -> None:
    schema = draft_schema()
    assert set(schema["properties"]) == {"hypotheses", "actions", "confidence", "escalate", "notes"}


def test_an_answer_round_trips_through_parse_and_validate() -> None:
    text = json.dumps({"actions": [{"tool": "docker.start", "target": "docker:lab/web"}]})
    draft, errors = parse_answer(text)
    assert errors == [] and draft is not None
    plan, errors = validate_draft(draft, request(), CATALOG, SETTINGS, "llm:x")
    assert errors == [] and plan is not None and plan.source == "llm:x"
