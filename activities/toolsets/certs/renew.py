"""Renewing a certificate: ``certbot renew --cert-name X`` (or the target's own command) on the
host, then the configured reload, then a re-probe that must show the new certificate.

Idempotent against the before-state: a retry after certbot already renewed (the lineage's serial
changed) only reloads and re-probes; a renewal certbot skipped ("not yet due") is a failure that
says so, never a silent success.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from datetime import timedelta
from typing import Any

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.certs import certbot, host
from activities.toolsets.certs.client import TOOLSET, Entry, resolve, target_of
from activities.toolsets.certs.reads import chain_of, lineage_for, thresholds
from activities.toolsets.certs.x509 import facts, load_pem_chain
from activities.toolsets.commands import CommandResult, run_on
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.redact import redact_text
from core.targets import CertsTarget

REPROBE_SECONDS = 15.0


class RenewParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: bool = Field(
        default=False, description="--force-renewal: renew even when certbot says it is not due"
    )


def _commands(
    target: CertsTarget, entry: Entry, cert_name: str, force: bool
) -> tuple[list[str], list[str] | None]:
    if target.renew_command is not None:
        renew = [word.replace("{cert_name}", cert_name) for word in target.renew_command]
    elif target.certbot is not None:
        renew = certbot.renew_argv(target.certbot, cert_name, force)
    else:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"certs target {target.name} has neither certbot nor renew_command configured",
        )
    reload = entry.reload_command or target.reload_command
    return renew, list(reload) if reload else None


async def _lineage_leaf(target: CertsTarget, path: str) -> dict[str, Any]:
    certs = load_pem_chain((await host.read_file(target, path)).encode())
    if not certs:
        raise ToolFailure(ToolErrorKind.FAILED, f"{path} holds no PEM certificate")
    return facts(certs[0], thresholds(target), target.min_rsa_bits)


async def capture(ctx: ToolContext[RenewParams]) -> dict[str, Any]:
    target = target_of(ctx)
    entry = await resolve(ctx)
    served, _ = await chain_of(target, entry)
    lineage, current = await lineage_for(target, entry, served[0])
    cert_name = entry.cert_name or (lineage.name if lineage else None)
    if cert_name is None or (target.renew_command is None and lineage is None):
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED,
            f"no certbot lineage renews {entry.name}: set its cert_name (or renew_command)",
        )
    renew, reload = _commands(target, entry, cert_name, ctx.params.force)
    before: dict[str, Any] = {
        "certificate": entry.describe(),
        "cert_name": cert_name,
        "lineage_cert": lineage.cert if lineage else None,
        "command": renew,
        "reload": reload,
        "where": f"{target.ssh.user}@{target.ssh.host}" if target.ssh else "localhost",
    }
    if lineage is not None and current is not None:
        leaf = facts(current, thresholds(target), target.min_rsa_bits)
        before.update(
            {
                "lineage_serial": leaf["serial"],
                "lineage_not_after": leaf["not_after"],
                "lineage_days_left": leaf["days_left"],
            }
        )
    leaf = facts(served[0], thresholds(target), target.min_rsa_bits)
    before.update(
        {"serial": leaf["serial"], "not_after": leaf["not_after"], "days_left": leaf["days_left"]}
    )
    return before


def preview(ctx: ToolContext[RenewParams], before: dict[str, Any]) -> str:
    cert = before["certificate"]
    steps = [f"{shlex.join(before['command'])} on {before['where']}"]
    if before["reload"]:
        steps.append(f"then {shlex.join(before['reload'])}")
    steps.append(
        f"then re-read {cert['name']} ({cert['address']}) until it shows the new certificate"
    )
    return (
        "; ".join(steps) + f" (now serial {before['serial']}, expires {before['not_after']}, "
        f"{before['days_left']:g} days left; lineage {before['cert_name']})"
    )


async def _run(target: CertsTarget, argv: list[str], what: str, limit: float) -> CommandResult:
    env = (
        target.certbot.env
        if target.certbot and argv[: len(target.certbot.command)] == target.certbot.command
        else None
    )
    result = await run_on(target.ssh, argv, limit=limit, env=env)
    if not result.ok:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"{what} on {result.where} exited {result.exit_status}: {_output(result, 1200)}",
        )
    return result


def _output(result: CommandResult, chars: int) -> str:
    """certbot's own explanation: its stderr and stdout, the end of them, redacted."""
    text = "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())
    lines = [
        line for line in text.splitlines() if line.strip() and not set(line.strip()) <= {"-", " "}
    ]
    return redact_text("\n".join(lines))[-chars:]


