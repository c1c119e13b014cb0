"""Certificate reads: expiry, chain verification, the inventory of every certificate, and
certbot's renewal state."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field

from activities.catalog import NoParams, ToolContext, ToolFailure
from activities.toolsets.certs import certbot, host, tls
from activities.toolsets.certs.client import (
    TOOLSET,
    Entry,
    all_entries,
    lineages,
    resolve,
    target_of,
)
from activities.toolsets.certs.x509 import Thresholds, covers, facts, load_pem_chain, sans
from activities.toolsets.commands import run_on
from core.models import ToolErrorKind
from core.targets import CertsTarget


def thresholds(target: CertsTarget) -> Thresholds:
    return Thresholds(target.warn_days, target.critical_days)


async def chain_of(
    target: CertsTarget, entry: Entry
) -> tuple[list[x509.Certificate], dict[str, Any]]:
    """The chain an endpoint serves, or the certificates in a file on the host."""
    if entry.is_endpoint:
        probed = await tls.probe(entry.host, entry.port, entry.server_name, target.timeout)
        return probed.chain, {
            "tls_version": probed.tls_version,
            "cipher": probed.cipher,
            "handshake_seconds": probed.seconds,
        }
    text = await host.read_file(target, entry.path)
    chain = load_pem_chain(text.encode())
    if not chain:
        raise ToolFailure(ToolErrorKind.FAILED, f"{entry.path} holds no PEM certificate")
    return chain, {}


def earliest(chain: list[x509.Certificate], target: CertsTarget) -> dict[str, Any]:
    """The certificate of the chain that expires first (what blackbox's
    ``probe_ssl_earliest_cert_expiry`` reports): usually the leaf."""
    index = min(range(len(chain)), key=lambda i: chain[i].not_valid_after_utc)
    first = facts(chain[index], thresholds(target), target.min_rsa_bits)
    return {
        "subject": first["subject"],
        "not_after": first["not_after"],
        "days_left": first["days_left"],
        "is_leaf": index == 0,
    }


async def lineage_for(
    target: CertsTarget, entry: Entry, leaf: x509.Certificate | None = None
) -> tuple[certbot.Lineage | None, x509.Certificate | None]:
    """The certbot lineage that renews ``entry`` (its ``cert_name``, else the one lineage whose
    certificate covers the entry's name or names exactly what ``leaf``, the certificate the entry
    shows now, names) and that lineage's current certificate."""
    if target.certbot is None:
        return None, None
    found = await lineages(target)
    if entry.cert_name:
        chosen = [lineage for lineage in found if lineage.name == entry.cert_name]
        if not chosen:
            raise ToolFailure(
                ToolErrorKind.NOT_FOUND,
                f"no certbot lineage {entry.cert_name!r} on the {target.name} host "
                f"(lineages: {', '.join(lineage.name for lineage in found) or 'none'})",
            )
    else:
        chosen = found
    texts = await host.read_files(target, [lineage.cert for lineage in chosen if lineage.cert])
    certs = {
        lineage.name: load_pem_chain((texts.get(lineage.cert) or "").encode())[:1]
        for lineage in chosen
    }
    if entry.cert_name:
        lineage = chosen[0]
        mine = certs.get(lineage.name) or []
        return lineage, mine[0] if mine else None
    name = entry.hostname
    served = sans(leaf) if leaf is not None else []

    def renews(lineage: certbot.Lineage) -> bool:
        mine = certs.get(lineage.name)
        if not mine:
            return False
        return bool(name and covers(mine[0], name)) or bool(served and sans(mine[0]) == served)

    matches = [lineage for lineage in chosen if renews(lineage)]
    if len(matches) != 1:
        return None, None
    return matches[0], certs[matches[0].name][0]


