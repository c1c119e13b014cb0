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


# --- pass or fail, and the reason (the mutation run of core/expectations.py holds these) ------


def expect(**spec: object) -> Expectation:
    return Expectation.model_validate({"path": "v", **spec})


def test_a_value_outside_in_fails_and_says_what_was_expected() -> None:
    assert check(expect(**{"in": ["healthy", "starting"]}), {"v": "none"}) == (
        False,
        "v = 'none', expected one of ['healthy', 'starting']",
    )
    assert check(expect(**{"in": ["healthy"]}), {"v": "healthy"}) == (True, "v = 'healthy'")


def test_a_value_in_not_in_fails_and_says_what_it_must_not_be() -> None:
    assert check(expect(not_in=["unhealthy", "none"]), {"v": "none"}) == (
        False,
        "v = 'none', must not be one of ['unhealthy', 'none']",
    )
    assert check(expect(not_in=["unhealthy"]), {"v": "none"}) == (True, "v = 'none'")


@pytest.mark.parametrize(
    ("exists", "data", "result"),
    [
        (True, {"v": 0}, (True, "v = 0")),
        (True, {"v": False}, (True, "v = False")),
        (True, {}, (False, "v missing")),
        (True, {"v": None}, (False, "v missing")),  # null is not a value
        (False, {}, (True, "v = None")),
        (False, {"v": None}, (True, "v = None")),
        (False, {"v": "x"}, (False, "v present")),
    ],
)
def test_exists_passes_on_a_present_value_and_fails_on_a_missing_or_null_one(
    exists: bool, data: dict[str, object], result: tuple[bool, str]
) -> None:
    assert check(expect(exists=exists), data) == result


@pytest.mark.parametrize(
    ("op", "bound", "value", "ok"),
    [
        ("lt", 3, 2, True),
        ("lt", 2, 2, False),
        ("le", 2, 2, True),
        ("le", 2, 3, False),
        ("le", 2, 1.5, True),
        ("gt", 1, 2, True),
        ("gt", 2, 2, False),
        ("gt", 1, 1.5, True),
        ("ge", 2, 2, True),
        ("ge", 3, 2, False),
        ("lt", 2, 1.5, True),
        ("ge", 1.5, 1.25, False),
    ],
)
def test_bounds_compare_ints_and_floats_both_ways(
    op: str, bound: float, value: float, ok: bool
) -> None:
    reason = f"v = {value!r}" if ok else f"v = {value!r}, expected {op} {float(bound)}"
    assert check(expect(**{op: bound}), {"v": value}) == (ok, reason)


@pytest.mark.parametrize("value", ["2", "abc", None, True, [1], {"n": 1}])
def test_a_bound_on_a_non_number_fails_without_crashing(value: object) -> None:
    assert check(expect(lt=3), {"v": value}) == (False, f"v = {value!r}, expected lt 3.0")


def test_lookup_of_the_empty_path_is_the_whole_result() -> None:
    assert lookup([1, 2], "") == [1, 2]
    assert check(Expectation(path="", exists=True), "up") == (True, " = 'up'")


@pytest.mark.parametrize(
    ("path", "value"),
    [("items.0.x", 5), ("items.-1.x", 5), ("state.health", "none"), ("restart_count", 2)],
)
def test_lookup_follows_dict_keys_and_list_indexes(path: str, value: object) -> None:
    assert lookup(DATA, path) == value


@pytest.mark.parametrize(
    "path",
    [
        "items.1",  # past the end
        "items.-2",
        "items.x",  # a list has no keys
        "state.health.0",  # a string is not a list
        "state.health.x",
        "restart_count.0",
        "state.running.x",
        "nothing.at.all",
    ],
)
def test_a_path_through_anything_but_dicts_and_lists_is_missing(path: str) -> None:
    assert check(Expectation(path=path, exists=True), DATA) == (False, f"{path} missing")


def test_verification_fails_when_any_check_fails() -> None:
    good = Expectation(path="state.running", equals=True)
    bad = Expectation(path="restart_count", lt=1)
    assert check_all([good, bad], DATA) == (
        False,
        ["state.running = True", "restart_count = 2, expected lt 1.0"],
    )
    assert check_all([bad, good], DATA)[0] is False
    assert check_all([good, good], DATA) == (True, ["state.running = True"] * 2)
    assert check_all([], DATA) == (True, [])


def test_stable_values_of_a_missing_path_is_none() -> None:
    checks = [Expectation(path="gone", stable=True), Expectation(path="items.0", stable=True)]
    assert stable_values(checks, DATA) == {"gone": None, "items.0": {"x": 5}}
