from __future__ import annotations

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
    return EventClassifier("lab", lambda name: state)


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
