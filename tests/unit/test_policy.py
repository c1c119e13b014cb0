"""The policy matrix: levels × critical × mode × irreversible × blast radius × overrides."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from approval.policy import decide, evaluate
from core.config import ApprovalSettings, Settings
from core.learning import LearnedPolicy
from core.models import ApprovalMode, PolicyRequest, Reversibility, RiskLevel, TargetRef

N, S, H, F = RiskLevel.NONE, RiskLevel.SOFT, RiskLevel.HARD, RiskLevel.FORBIDDEN
LIMIT = 3


def expected(
    default: RiskLevel, critical: bool, mode: ApprovalMode, irreversible: bool, writes: int
) -> tuple[RiskLevel, bool]:
    """The rules of approval/policy.py restated independently, to check every combination."""
    if default is F:
        return F, False
    level = default
    if irreversible:
        level = max(level, S, key=lambda x: x.rank)
    if critical or writes >= LIMIT or mode is ApprovalMode.MANUAL:
        level = max(level, H, key=lambda x: x.rank)
    return level, mode is ApprovalMode.OBSERVE


@pytest.mark.parametrize(
    ("default", "critical", "mode", "irreversible", "writes"),
    list(
        itertools.product(
            [N, S, H, F], [False, True], list(ApprovalMode), [False, True], [0, LIMIT]
        )
    ),
)
def test_matrix(
    default: RiskLevel, critical: bool, mode: ApprovalMode, irreversible: bool, writes: int
) -> None:
    approval = ApprovalSettings(mode=mode, max_writes_per_target_per_hour=LIMIT)
    request = PolicyRequest(
        action="docker.restart",
        target=TargetRef(service="docker", target="lab", resource="web"),
        default_level=default,
        reversibility=Reversibility.IRREVERSIBLE if irreversible else Reversibility.COMPENSATED,
    )
    decision = evaluate(request, approval, writes, critical_reason="critical" if critical else "")
    level, dry_run = expected(default, critical, mode, irreversible, writes)
    assert (decision.level, decision.dry_run) == (level, dry_run), decision.reasons
    assert decision.reasons  # always says why


def settings(**approval: object) -> Settings:
    return Settings(docker=[{"name": "lab"}, {"name": "core", "critical": True}], approval=approval)


def request(
    action: str = "docker.restart", target: str = "docker:lab/web", level: RiskLevel = S
) -> PolicyRequest:
    return PolicyRequest(
        action=action,
        target=TargetRef.parse(target),
        default_level=level,
        reversibility=Reversibility.STATELESS,
    )


def test_first_matching_override_sets_base_level() -> None:
    s = settings(
        overrides=[
            {"action": "docker.restart", "target": "docker:lab/cache*", "level": "NONE"},
            {"action": "docker.*", "target": "*", "level": "HARD"},
        ]
    )
    assert decide(s, request(target="docker:lab/cache-1"), 0).level is N
    assert decide(s, request(target="docker:lab/web"), 0).level is H


def test_override_cannot_lower_below_critical_or_unforbid() -> None:
    s = settings(
        critical=["docker:*/postgres*"], overrides=[{"action": "*", "target": "*", "level": "NONE"}]
    )
    assert decide(s, request(target="docker:lab/postgres-main"), 0).level is H
    assert (
        decide(s, request(target="docker:core/anything"), 0).level is H
    )  # critical: true on the target
    assert decide(s, request(level=F), 0).level is F


def test_blast_radius_escalates() -> None:
    s = settings(max_writes_per_target_per_hour=2)
    assert decide(s, request(), 1).level is S
    decision = decide(s, request(), 2)
    assert decision.level is H and any("blast radius" in r for r in decision.reasons)


# --- every rule, its level and its reason (the mutation run of approval/policy.py holds these) ---

DEFAULT = "catalog default for docker.restart is"
LAB_WEB = "docker:lab/web"


def ask(
    level: RiskLevel = S,
    *,
    target_critical: bool = False,
    risks: tuple[str, ...] = (),
    irreversible: bool = False,
) -> PolicyRequest:
    return PolicyRequest(
        action="docker.restart",
        target=TargetRef.parse(LAB_WEB),
        default_level=level,
        reversibility=Reversibility.IRREVERSIBLE if irreversible else Reversibility.STATELESS,
        target_critical=target_critical,
        risks=list(risks),
    )


def test_a_hard_override_never_lowers_a_forbidden_tool() -> None:
    s = settings(overrides=[{"action": "docker.*", "target": "*", "level": "HARD"}])
    decision = decide(s, request(level=F), 0)
    assert decision.level is F
    assert decision.reasons == [
        f"{DEFAULT} FORBIDDEN",
        "override docker.* on * ignored: FORBIDDEN stays",
    ]


def test_a_forbidden_override_of_a_forbidden_tool_is_applied_not_reported_as_ignored() -> None:
    s = settings(overrides=[{"action": "docker.*", "target": "*", "level": "FORBIDDEN"}])
    decision = decide(s, request(level=F), 0)
    assert decision.level is F
    assert decision.reasons == [f"{DEFAULT} FORBIDDEN", "override for docker.* on * sets FORBIDDEN"]


def test_a_forbidden_override_forbids_an_allowed_tool() -> None:
    s = settings(overrides=[{"action": "docker.restart", "target": "*", "level": "FORBIDDEN"}])
    assert decide(s, request(level=N), 0).level is F


@pytest.mark.parametrize(
    ("action", "target"),
    [("docker.stop", "*"), ("docker.*", "docker:lab/db*"), ("docker.stop", "docker:lab/web")],
)
def test_an_override_applies_only_when_both_its_action_and_its_target_match(
    action: str, target: str
) -> None:
    s = settings(overrides=[{"action": action, "target": target, "level": "NONE"}])
    decision = decide(s, request(level=S), 0)
    assert decision.level is S
    assert decision.reasons == [f"{DEFAULT} SOFT"]


def test_a_level_a_human_accepted_lowers_the_base_and_says_who_and_when() -> None:
    learned = LearnedPolicy(
        override=N, override_by="alice", override_at=datetime(2024, 5, 1, 12, tzinfo=UTC)
    )
    decision = evaluate(ask(S), ApprovalSettings(), 0, learned=learned)
    assert decision.level is N
    assert decision.reasons == [
        f"{DEFAULT} SOFT",
        f"accepted by alice on 2024-05-01 for {LAB_WEB}: NONE (policy accept)",
    ]


def test_an_accepted_level_without_a_date_names_only_who_accepted_it() -> None:
    learned = LearnedPolicy(override=H, override_by="bob")
    decision = evaluate(ask(S), ApprovalSettings(), 0, learned=learned)
    assert decision.level is H
    assert decision.reasons[-1] == f"accepted by bob for {LAB_WEB}: HARD (policy accept)"


def test_an_accepted_level_never_lowers_a_forbidden_tool() -> None:
    learned = LearnedPolicy(override=N, override_by="alice")
    decision = evaluate(ask(F), ApprovalSettings(), 0, learned=learned)
    assert decision.level is F
    assert decision.reasons == [f"{DEFAULT} FORBIDDEN", "accepted NONE ignored: FORBIDDEN stays"]


def test_an_accepted_level_never_lowers_a_tool_an_override_forbade() -> None:
    s = settings(overrides=[{"action": "*", "target": "*", "level": "FORBIDDEN"}])
    learned = LearnedPolicy(override=N, override_by="alice")
    assert decide(s, request(level=S), 0, learned=learned).level is F


def test_decide_hands_the_learned_state_to_the_policy() -> None:
    learned = LearnedPolicy(override=N, override_by="alice")
    assert decide(settings(), request(level=S), 0, learned=learned).level is N
    restricted = LearnedPolicy(restriction="rolled back 3 times")
    assert decide(settings(), request(level=N), 0, learned=restricted).level is H


def test_a_learned_restriction_makes_a_write_hard_until_a_human_clears_it() -> None:
    learned = LearnedPolicy(restriction="failed verification 3 times")
    decision = evaluate(ask(N), ApprovalSettings(), 0, learned=learned)
    assert decision.level is H
    assert decision.reasons == [
        f"{DEFAULT} NONE",
        "learned: failed verification 3 times; HARD until a human clears it "
        f"(homelab-agents policy clear docker.restart {LAB_WEB})",
    ]


def test_a_learned_restriction_is_named_even_when_the_write_is_already_hard() -> None:
    learned = LearnedPolicy(restriction="rolled back 3 times")
    decision = evaluate(ask(H), ApprovalSettings(), 0, learned=learned)
    assert decision.level is H
    assert decision.reasons[-1].startswith("learned: rolled back 3 times; HARD until")


def test_a_risk_the_tool_found_makes_any_write_hard_and_each_risk_is_named() -> None:
    risks = ("shrinks memory 1g → 512m", "widens the mount to /")
    decision = evaluate(ask(S, risks=risks), ApprovalSettings(), 0)
    assert decision.level is H
    # the first risk raised the level; the second is named but did not raise it again
    assert decision.reasons == [f"{DEFAULT} SOFT", f"{risks[0]}: HARD", risks[1]]


def test_a_risk_on_an_already_hard_write_is_named_without_claiming_the_raise() -> None:
    decision = evaluate(ask(H, risks=("shrinks memory",)), ApprovalSettings(), 0)
    assert decision.level is H
    assert decision.reasons == [f"{DEFAULT} HARD", "shrinks memory"]


def test_a_critical_target_is_hard_and_the_reason_says_why_it_is_critical() -> None:
    why = "target docker:lab is marked critical"
    decision = evaluate(ask(S), ApprovalSettings(), 0, critical_reason=why)
    assert decision.level is H
    assert decision.reasons == [f"{DEFAULT} SOFT", f"critical target ({why}): at least HARD"]


def test_a_target_flagged_critical_at_triage_is_hard_without_a_configured_reason() -> None:
    decision = evaluate(ask(S, target_critical=True), ApprovalSettings(), 0)
    assert decision.level is H
    assert decision.reasons == [
        f"{DEFAULT} SOFT",
        "critical target (flagged at triage): at least HARD",
    ]


@pytest.mark.parametrize(
    ("target_critical", "why", "named"),
    [(False, "matches 'docker:*/web'", "matches 'docker:*/web'"), (True, "", "flagged at triage")],
)
def test_a_critical_target_is_named_even_when_the_write_is_already_hard(
    target_critical: bool, why: str, named: str
) -> None:
    decision = evaluate(
        ask(H, target_critical=target_critical), ApprovalSettings(), 0, critical_reason=why
    )
    assert decision.level is H
    assert decision.reasons == [f"{DEFAULT} HARD", f"critical target ({named})"]


def test_a_target_that_is_not_critical_is_never_called_critical() -> None:
    for level in (N, H):
        decision = evaluate(ask(level), ApprovalSettings(), 0)
        assert decision.reasons == [f"{DEFAULT} {level.value}"]


def test_decide_names_a_target_flagged_critical_at_triage() -> None:
    decision = decide(settings(), request(level=S).model_copy(update={"target_critical": True}), 0)
    assert decision.level is H
    assert decision.reasons[-1] == "critical target (flagged critical at triage): at least HARD"


def test_decide_prefers_the_configured_critical_reason_to_the_triage_flag() -> None:
    req = request(target="docker:core/db", level=S).model_copy(update={"target_critical": True})
    decision = decide(settings(), req, 0)
    assert decision.level is H
    assert decision.reasons[-1] == (
        "critical target (target docker:core is marked critical): at least HARD"
    )


def test_blast_radius_names_the_writes_and_the_limit() -> None:
    approval = ApprovalSettings(max_writes_per_target_per_hour=2)
    decision = evaluate(ask(N), approval, 5)
    assert decision.level is H
    assert decision.reasons == [
        f"{DEFAULT} NONE",
        f"blast radius: 5 writes on {LAB_WEB} in the last hour (limit 2): HARD",
    ]


def test_manual_mode_makes_a_write_hard_and_says_so() -> None:
    decision = evaluate(ask(N), ApprovalSettings(mode=ApprovalMode.MANUAL), 0)
    assert decision.level is H
    assert decision.reasons == [f"{DEFAULT} NONE", "approval.mode is manual: every write is HARD"]


def test_an_irreversible_action_is_at_least_soft_and_says_so() -> None:
    decision = evaluate(ask(N, irreversible=True), ApprovalSettings(), 0)
    assert decision.level is S
    assert decision.reasons == [f"{DEFAULT} NONE", "irreversible action: at least SOFT"]


def test_rules_that_raise_nothing_do_not_claim_to_have_raised_the_level() -> None:
    # already HARD: the blast radius and manual mode change nothing and are not given as reasons
    approval = ApprovalSettings(mode=ApprovalMode.MANUAL, max_writes_per_target_per_hour=1)
    decision = evaluate(ask(H, irreversible=True), approval, 9)
    assert decision.level is H
    assert decision.reasons == [f"{DEFAULT} HARD"]


def test_a_forbidden_tool_stays_forbidden_and_no_other_rule_is_claimed() -> None:
    approval = ApprovalSettings(mode=ApprovalMode.MANUAL, max_writes_per_target_per_hour=1)
    decision = evaluate(
        ask(F, target_critical=True, risks=("shrinks memory",), irreversible=True),
        approval,
        9,
        critical_reason="marked critical",
        learned=LearnedPolicy(restriction="rolled back 3 times"),
    )
    assert (decision.level, decision.dry_run) == (F, False)
    assert decision.reasons == [f"{DEFAULT} FORBIDDEN"]


def test_the_verified_record_is_among_the_reasons_only_when_there_is_one() -> None:
    learned = LearnedPolicy(record="verified 4 of 5 runs")
    decision = evaluate(ask(S), ApprovalSettings(), 0, learned=learned)
    assert decision.reasons == [f"{DEFAULT} SOFT", "record: verified 4 of 5 runs"]
    assert evaluate(ask(S), ApprovalSettings(), 0).reasons == [f"{DEFAULT} SOFT"]


def test_observe_mode_says_it_is_a_dry_run_and_other_modes_do_not() -> None:
    observe = evaluate(ask(S), ApprovalSettings(mode=ApprovalMode.OBSERVE), 0)
    assert observe.dry_run
    assert observe.reasons == [f"{DEFAULT} SOFT", "approval.mode is observe: dry-run only"]
    auto = evaluate(ask(S), ApprovalSettings(), 0)
    assert not auto.dry_run
    assert auto.reasons == [f"{DEFAULT} SOFT"]
    forbidden = evaluate(ask(F), ApprovalSettings(mode=ApprovalMode.OBSERVE), 0)
    assert not forbidden.dry_run
    assert forbidden.reasons == [f"{DEFAULT} FORBIDDEN"]
