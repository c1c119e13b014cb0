from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.models import AlertStatus
from workers.docker_events import EventClassifier, fingerprint


def event(action: str, name: str = "web", **attrs: str) -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": action,
        "Actor": {"ID": "abc", "Attributes": {"name": name, "image": "img", **attrs}},
        "timeNano": 1_700_000_000_000_000_000,
    }


def classifier(state: dict[str, Any] | None = None) -> EventClassifier:
    return EventClassifier("lab", lambda name: None if state is None else {"State": state})


def policed(restarting: bool, policy: str = "on-failure", count: int = 1, limit: int = 0) -> Any:
    """The inspect document the engine gives at a die event under a restart policy."""
    return {
        "State": {"Status": "restarting" if restarting else "exited", "Restarting": restarting},
        "RestartCount": count,
        "HostConfig": {"RestartPolicy": {"Name": policy, "MaximumRetryCount": limit}},
    }


def test_non_zero_die_is_container_killed() -> None:
    alert = classifier().classify(event("die", exitCode="3"), now=100)
    assert alert is not None and alert.name == "ContainerKilled"
    assert alert.labels["engine"] == "lab" and alert.labels["exit_code"] == "3"
    assert alert.fingerprint == fingerprint("lab", "web", "ContainerKilled")


def test_clean_exit_and_intentional_stop_are_ignored() -> None:
    c = classifier()
    assert c.classify(event("die", exitCode="0"), now=1) is None
    assert c.classify(event("kill", signal="15"), now=10) is None
    assert c.classify(event("die", exitCode="137"), now=11) is None  # docker stop/restart
    assert (
        c.classify(event("die", exitCode="137"), now=100) is not None
    )  # a later, unexplained death


def test_oom_then_die_is_one_alert() -> None:
    c = classifier({"OOMKilled": True})
    first = c.classify(event("oom"), now=1)
    assert first is not None and first.name == "ContainerOOMKilled"
    assert c.classify(event("die", exitCode="137"), now=1.1) is None


def test_missed_oom_event_uses_engine_flag_only_with_sigkill_exit() -> None:
    assert (
        classifier({"OOMKilled": True}).classify(event("die", exitCode="137"), now=1).name
        == "ContainerOOMKilled"
    )  # type: ignore[union-attr]
    # The flag is sticky across restarts: a later exit 1 is a crash, not an OOM kill.
    assert (
        classifier({"OOMKilled": True}).classify(event("die", exitCode="1"), now=1).name
        == "ContainerKilled"
    )  # type: ignore[union-attr]


def test_health_status_fires_and_resolves() -> None:
    c = classifier()
    bad = c.classify(event("health_status: unhealthy"), now=1)
    good = c.classify(event("health_status: healthy"), now=2)
    assert bad is not None and bad.status is AlertStatus.FIRING and bad.name == "ContainerUnhealthy"
    assert (
        good is not None
        and good.status is AlertStatus.RESOLVED
        and good.fingerprint == bad.fingerprint
    )


def test_a_death_the_engine_restarts_is_left_to_its_policy_until_it_loops() -> None:
    docs = iter([policed(True, "always", n) for n in range(1, 7)])
    c = EventClassifier("lab", lambda name: next(docs), 3, timedelta(seconds=60))
    assert c.classify(event("die", exitCode="3"), now=0) is None
    assert c.classify(event("die", exitCode="3"), now=10) is None
    loop = c.classify(event("die", exitCode="3"), now=20)  # third restart within the window
    assert loop is not None and loop.name == "ContainerKilled"
    assert loop.labels["restart_policy"] == "always" and loop.labels["restart_count"] == "3"
    assert "crash loop" in loop.annotations["summary"]
    assert loop.fingerprint == fingerprint("lab", "web", "ContainerKilled")
    # the count starts over after an alert; restarts spread wider than the window never loop
    assert c.classify(event("die", exitCode="3"), now=100) is None
    assert c.classify(event("die", exitCode="3"), now=170) is None
    assert c.classify(event("die", exitCode="3"), now=240) is None


def test_a_policy_that_gave_up_is_an_incident_and_says_so() -> None:
    c = EventClassifier("lab", lambda name: policed(False, "on-failure", 2, 2))
    alert = c.classify(event("die", exitCode="3"), now=1)
    assert alert is not None and alert.labels["restart_count"] == "2"
    assert "gave up after 2 restarts (MaximumRetryCount 2)" in alert.annotations["summary"]


def test_an_oom_kill_is_an_incident_whatever_the_policy() -> None:
    c = EventClassifier("lab", lambda name: policed(True, "always"))
    oom = c.classify(event("oom"), now=1)
    assert oom is not None and oom.name == "ContainerOOMKilled"
    assert c.classify(event("die", exitCode="137"), now=1.2) is None  # folded into the OOM


def test_without_a_policy_or_a_container_every_death_is_an_incident() -> None:
    assert (
        EventClassifier("lab", lambda name: policed(False, "no", 0)).classify(
            event("die", exitCode="3"), now=1
        )
        is not None
    )
    gone = EventClassifier("lab", lambda name: None).classify(event("die", exitCode="3"), now=1)
    assert gone is not None and "restart_policy" not in gone.labels
