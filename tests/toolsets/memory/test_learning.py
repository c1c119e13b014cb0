"""Learning from verified outcomes on a real store: the record (decay, 👍/👎, rollbacks after the
close), learned restrictions that only raise a level until a human clears them, suggestions a
human must accept before anything is lowered, and the flapping guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from activities.memory.activities import MemoryActivities
from activities.memory.record import records
from activities.records import RecordActivities
from activities.store import Store
from activities.toolsets import default_catalog
from approval.policy import evaluate
from core.config import ApprovalSettings, Settings
from core.learning import LearnedPolicy
from core.memory import FlapLimit, FlapRequest
from core.models import (
    ApprovalMode,
    ApprovalVerdict,
    ChangeResult,
    PolicyRequest,
    Reversibility,
    RiskLevel,
    TargetRef,
)
from tests.toolsets.memory.incidents import Step, in_activity, incident, record
from workers.learning import LearningError, accept, level_now, revoke, suggest

NOW = datetime.now(UTC)
WEB, DB = "docker:lab/web", "docker:lab/db"


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


async def test_the_record_in_words_and_numbers(store: Store) -> None:
    acts = RecordActivities(store)
    for n in (2, 3, 4, 5):
        state = incident(WEB, [Step("docker.start")], closed_at=days_ago(n))
        await record(acts, state, [Step("docker.start")])
    undone = [Step("docker.start", rolled_back=True)]  # verified, then a human rolled it back
    await record(acts, incident(DB, undone, closed_at=days_ago(1)), undone)
    found = records(store.outcomes(), datetime.now(UTC), timedelta(days=30), target=WEB)
    assert len(found) == 1
    start = found[0]
    assert start.line == (
        "docker.start fixed ContainerKilled on web 4 of 4 times, last 2 days ago; 1 rollback on db"
    )
    assert (start.applied, start.verified, start.rolled_back, start.failed_verification) == (
        5,
        4,
        1,
        0,
    )
    assert start.target_kind == "docker:*/*" and 0.5 < start.score < 1


async def test_recent_outcomes_count_more_than_old_ones(store: Store) -> None:
    acts = RecordActivities(store)
    cases = [
        ("docker.start", days_ago(0.1), True),
        ("docker.start", days_ago(365), False),
        ("docker.restart", days_ago(365), True),
        ("docker.restart", days_ago(0.1), False),
    ]
    for tool, when, ok in cases:
        state = incident(WEB, [Step(tool)], closed_at=when, verified=ok)
        await record(acts, state, [Step(tool)])
    found = {r.action: r for r in records(store.outcomes(), NOW, timedelta(days=30))}
    assert found["docker.start"].score > 0.6 > 0.4 > found["docker.restart"].score
    assert found["docker.start"].verified == found["docker.restart"].verified == 1


async def test_votes_count_for_the_run_they_were_cast_on(store: Store) -> None:
    acts = RecordActivities(store)
    first = incident(WEB, [Step("docker.start")], closed_at=days_ago(2), workflow_id="incident-x")
    await record(acts, first, [Step("docker.start")])
    store.record_feedback("incident-x", "a1", -1, "telegram:1")  # on the first run
    second = incident(
        WEB, [Step("docker.start")], closed_at=datetime.now(UTC), workflow_id="incident-x"
    )
    await record(acts, second, [Step("docker.start")])
    store.record_feedback("incident-x", "", 1, "telegram:1")  # the whole second incident
    rows = sorted(store.outcomes(), key=lambda r: r.at)
    assert [(r.thumbs_up, r.thumbs_down) for r in rows] == [(0, 1), (1, 0)]
    start = records(rows, datetime.now(UTC), timedelta(days=30))[0]
    assert (start.thumbs_up, start.thumbs_down) == (1, 1)
    assert "👍 1 👎 1" in start.line


async def test_two_rollbacks_make_an_action_hard_on_that_target_until_a_human_clears_it(
    store: Store, settings: Settings
) -> None:
    acts = RecordActivities(store, settings.memory)
    catalog = default_catalog()

    def level(target: str) -> Any:
        return level_now(settings, store, catalog, "docker.restart", target)

    assert level(WEB).level is RiskLevel.SOFT
    for n in range(2):
        state = incident(WEB, [Step("docker.restart", rolled_back=True)], verified=False)
        await record(acts, state, [Step("docker.restart", rolled_back=True)])
        if n == 0:
            assert level(WEB).level is RiskLevel.SOFT  # one failure is not a pattern
    decision = level(WEB)
    assert decision.level is RiskLevel.HARD
    assert any(
        r.startswith("learned: docker.restart failed verification or was rolled back 2 times")
        for r in decision.reasons
    ), decision.reasons
    assert level(DB).level is RiskLevel.SOFT  # only on that target
    learned = [c for c in store.list_changes() if c.step == "policy"]
    assert [(c.action, c.target, c.approver, c.approval) for c in learned] == [
        ("policy.restrict", WEB, "learning", ApprovalVerdict.NOT_REQUIRED)
    ]
    assert store.count_recent_writes(WEB) == 4  # 2 writes, 2 undos; the policy change is none

    cleared = store.clear_restriction("docker.restart", WEB, "cli:alice", "fixed the image")
    assert cleared.approver == "cli:alice" and cleared.action == "policy.clear"
    assert level(WEB).level is RiskLevel.SOFT
    with pytest.raises(Exception, match="no learned restriction"):
        store.clear_restriction("docker.restart", WEB, "cli:alice", "")

    # Failures before the clear no longer count; two new ones do.
    for n in range(2):
        state = incident(WEB, [Step("docker.restart")], verified=False)  # irreversible: no undo
        await record(acts, state, [Step("docker.restart")])
        assert level(WEB).level is (RiskLevel.SOFT if n == 0 else RiskLevel.HARD)
    assert [c.action for c in store.list_changes() if c.step == "policy"] == [
        "policy.restrict",
        "policy.clear",
        "policy.restrict",
    ]


async def test_a_rollback_of_a_still_open_incident_counts_from_the_change_log(
    store: Store, settings: Settings
) -> None:
    """The saga's rollbacks arrive before the incident's record: the change log alone counts."""
    from tests.toolsets.memory.incidents import change, undo

    acts = RecordActivities(store, settings.memory)
    for _ in range(2):
        state = incident(WEB, [Step("docker.restart", rolled_back=True)], verified=False)
        await in_activity(acts.record_change, change(state, state.actions[0], "r"))
        await in_activity(acts.record_change, undo(state, state.actions[0], "r"))
    restriction = store.restriction("docker.restart", WEB)
    assert restriction is not None and restriction["active"]
    assert len(restriction["evidence"]) == 2


LEVELS = st.sampled_from(list(RiskLevel))


@hsettings(max_examples=300, deadline=None)
@given(
    default=LEVELS,
    reversibility=st.sampled_from(list(Reversibility)),
    critical=st.booleans(),
    mode=st.sampled_from(list(ApprovalMode)),
    recent=st.integers(0, 20),
    override=st.none() | LEVELS,
    restricted=st.booleans(),
    record=st.text(max_size=40),
)
def test_learning_never_lowers_a_level(
    default: RiskLevel,
    reversibility: Reversibility,
    critical: bool,
    mode: ApprovalMode,
    recent: int,
    override: RiskLevel | None,
    restricted: bool,
    record: str,
) -> None:
    """What learning writes on its own (a restriction, a record) can only raise a level; only a
    human's accepted override changes the base, and never below FORBIDDEN."""
    request = PolicyRequest(
        action="docker.restart",
        target=TargetRef.parse(WEB),
        default_level=default,
        reversibility=reversibility,
        target_critical=critical,
    )
    approval = ApprovalSettings(mode=mode)
    human = LearnedPolicy(override=override, override_by="cli:alice")
    base = evaluate(request, approval, recent, learned=human)
    learned = human.model_copy(
        update={"restriction": "failed twice" if restricted else "", "record": record}
    )
    after = evaluate(request, approval, recent, learned=learned)
    assert after.level.rank >= base.level.rank
    assert after.dry_run == base.dry_run
    if restricted and base.level is not RiskLevel.FORBIDDEN:
        assert after.level.rank >= RiskLevel.HARD.rank
    if not restricted:
        assert after.level is base.level
    if default is RiskLevel.FORBIDDEN:
        assert after.level is RiskLevel.FORBIDDEN and base.level is RiskLevel.FORBIDDEN


