"""What Proxmox VE and Proxmox Backup Server errors mean, for both toolsets' one client (proxmoxer).

The two APIs put their messages in different places (PVE in the HTTP reason phrase, PBS in the
body), so each toolset passes its own ``message``; the meaning of statuses is shared, and so is
waiting for a task (a UPID) to end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from activities.catalog import ToolFailure, TranslateFn
from core.models import ToolErrorKind

NOT_FOUND_WORDS = ("does not exist", "no such")
CONFLICT_WORDS = ("already running", "not running", "is locked", "already used")


def translator(
    *,
    product: str,
    section: str,
    message: Callable[[ResourceException], str],
    unreachable: frozenset[int],
    ca_hint: str,
) -> TranslateFn:
    """A toolset ``translate`` for one Proxmox product."""

    def translate(exc: Exception) -> ToolFailure | None:
        if isinstance(exc, ResourceException):
            status = int(exc.status_code or 0)
            text = message(exc)
            lowered = text.lower()
            if status == 401:
                return ToolFailure(
                    ToolErrorKind.UNAUTHORIZED,
                    f"the {product} refused the API token ({text}); "
                    f"check token_id and token_secret of the {section} target",
                )
            if status == 403:
                return ToolFailure(
                    ToolErrorKind.UNAUTHORIZED, f"the API token lacks a permission: {text}"
                )
            if status in unreachable:
                return ToolFailure(
                    ToolErrorKind.UNREACHABLE, f"{product} unreachable ({status}): {text}"
                )
            if status == 501:
                return ToolFailure(ToolErrorKind.UNSUPPORTED, text)
            if status == 404 or any(word in lowered for word in NOT_FOUND_WORDS):
                return ToolFailure(ToolErrorKind.NOT_FOUND, text)
            if any(word in lowered for word in CONFLICT_WORDS):  # PBS says so with a 400
                return ToolFailure(ToolErrorKind.CONFLICT, text)
            if status == 400:
                return ToolFailure(ToolErrorKind.INVALID, text)
            return ToolFailure(ToolErrorKind.FAILED, f"{status} {text}")
        if isinstance(exc, requests.exceptions.SSLError):
            return ToolFailure(
                ToolErrorKind.FAILED,
                f"TLS verification failed: {exc} (set verify_ssl to the CA file that signed the "
                f"server's certificate, e.g. {ca_hint})",
            )
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return ToolFailure(ToolErrorKind.UNREACHABLE, f"{product} unreachable: {exc}")
        return None

    return translate


def task_log(api: ProxmoxAPI, node: str, upid: str, lines: int = 20) -> list[str]:
    try:
        rows = api.get(f"nodes/{node}/tasks/{upid}/log", start=0, limit=5000) or []
    except ResourceException:
        return []
    return [str(r.get("t", "")) for r in rows][-lines:]


def wait_upid(
    api: ProxmoxAPI, node: str, upid: str | None, what: str, timeout: float, status_tool: str
) -> dict[str, Any]:
    """Wait for a PVE or PBS task; its exit status decides success (``WARNINGS: n`` counts as
    done). A failure quotes the end of the task log; a task still running at ``timeout`` is a
    failure that says it may still finish (see ``status_tool``)."""
    if not upid:  # an older server finished the change synchronously
        return {"upid": None, "exitstatus": "OK", "seconds": 0.0}
    started = time.monotonic()
    delay = 0.1
    while True:
        status = api.get(f"nodes/{node}/tasks/{upid}/status") or {}
        if status.get("status") == "stopped":
            break
        if time.monotonic() - started > timeout:
            raise ToolFailure(
                ToolErrorKind.FAILED,
                f"{what}: task {upid} still running after {timeout:.0f}s "
                f"(it may still finish; check it with {status_tool})",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    exitstatus = str(status.get("exitstatus", ""))
    result = {
        "upid": upid,
        "type": status.get("type"),
        "exitstatus": exitstatus,
        "seconds": round(time.monotonic() - started, 2),
    }
    if exitstatus == "OK" or exitstatus.startswith("WARNINGS"):
        return result
    log = [
        line
        for line in task_log(api, node, upid, 5)
        if line and line != "TASK ERROR: " + exitstatus
    ]
    kind = ToolErrorKind.FAILED
    lowered = exitstatus.lower()
    if "does not exist" in lowered or "no such" in lowered:
        kind = ToolErrorKind.NOT_FOUND
    elif any(word in lowered for word in CONFLICT_WORDS):
        kind = ToolErrorKind.CONFLICT
    detail = f" (log: {' | '.join(log)})" if log else ""
    raise ToolFailure(kind, f"{what} failed: task {upid} ended with {exitstatus!r}{detail}")
