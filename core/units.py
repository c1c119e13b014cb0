"""Sizes as people write them (``512m``, ``2GiB``) and as they read them (``512 MiB``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(value: int | str) -> int:
    """Bytes from an int or a docker-style size (``512m``, ``1g``, ``256MiB``; binary units)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size such as 512m or 1g")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "bkmgt".index(unit or "b"))


def human_size(value: int | float | None) -> str:
    """``256 MiB``; zero or negative means no limit."""
    if not value or value <= 0:
        return "unlimited"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            text = f"{size:.1f}".removesuffix(".0")
            return f"{text} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> object:
    """``250ms``, ``60s``, ``5m``, ``1h30m`` or a number of seconds; anything else passes through
    (pydantic then accepts ISO 8601 durations and timedelta objects)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return timedelta(seconds=float(text))
        parts = _DURATION_PART.findall(text)
        if parts and "".join(f"{n}{u}" for n, u in parts).lower() == text.lower():
            return timedelta(seconds=sum(float(n) * _SECONDS[u.lower()] for n, u in parts))
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A timedelta that also reads ``5m``, ``60s``, ``250ms``."""
