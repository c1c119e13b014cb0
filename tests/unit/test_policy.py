"""The policy matrix: levels × critical × mode × irreversible × blast radius × overrides."""

from __future__ import annotations

import itertools

import pytest

from approval.policy import decide, evaluate
from core.config import ApprovalSettings, Settings
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