async def test_approvals_and_praise_alone_never_lower_a_level(
    store: Store, settings: Settings
) -> None:
    acts = RecordActivities(store, settings.memory)
    catalog = default_catalog()
    before = level_now(settings, store, catalog, "docker.stop", WEB).level
    for _ in range(12):
        step = Step(
            "docker.stop", approval=ApprovalVerdict.APPROVED, approver="alice", level=RiskLevel.HARD
        )
        state = incident(WEB, [step])
        await record(acts, state, [step])
        store.record_feedback(state.workflow_id, "", 1, "telegram:1")
    assert before is RiskLevel.HARD
    assert level_now(settings, store, catalog, "docker.stop", WEB).level is RiskLevel.HARD
    assert store.overrides() == []
    assert [p.suggestion.action for p in suggest(settings, store, catalog)] == ["docker.stop"]


async def test_suggest_then_a_human_accepts_then_revokes(store: Store, settings: Settings) -> None:
    acts = RecordActivities(store, settings.memory)
    catalog = default_catalog()
    approved = Step(
        "docker.stop", approval=ApprovalVerdict.APPROVED, approver="alice", level=RiskLevel.HARD
    )
    for n in range(settings.memory.suggest_after):
        await record(acts, state := incident(WEB, [approved]), [approved])
        await record(acts, incident(DB, [approved]), [approved])
        if n == 0:
            down = state
    await record(acts, incident(DB, [approved], verified=False), [approved])  # one failure on db

    proposals = suggest(settings, store, catalog)
    assert [(p.suggestion.action, p.suggestion.target, p.level) for p in proposals] == [
        ("docker.stop", WEB, RiskLevel.HARD)
    ]
    assert proposals[0].suggestion.approvals == 5 and proposals[0].suggestion.approvers == ["alice"]

    with pytest.raises(LearningError, match="not a current suggestion"):
        accept(settings, store, catalog, "docker.stop", DB, RiskLevel.SOFT, "cli:bob", "")
    with pytest.raises(LearningError, match="NONE or SOFT"):
        accept(settings, store, catalog, "docker.stop", WEB, RiskLevel.HARD, "cli:bob", "")
    change, before, after = accept(
        settings, store, catalog, "docker.stop", WEB, RiskLevel.SOFT, "cli:bob", "ok for web"
    )
    assert (before, after) == (RiskLevel.HARD, RiskLevel.SOFT)
    decision = level_now(settings, store, catalog, "docker.stop", WEB)
    assert any("accepted by cli:bob" in r for r in decision.reasons)
    assert level_now(settings, store, catalog, "docker.stop", DB).level is RiskLevel.HARD
    logged = store.get_change(change.change_id)
    assert logged is not None and logged.action == "policy.accept"
    assert logged.approver == "cli:bob" and logged.after == {"override": "SOFT"}
    assert suggest(settings, store, catalog) == []  # nothing left to lower

    # A 👎 afterwards withdraws the suggestion (the accepted level stays: a human decided it).
    store.record_feedback(down.workflow_id, "a1", -1, "telegram:2")
    assert store.suggestions(settings.memory.suggest_after) == []
    revoke(store, catalog, "docker.stop", WEB, "cli:bob", "changed my mind")
    assert level_now(settings, store, catalog, "docker.stop", WEB).level is RiskLevel.HARD
    assert [c.action for c in store.list_changes() if c.step == "policy"] == [
        "policy.accept",
        "policy.revoke",
    ]


