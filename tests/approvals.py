"""Signed decisions for tests, made the way the CLI makes them (approval/signing.py)."""

from __future__ import annotations

from typing import Any

from approval import signing
from core.config import Settings
from core.models import ApprovalDecision, ApprovalRequest, ApprovalSignal


def key(settings: Settings, approver: str) -> str:
    """The approver's private key, created in the settings' keys_dir on first use."""
    path = settings.keys_dir / f"{approver}.key"
    if not path.exists():
        signing.write_pair(settings.keys_dir, approver)
    return signing.read_private(path)


def proof(
    settings: Settings, wid: str, request: ApprovalRequest, approver: str, approve: bool = True
) -> dict[str, str]:
    return signing.sign_decision(key(settings, approver), wid, request, approve, approver)


def signal(
    settings: Settings, wid: str, request: ApprovalRequest, approver: str, **extra: Any
) -> ApprovalSignal:
    """An ``approve`` signal signed by ``approver`` (pass approve=False for ``deny``)."""
    approve = extra.pop("approve", True)
    return ApprovalSignal(
        approver=approver,
        action_id=request.id,
        **proof(settings, wid, request, approver, approve),
        **extra,
    )


def decision(
    settings: Settings,
    wid: str,
    request: ApprovalRequest,
    approver: str,
    approve: bool = True,
    **extra: Any,
) -> ApprovalDecision:
    return ApprovalDecision(
        approve=approve,
        approver=approver,
        action_id=request.id,
        **proof(settings, wid, request, approver, approve),
        **extra,
    )