async def _served_serial(target: CertsTarget, entry: Entry) -> str:
    served, _ = await chain_of(target, entry)
    return format(served[0].serial_number, "X")


async def _settled(
    target: CertsTarget, entry: Entry, old: str, wanted: str | None
) -> tuple[list[x509.Certificate] | None, str]:
    """Re-probe until the entry shows the new certificate twice in a row (a reloading server's
    old workers may still answer a connection or two), for up to REPROBE_SECONDS."""
    deadline = time.monotonic() + REPROBE_SECONDS
    streak = 0
    while True:
        chain, _ = await chain_of(target, entry)
        serial = format(chain[0].serial_number, "X")
        new = serial != old and (wanted is None or serial == wanted)
        streak = streak + 1 if new else 0
        if streak >= 2:
            return chain, serial
        if time.monotonic() >= deadline:
            return None, serial
        await asyncio.sleep(0.2 if new else 0.5)


@TOOLSET.write(
    "renew",
    "Renew a certificate with `certbot renew --cert-name X` (or the target's renew_command) on "
    "its host, reload the configured service and re-probe until the new certificate is served.",
    RenewParams,
    level=RiskLevel.SOFT,
    reversibility=Reversibility.IRREVERSIBLE,
    capture=capture,
    preview=preview,
    timeout=timedelta(minutes=10),
)
async def renew(ctx: ToolContext[RenewParams]) -> dict[str, Any]:
    target = target_of(ctx)
    entry = await resolve(ctx)
    before = ctx.before or await capture(ctx)
    started = time.monotonic()
    lineage_path = before.get("lineage_cert")
    renewed_already = False
    certbot_output = ""
    if lineage_path and before.get("lineage_serial"):
        now = await _lineage_leaf(target, lineage_path)
        renewed_already = now["serial"] != before["lineage_serial"]
    if not renewed_already:
        limit = target.certbot.timeout.total_seconds() if target.certbot else 300.0
        result = await _run(target, before["command"], "renewal", limit)
        certbot_output = _output(result, 600)
    after_lineage = await _lineage_leaf(target, lineage_path) if lineage_path else None
    if after_lineage is not None and after_lineage["serial"] == before.get("lineage_serial"):
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"the renewal ran but lineage {before['cert_name']} still holds serial "
            f"{before['lineage_serial']} (certbot: {certbot_output[-400:] or 'no output'}); "
            "if certbot says it is not due yet, renew with force",
        )
    wanted = after_lineage["serial"] if after_lineage else None
    reloaded = False
    if before["reload"] and (
        not entry.is_endpoint or await _served_serial(target, entry) != wanted
    ):
        await _run(target, before["reload"], "reload", 60)
        reloaded = True
    chain, served = await _settled(target, entry, before["serial"], wanted)
    if chain is None:
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"{entry.name} ({entry.address}) still shows serial {served} after the renewal"
            + (f" (the lineage now holds {wanted})" if wanted else "")
            + ("" if before["reload"] else "; no reload_command is configured"),
        )
    leaf = facts(chain[0], thresholds(target), target.min_rsa_bits)
    return {
        "certificate": before["certificate"],
        "cert_name": before["cert_name"],
        "serial_before": before["serial"],
        "not_after_before": before["not_after"],
        "serial": leaf["serial"],
        "not_after": leaf["not_after"],
        "days_left": leaf["days_left"],
        "status": leaf["status"],
        "reloaded": reloaded,
        "renewed_by_an_earlier_attempt": renewed_already,
        "certbot_output": certbot_output,
        "seconds": round(time.monotonic() - started, 2),
        "_summary": f"renewed {entry.name}: serial {before['serial']} → {leaf['serial']}, "
        f"expires {leaf['not_after']} ({leaf['days_left']:g} days left)",
    }