@TOOLSET.read(
    "expiry",
    "When the certificate of an endpoint, file or certbot lineage expires: days left, status "
    "against the target's thresholds, the chain's earliest expiry, and whether the endpoint "
    "serves the lineage's current certificate.",
)
async def expiry(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    entry = await resolve(ctx)
    chain, meta = await chain_of(target, entry)
    leaf = facts(chain[0], thresholds(target), target.min_rsa_bits)
    data: dict[str, Any] = {
        "certificate": entry.describe(),
        **{k: leaf[k] for k in ("subject", "issuer", "sans", "serial", "not_before", "not_after")},
        **{k: leaf[k] for k in ("lifetime_days", "days_left", "warn_days", "critical_days")},
        "status": leaf["status"],
        "expired": leaf["status"] == "expired",
        "earliest": earliest(chain, target),
        **meta,
    }
    lineage, current = await lineage_for(target, entry, chain[0])
    if lineage is not None and current is not None:
        data["cert_name"] = lineage.name
        data["lineage_serial"] = format(current.serial_number, "X")
        data["serving_latest"] = data["lineage_serial"] == leaf["serial"]
    else:
        data["cert_name"] = None
        data["serving_latest"] = None
    data["_summary"] = (
        f"{entry.name}: {leaf['subject']} expires {leaf['not_after']} "
        f"({leaf['days_left']:g} days left, {leaf['status']})"
    )
    return data


@TOOLSET.read(
    "chain",
    "Verify a certificate chain as clients do (against the system CAs or the target's ca_file): "
    "trusted path, hostname match, expiry; flags weak keys and signatures, self-signed leaves, "
    "OCSP must-staple.",
)
async def chain(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    entry = await resolve(ctx)
    certs, meta = await chain_of(target, entry)
    verdict = await tls.judge(certs, target.ca_file, entry.hostname)
    rows = [facts(c, thresholds(target), target.min_rsa_bits) for c in certs]
    weak = [f"{row['subject']}: {problem}" for row in rows for problem in row["weak"]]
    problems = [p for p in (verdict["verify_error"],) if p] + weak
    if rows[0]["self_signed"]:
        problems.append("the leaf certificate is self-signed")
    ok = bool(verdict["verified"]) and not weak
    return {
        "certificate": entry.describe(),
        **verdict,
        "length": len(rows),
        "chain": [
            {
                k: row[k]
                for k in (
                    "subject",
                    "issuer",
                    "serial",
                    "not_after",
                    "days_left",
                    "key",
                    "signature_hash",
                    "self_signed",
                    "must_staple",
                    "weak",
                )
            }
            for row in rows
        ],
        "weak": weak,
        "must_staple": rows[0]["must_staple"],
        "problems": problems,
        "ok": ok,
        **meta,
        "_summary": f"{entry.name}: "
        + ("chain verified" if ok else "; ".join(problems) or "not verified")
        + f" ({len(rows)} certificate(s), CA: {verdict['ca']})",
    }


async def _inventory_row(target: CertsTarget, entry: Entry) -> dict[str, Any]:
    row: dict[str, Any] = entry.describe()
    try:
        certs, _ = await chain_of(target, entry)
        leaf = facts(certs[0], thresholds(target), target.min_rsa_bits)
        verdict = await tls.judge(certs, target.ca_file, entry.hostname)
    except ToolFailure as failure:
        row.update(
            {"ok": False, "status": "error", "error": failure.message, "kind": failure.kind.value}
        )
        return row
    row.update(
        {
            k: leaf[k]
            for k in (
                "subject",
                "issuer",
                "sans",
                "serial",
                "not_after",
                "days_left",
                "status",
                "key",
                "weak",
            )
        }
    )
    row.update(
        {
            "verified": verdict["verified"],
            "verify_error": verdict["verify_error"],
            "hostname_ok": verdict["hostname_ok"],
            "earliest": earliest(certs, target),
            "ok": leaf["status"] == "ok" and bool(verdict["verified"]) and not leaf["weak"],
        }
    )
    return row


@TOOLSET.read(
    "inventory",
    "Every certificate of the target: configured endpoints and files, blackbox_exporter's TLS "
    "probes and certbot's lineages, each with issuer, names, days left, status and verification.",
    needs_resource=False,
    timeout=timedelta(minutes=2),
)
async def inventory(ctx: ToolContext[NoParams]) -> dict[str, Any]:
    target = target_of(ctx)
    entries, _, problems = await all_entries(ctx)
    rows = list(await asyncio.gather(*(_inventory_row(target, e) for e in entries)))
    by_status: dict[str, list[str]] = {}
    for row in rows:
        by_status.setdefault(str(row["status"]), []).append(row["name"])
    unverified = [r["name"] for r in rows if r.get("verified") is False]
    return {
        "certificates": rows,
        "count": len(rows),
        "by_status": by_status,
        "expiring": [r["name"] for r in rows if r["status"] in ("warning", "critical", "expired")],
        "unverified": unverified,
        "errors": [r["name"] for r in rows if r["status"] == "error"],
        "problems": problems,
        "_summary": f"{len(rows)} certificates: "
        + ", ".join(f"{len(v)} {k}" for k, v in sorted(by_status.items()))
        + (f"; {len(unverified)} fail verification" if unverified else "")
        + (f"; {'; '.join(problems)}" if problems else ""),
    }


async def host_offset(target: CertsTarget) -> str:
    """The host's UTC offset (certbot logs local time)."""
    result = await run_on(target.ssh, ["date", "+%z"], limit=10)
    text = result.stdout.strip()
    return text if result.ok and len(text) == 5 else "+0000"


class AcmeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    log_files: int = Field(default=2, ge=1, le=10, description="newest certbot logs to read")


@TOOLSET.read(
    "acme_status",
    "certbot's lineages (renewal configs): names, expiry, when renewal is due, the ACME server "
    "and authenticator, and from certbot's log the last attempt, its outcome, consecutive "
    "failures and an excerpt. With a resource: that certificate's lineage only.",
    AcmeParams,
    needs_resource=False,
)
async def acme_status(ctx: ToolContext[AcmeParams]) -> dict[str, Any]:
    target = target_of(ctx)
    if target.certbot is None:
        raise ToolFailure(
            ToolErrorKind.UNSUPPORTED, f"certs target {target.name} has no certbot configured"
        )
    settings = target.certbot
    entry = await resolve(ctx) if ctx.ref.resource else None
    found = await lineages(target)
    if entry is not None:
        shown: x509.Certificate | None = None
        if not entry.cert_name:  # matched by what it serves: read it
            try:
                shown = (await chain_of(target, entry))[0][0]
            except ToolFailure:
                shown = None
        chosen, _ = await lineage_for(target, entry, shown)
        found = [chosen] if chosen is not None else []
    logs = [f"{settings.logs_dir.rstrip('/')}/letsencrypt.log"]
    logs += [f"{logs[0]}.{i}" for i in range(1, ctx.params.log_files)]
    texts, offset = await asyncio.gather(
        host.read_files(target, [*logs, *(lin.cert for lin in found if lin.cert)]),
        host_offset(target),
    )
    runs: list[certbot.Run] = []
    for path in reversed(logs):  # oldest first
        runs += certbot.parse_log(texts.get(path) or "")
    rows = []
    for lineage in found:
        certs = load_pem_chain((texts.get(lineage.cert) or "").encode())
        leaf = facts(certs[0], thresholds(target), target.min_rsa_bits) if certs else None
        before = certbot.renew_before_days(lineage.renew_before_expiry)
        rows.append(
            {
                "cert_name": lineage.name,
                "domains": leaf["sans"] if leaf else [],
                "serial": leaf["serial"] if leaf else None,
                "not_after": leaf["not_after"] if leaf else None,
                "days_left": leaf["days_left"] if leaf else None,
                "renew_before_expiry": lineage.renew_before_expiry,
                "due": bool(leaf and before is not None and leaf["days_left"] <= before),
                "server": lineage.server,
                "authenticator": lineage.authenticator,
                "installer": lineage.installer or None,
                "hooks": lineage.hooks,
                **certbot.history(runs, lineage.name, offset),
            }
        )
    failing = [r["cert_name"] for r in rows if r["failing"]]
    data: dict[str, Any] = {
        "lineages": rows,
        "count": len(rows),
        "failing": failing,
        "logs_read": [p for p in logs if texts.get(p)],
        "_summary": f"{len(rows)} certbot lineage(s)"
        + (f", renewal failing for {', '.join(failing)}" if failing else ", none failing"),
    }
    if entry is not None:
        if not rows:
            data.update({"managed": False, "failing": False, "cert_name": None})
            data["_summary"] = f"{entry.name}: no certbot lineage renews it"
            return data
        row = rows[0]
        data.update(row)
        data["managed"] = True
        data["_summary"] = (
            f"{entry.name}: lineage {row['cert_name']}, last attempt "
            f"{row['last_attempt'] or 'never'} ({row['last_outcome'] or 'none'})"
            + (f", {row['consecutive_failures']} failure(s) in a row" if row["failing"] else "")
        )
    return data
