"""Evaluate expectations against tool results.

One small, safe language (dotted paths and comparison operators, no ``eval``) serves both the
runbooks' ``when`` conditions and their verification checks.
"""

from __future__ import annotations

from typing import Any

from core.models import Expectation

_MISSING = object()


def lookup(data: Any, path: str) -> Any:
    """Follow a dotted path through dicts and lists; ``_MISSING`` if any step is absent."""
    current = data
    for part in path.split(".") if path else []:
        if isinstance(current, dict):
            if part not in current:
                return _MISSING
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def check(expectation: Expectation, data: Any) -> tuple[bool, str]:
    """Return whether ``data`` meets the expectation, and a one-line reason."""
    value = lookup(data, expectation.path)
    path = expectation.path
    if expectation.exists is not None:
        present = value is not _MISSING and value is not None
        if present != expectation.exists:
            return False, f"{path} {'missing' if expectation.exists else 'present'}"
    if value is _MISSING:
        value = None
    if expectation.compare_equals and value != expectation.equals:
        return False, f"{path} = {value!r}, expected {expectation.equals!r}"
    if expectation.in_ is not None and value not in expectation.in_:
        return False, f"{path} = {value!r}, expected one of {expectation.in_!r}"
    if expectation.not_in is not None and value in expectation.not_in:
        return False, f"{path} = {value!r}, must not be one of {expectation.not_in!r}"
    bounds = (
        ("lt", expectation.lt, lambda a, b: a < b),
        ("le", expectation.le, lambda a, b: a <= b),
        ("gt", expectation.gt, lambda a, b: a > b),
        ("ge", expectation.ge, lambda a, b: a >= b),
    )
    for name, bound, compare in bounds:
        if bound is None:
            continue
        number = _number(value)
        if number is None or not compare(number, bound):
            return False, f"{path} = {value!r}, expected {name} {bound}"
    return True, f"{path} = {value!r}"


def check_all(expectations: list[Expectation], data: Any) -> tuple[bool, list[str]]:
    results = [check(e, data) for e in expectations]
    return all(ok for ok, _ in results), [reason for _, reason in results]


def stable_values(expectations: list[Expectation], data: Any) -> dict[str, Any]:
    """The values of the ``stable`` paths, to compare at the end of a stability window."""
    out: dict[str, Any] = {}
    for expectation in expectations:
        if expectation.stable:
            value = lookup(data, expectation.path)
            out[expectation.path] = None if value is _MISSING else value
    return out