async def test_a_critical_target_stays_hard_whatever_was_accepted(
    store: Store, tmp_path: Path
) -> None:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, approval={"critical": ["docker:*/db"]})
    store.accept_override("docker.stop", DB, RiskLevel.NONE, "cli:alice", "")
    decision = level_now(settings, store, default_catalog(), "docker.stop", DB)
    assert decision.level is RiskLevel.HARD


async def test_flapping_counts_recent_fixes_of_the_same_alert_on_the_same_target(
    store: Store, memory: MemoryActivities
) -> None:
    acts = RecordActivities(store)
    fix = [Step("docker.start")]
    await record(acts, incident(WEB, fix, closed_at=NOW - timedelta(hours=2)), fix)  # too old
    await record(acts, incident(WEB, fix, verified=False), fix)  # not a fix
    await record(acts, incident(DB, fix), fix)  # another target
    await record(acts, incident(WEB, fix, alert="ContainerOOMKilled"), fix)  # another alert

    async def verdict(limit: FlapLimit | None = None) -> Any:
        return await in_activity(
            memory.flapping, FlapRequest(alert="ContainerKilled", target=WEB, limit=limit)
        )

    assert (await verdict()).fixes == 0
    first = incident(WEB, fix, closed_at=NOW - timedelta(minutes=20))
    await record(acts, first, fix)
    one = await verdict()
    assert not one.flapping and one.fixes == 1
    await record(acts, incident(WEB, fix, closed_at=NOW - timedelta(minutes=5)), fix)
    two = await verdict()
    assert two.flapping and two.fixes == 2
    assert "keeps firing on web: fixed 2 time(s) in the last 1h" in two.reason
    assert len(two.history) == 2 and two.history[0].endswith(
        f"{first.workflow_id}: fixed by docker.start"
    )
    assert not (await verdict(FlapLimit(count=4))).flapping  # the runbook allows more
    assert not (await verdict(FlapLimit(count=0))).flapping  # off
    assert not (await verdict(FlapLimit(count=3, window=timedelta(minutes=10)))).flapping
    with pytest.raises(ValueError, match="escalate every incident"):
        FlapLimit(count=1)


