"""Sizes and durations as people write them (``512m``, ``5m``) and read them (``512 MiB``, ``2h05m``)."""

from __future__ import annotations

import re
import time
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


def human_bytes(value: int | float | None) -> str:
    """``12.5 MiB``; ``0 B`` for zero: an amount (used, free, retained), never a limit."""
    size = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.1f}".removesuffix(".0") + f" {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_size(value: int | float | None) -> str:
    """``256 MiB`` for a limit; zero or negative means no limit (Docker's and Proxmox's convention)."""
    if not value or value <= 0:
        return "unlimited"
    return human_bytes(value)


def human_duration(seconds: float | None) -> str:
    """``3d4h``, ``2h05m``, ``4m10s``; ``never`` for None (an age that has no start)."""
    if seconds is None:
        return "never"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def seconds_since(epoch: float | str | None, now: float | None = None) -> int | None:
    """Whole seconds from a Unix time until ``now`` (default: the clock); None without one."""
    if not epoch:
        return None
    return max(int((now or time.time()) - float(epoch)), 0)


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
