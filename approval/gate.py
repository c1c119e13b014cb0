"""The policy and decision proofs as Temporal activities: decided at gate time, kept in history.

``policy.evaluate`` is the first look at a write; ``policy.admit`` is the last one, right before
the write runs and under the target's lock: the kill switch, the lock's ownership and the policy
with the write count as it is now. ``approvals.verify`` checks a decision's signature against the
approver's public key. approval/ knows no SQL: the store's functions are injected by the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from temporalio import activity

from approval import signing
from approval.policy import decide
from core import contracts
from core.config import Settings
from core.learning import LearnedPolicy
from core.models import (
    Admission,
    AdmitRequest,
    DecisionCheck,
    DecisionProof,
    PolicyDecision,
    PolicyRequest,
)


class PolicyActivities:
    """The store's lookups are injected by the worker (approval/ knows no SQL):
    ``count_recent_writes(target)``, ``learned(action, target)`` (learned restrictions, levels
    a human accepted, the action's verified record), the kill switch and lock ownership."""

    def __init__(
        self,
        settings: Settings,
        count_recent_writes: Callable[[str], int],
        learned: Callable[[str, str], LearnedPolicy] | None = None,
        paused: Callable[[], bool] = lambda: False,
        lock_holds: Callable[[str, str], bool] = lambda target, token: True,
    ) -> None:
        self.settings = settings
        self.count_recent_writes = count_recent_writes
        self.paused = paused
        self.lock_holds = lock_holds
        self.learned = learned

    async def _decide(self, request: PolicyRequest) -> PolicyDecision:
        target = str(request.target)
        recent = await asyncio.to_thread(self.count_recent_writes, target)
        learned = (
            await asyncio.to_thread(self.learned, request.action, target) if self.learned else None
        )
        return decide(self.settings, request, recent, learned)

    @activity.defn(name=contracts.POLICY.name)
    async def evaluate(self, request: PolicyRequest) -> PolicyDecision:
        return await self._decide(request)

    @activity.defn(name=contracts.ADMIT.name)
    async def admit(self, request: AdmitRequest) -> Admission:
        """The last look before a write, under the lock (so the count of writes is exact)."""
        lock = request.lock
        holds = lock is None or await asyncio.to_thread(
            self.lock_holds, lock.target, lock.request_id
        )
        paused = await asyncio.to_thread(self.paused)
        decision = await self._decide(request.policy)
        return Admission(decision=decision, holds=holds, paused=paused)


class DecisionVerifier:
    """Who decided, proven: a decision counts only with its signer's signature over it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def public_keys(self) -> dict[str, str]:
        """The configured keys, and the ``.pub`` files in keys_dir (read on every check, so a
        key added or revoked there counts at once)."""
        keys: dict[str, str] = {}
        directory: Path = self.settings.keys_dir
        if directory.is_dir():
            for path in sorted(directory.glob("*.pub")):
                keys[path.stem] = path.read_text().strip()
        keys.update(self.settings.approval.public_keys)
        return keys

    def check(self, check: DecisionCheck) -> DecisionProof:
        d, r = check.decision, check.request
        if not d.proof:
            if self.settings.approval.allow_unsigned:
                return DecisionProof(ok=True, via="unsigned")
            return DecisionProof(
                ok=False,
                reason="unsigned decision: `homelab-agents approve` signs with your key "
                "(approval.allow_unsigned is for a single-user lab)",
            )
        signer = d.signer or d.approver
        if signer == signing.TELEGRAM_SIGNER:
            if not d.approver.startswith("telegram:"):
                return DecisionProof(ok=False, reason="the bot signs only for Telegram users")
        elif signer != d.approver:
            return DecisionProof(ok=False, reason=f"signed by {signer!r}, not by {d.approver!r}")
        key = self.public_keys().get(signer)
        if key is None:
            return DecisionProof(ok=False, reason=f"no public key for {signer!r}")
        payload = signing.message(
            check.workflow_id, r.run_id, r.id, r.binding, d.approve, d.approver
        )
        if not signing.verify(key, payload, d.proof):
            return DecisionProof(
                ok=False,
                reason="the signature does not match this approval (another incident, run, "
                "action or preview, or another key)",
            )
        return DecisionProof(ok=True, via=f"signed:{signer}")

    @activity.defn(name=contracts.VERIFY_DECISION.name)
    async def verify(self, check: DecisionCheck) -> DecisionProof:
        return await asyncio.to_thread(self.check, check)