def test_write_failures_and_dry_runs_do_not_teach_anything(store: Store) -> None:
    state = incident(WEB, [Step("docker.start", result=ChangeResult.FAILED)], verified=None)
    store.record_incident(state, "r1")
    rows = store.outcomes()
    assert [(r.result, r.verified, r.failure) for r in rows] == [("failed", None, False)]


async def test_the_record_is_exported_as_metrics_from_the_store(
    store: Store, settings: Settings
) -> None:
    from prometheus_client import REGISTRY

    from activities.memory.metrics import publish_records

    acts = RecordActivities(store, settings.memory)
    fixed, undone = [Step("docker.start")], [Step("docker.start", rolled_back=True)]
    await record(acts, incident(WEB, fixed), fixed)
    await record(acts, incident(DB, undone, verified=False), undone)
    publish_records(store, settings.memory)
    labels = {"alert": "ContainerKilled", "target_kind": "docker:*/*", "action": "docker.start"}
    assert REGISTRY.get_sample_value("homelab_action_record_score", labels) == 0.5
    for outcome, n in (("verified", 1), ("failed_verification", 1), ("rolled_back", 1)):
        value = REGISTRY.get_sample_value(
            "homelab_action_record_outcomes", {**labels, "outcome": outcome}
        )
        assert value == n, outcome
    store.record_feedback(  # a vote through the bot (another process) shows at the next scrape
        store.outcomes(target=WEB)[0].workflow_id, "", -1, "telegram:1"
    )
    assert (
        REGISTRY.get_sample_value(
            "homelab_action_record_outcomes", {**labels, "outcome": "thumbs_down"}
        )
        == 1
    )
    assert REGISTRY.get_sample_value("homelab_action_record_score", labels) < 0.5


async def test_learning_on_postgresql(postgres: Any, settings: Settings) -> None:
    """The same queries on the other backend the store supports (the compose deployment's)."""
    import uuid as _uuid

    name = f"learn_{_uuid.uuid4().hex[:8]}"
    postgres.createdb(name)
    store = Store(postgres.url(name))
    try:
        acts = RecordActivities(store, settings.memory)
        undone = [Step("docker.restart", rolled_back=True)]
        for _ in range(2):
            await record(acts, incident(WEB, undone, verified=False), undone)
        approved = Step(
            "docker.stop", approval=ApprovalVerdict.APPROVED, approver="alice", level=RiskLevel.HARD
        )
        for _ in range(settings.memory.suggest_after):
            await record(acts, state := incident(WEB, [approved]), [approved])
        store.record_feedback(state.workflow_id, "", 1, "telegram:1")
        found = {r.action: r for r in records(store.outcomes(), NOW, timedelta(days=30))}
        assert found["docker.restart"].rolled_back == 2 and found["docker.stop"].thumbs_up == 1
        restriction = store.restriction("docker.restart", WEB)
        assert restriction is not None and restriction["active"]
        catalog = default_catalog()
        assert [p.suggestion.action for p in suggest(settings, store, catalog)] == ["docker.stop"]
        accept(settings, store, catalog, "docker.stop", WEB, RiskLevel.SOFT, "cli:alice", "")
        assert level_now(settings, store, catalog, "docker.stop", WEB).level is RiskLevel.SOFT
        store.clear_restriction("docker.restart", WEB, "cli:alice", "")
        fixes = store.recent_fixes("ContainerKilled", WEB, NOW - timedelta(hours=1))
        assert len(fixes) == settings.memory.suggest_after
    finally:
        store.close()
