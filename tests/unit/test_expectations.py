from __future__ import annotations

from datetime import timedelta

import pytest

from core.expectations import check, check_all, lookup, stable_values
from core.models import Expectation, VerificationSpec
from core.units import (
    human_bytes,
    human_duration,
    human_size,
    parse_duration,
    parse_size,
    seconds_since,
)

DATA = {
    "state": {"running": True, "health": "none", "exit_code": 0},
    "restart_count": 2,
    "items": [{"x": 5}],
}


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ({"path": "state.running", "equals": True}, True),
        ({"path": "state.running", "equals": False}, False),
        ({"path": "state.health", "in": ["healthy", "none"]}, True),
        ({"path": "state.health", "not_in": ["unhealthy"]}, True),
        ({"path": "restart_count", "lt": 3}, True),
        ({"path": "restart_count", "ge": 3}, False),
        ({"path": "items.0.x", "equals": 5}, True),
        ({"path": "items.3.x", "exists": True}, False),
        ({"path": "state.missing", "equals": None}, True),
        ({"path": "state.running", "gt": 0}, False),  # booleans are not numbers
    ],
)
def test_operators(spec: dict[str, object], ok: bool) -> None:
    assert check(Expectation.model_validate(spec), DATA)[0] is ok


def test_expectations_survive_serialisation() -> None:
    # Temporal carries them as JSON: an absent `equals` must stay absent, `equals: null` must stay.
    spec = VerificationSpec.model_validate(
        {
            "checks": [
                {
                    "tool": "t",
                    "expect": [
                        {"path": "state.health", "in": ["none"]},
                        {"path": "state.gone", "equals": None},
                    ],
                }
            ]
        }
    )
    again = VerificationSpec.model_validate_json(spec.model_dump_json())
    ok, reasons = check_all(again.checks[0].expect, DATA)
    assert ok, reasons
    assert not check(again.checks[0].expect[1], {"state": {"gone": 1}})[0]


def test_stable_values_and_lookup() -> None:
    expect = [Expectation(path="restart_count", stable=True), Expectation(path="state.running")]
    assert stable_values(expect, DATA) == {"restart_count": 2}
    assert lookup(DATA, "state.exit_code") == 0


def test_units() -> None:
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("2g") == 2 * 1024**3
    assert parse_size("256MiB") == 256 * 1024**2
    assert human_size(16 * 1024**2) == "16 MiB" and human_size(0) == "unlimited"
    # amounts are not limits: nothing used is "0 B", not "unlimited"
    assert human_bytes(0) == "0 B" and human_bytes(1536) == "1.5 KiB"
    assert human_duration(None) == "never" and human_duration(42) == "42s"
    assert human_duration(3 * 86400 + 4 * 3600 + 59) == "3d4h"
    assert human_duration(2 * 3600 + 5 * 60) == "2h05m"
    assert seconds_since(None) is None and seconds_since(100.0, now=160.5) == 60
    assert seconds_since("200", now=100.0) == 0  # a clock behind the server never goes negative
    assert parse_duration("5m") == timedelta(minutes=5)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert parse_duration(3) == timedelta(seconds=3)
    with pytest.raises(ValueError):
        parse_size("lots")
