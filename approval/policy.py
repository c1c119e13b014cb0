"""The policy: the one function that decides how much human approval a write action needs.

Order of rules (each can only raise the level, except the humans' overrides of the base):
1. base level = the catalog's default for the tool, or the first matching ``approval.overrides``
   entry (action and target glob patterns), or a level a human accepted for this action on this
   exact target (``homelab-agents policy accept``, kept in the store);
2. irreversible actions are at least SOFT;
3. critical targets (``approval.critical`` patterns or ``critical: true`` on the target) make any
   write at least HARD;
4. more than ``max_writes_per_target_per_hour`` applied writes on the target escalate to HARD;
   so does a call the tool itself finds riskier than usual (``risks``: shrinking a resource,
   widening what it touches), whoever asked for it;
5. a learned restriction (the action failed verification or was rolled back ``restrict_after``
   times on the target) makes it at least HARD until a human clears it;
6. ``approval.mode``: manual makes every write HARD, observe makes every write a dry-run.
FORBIDDEN is never lowered. Learning can only raise a level (rule 5); lowering one is a human's
decision (rule 1). The reasons say which rules applied, and the action's verified record on the
target, for the approval request and ``homelab-agents policy explain``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from core.config import ApprovalSettings, Settings
from core.learning import LearnedPolicy
from core.models import (
    ApprovalMode,
    PolicyDecision,
    PolicyRequest,
    Reversibility,
    RiskLevel,
)


def evaluate(
    request: PolicyRequest,
    approval: ApprovalSettings,
    recent_writes: int,
    critical_reason: str = "",
    learned: LearnedPolicy | None = None,
) -> PolicyDecision:
    reasons: list[str] = []
    target = str(request.target)
    level = request.default_level
    reasons.append(f"catalog default for {request.action} is {level.value}")
    for override in approval.overrides:
        if fnmatchcase(request.action, override.action) and fnmatchcase(target, override.target):
            if (
                request.default_level is RiskLevel.FORBIDDEN
                and override.level is not RiskLevel.FORBIDDEN
            ):
                reasons.append(
                    f"override {override.action} on {override.target} ignored: FORBIDDEN stays"
                )
            else:
                level = override.level
                reasons.append(
                    f"override for {override.action} on {override.target} sets {override.level.value}"
                )
            break
    learned = learned or LearnedPolicy()
    if learned.override is not None:
        by = f"{learned.override_by}" + (
            f" on {learned.override_at:%Y-%m-%d}" if learned.override_at else ""
        )
        if level is RiskLevel.FORBIDDEN:
            reasons.append(f"accepted {learned.override.value} ignored: FORBIDDEN stays")
        else:
            level = learned.override
            reasons.append(f"accepted by {by} for {target}: {level.value} (policy accept)")

    if level is not RiskLevel.FORBIDDEN:
        if request.reversibility is Reversibility.IRREVERSIBLE and level.rank < RiskLevel.SOFT.rank:
            level = RiskLevel.SOFT
            reasons.append("irreversible action: at least SOFT")
        critical = request.target_critical or bool(critical_reason)
        if critical and level.rank < RiskLevel.HARD.rank:
            level = RiskLevel.HARD
            reasons.append(
                f"critical target ({critical_reason or 'flagged at triage'}): at least HARD"
            )
        elif critical:
            reasons.append(f"critical target ({critical_reason or 'flagged at triage'})")
        if (
            recent_writes >= approval.max_writes_per_target_per_hour
            and level.rank < RiskLevel.HARD.rank
        ):
            level = RiskLevel.HARD
            reasons.append(
                f"blast radius: {recent_writes} writes on {target} in the last hour "
                f"(limit {approval.max_writes_per_target_per_hour}): HARD"
            )
        for risk in request.risks:
            if level.rank < RiskLevel.HARD.rank:
                level = RiskLevel.HARD
                reasons.append(f"{risk}: HARD")
            else:
                reasons.append(risk)
        if learned.restriction:
            why = (
                f"learned: {learned.restriction}; HARD until a human clears it "
                f"(homelab-agents policy clear {request.action} {target})"
            )
            if level.rank < RiskLevel.HARD.rank:
                level = RiskLevel.HARD
            reasons.append(why)
        if approval.mode is ApprovalMode.MANUAL and level.rank < RiskLevel.HARD.rank:
            level = RiskLevel.HARD
            reasons.append("approval.mode is manual: every write is HARD")

    if learned.record:
        reasons.append(f"record: {learned.record}")
    dry_run = approval.mode is ApprovalMode.OBSERVE and level is not RiskLevel.FORBIDDEN
    if dry_run:
        reasons.append("approval.mode is observe: dry-run only")
    return PolicyDecision(level=level, dry_run=dry_run, reasons=reasons)


def decide(
    settings: Settings,
    request: PolicyRequest,
    recent_writes: int,
    learned: LearnedPolicy | None = None,
) -> PolicyDecision:
    """The single entry point: critical-target lookup plus ``evaluate``."""
    why = settings.critical_reason(request.target)
    if not why and request.target_critical:
        why = "flagged critical at triage"
    return evaluate(request, settings.approval, recent_writes, critical_reason=why, learned=learned)
