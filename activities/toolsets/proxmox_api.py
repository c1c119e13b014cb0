"""What Proxmox VE and Proxmox Backup Server errors mean, for both toolsets' one client (proxmoxer).

The two APIs put their messages in different places (PVE in the HTTP reason phrase, PBS in the
body), so each toolset passes its own ``message``; the meaning of statuses is shared.
"""

from __future__ import annotations

from collections.abc import Callable

import requests
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
            if status == 400:
                return ToolFailure(ToolErrorKind.INVALID, text)
            if any(word in lowered for word in CONFLICT_WORDS):
                return ToolFailure(ToolErrorKind.CONFLICT, text)
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
