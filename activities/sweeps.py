"""Daily sweeps: every configured certificate and backup repository checked, each problem
returned as a synthetic alert for the normal intake path (routing, dedup, runbooks).

A finding is an ``Alert`` whose name a runbook answers, whose labels name the target
(``homelab_target``) and the resource the runbook reads (``certificate``, ``repository``,
``datastore``, ``id``), whose annotations carry the evidence, and whose fingerprint is stable for
the same problem, so a repeated sweep signals the open incident instead of opening another.
Fingerprints include what identifies the problem's instance (a certificate's serial, the newest
snapshot), so a renewed-then-expiring certificate or a new stale period is a new incident.

The sweeps only read (through the catalog's tools, so results are typed and redacted). The
``certificate-sweep`` and ``backup-sweep`` schedules run them (``SweepWorkflow``) and route the
findings like every scheduled job's (``findings.route``): a closed incident's finding reopens only
after ``repeat_interval``. A later sweep does not resolve a finding; a fixed problem is simply not
found again, and its incident verified the fix itself.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities.tools import ToolRunner
from core import contracts
from core.config import Settings
from core.models import Alert, AlertStatus, TargetRef, ToolCall, ToolResult
from core.redact import redact_text
from core.schedules import Evaluation, SweepInput
from core.targets import BackupsTarget, CertsTarget, PbsTarget, ProxmoxTarget
from core.units import human_duration

SWEEP_SOURCE = "sweep"
ANNOTATION_CHARS = 1500


def finding(
    sweep: str,
    name: str,
    severity: str,
    service: str,
    target: str,
    resource_label: str,
    resource: str,
    summary: str,
    evidence: dict[str, Any],
    identity: str = "",
    labels: dict[str, str] | None = None,
) -> Alert:
    """One problem as an alert. ``identity`` distinguishes instances of the same problem."""
    key = "|".join(("sweep", service, target, resource, name, identity))
    fingerprint = "sweep-" + hashlib.sha256(key.encode()).hexdigest()[:24]
    annotations = {"summary": summary}
    for field, value in evidence.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        annotations[field] = redact_text(text)[:ANNOTATION_CHARS]
    return Alert(
        name=name,
        status=AlertStatus.FIRING,
        fingerprint=fingerprint,
        labels={
            "alertname": name,
            "severity": severity,
            "service": service,
            "homelab_target": target,
            resource_label: resource,
            "homelab_source": "sweep",
            "sweep": sweep,
            **(labels or {}),
        },
        annotations=annotations,
        starts_at=datetime.now(UTC),
        source=SWEEP_SOURCE,
    )


class Sweeper:
    """The sweeps' logic, on one tool runner (the activities below and the tests call it), over
    the targets of one site (``""``: the main worker's, those with no site)."""

    def __init__(self, settings: Settings, runner: ToolRunner, site: str = "") -> None:
        self.settings = settings
        self.runner = runner
        self.site = site

    def certs_targets(self) -> list[CertsTarget]:
        return [t for t in self.settings.certs if t.site == self.site]

    def backup_targets(self) -> list[BackupsTarget | PbsTarget | ProxmoxTarget]:
        s = self.settings
        every: list[BackupsTarget | PbsTarget | ProxmoxTarget] = [*s.backups, *s.pbs, *s.proxmox]
        return [t for t in every if t.site == self.site]

    async def _run(
        self, tool: str, service: str, target: str, resource: str = "", **params: Any
    ) -> ToolResult:
        call = ToolCall(
            tool=tool,
            target=TargetRef(service=service, target=target, resource=resource),
            params=params,
        )
        return await self.runner.run(call)

    def _beat(self, what: str) -> None:
        if activity.in_activity():
            activity.heartbeat(what)

    # --- certificates ----------------------------------------------------------------------

    async def certificates(self) -> list[Alert]:
        found: list[Alert] = []
        for target in self.certs_targets():
            self._beat(f"certs {target.name}")
            found += await self._certs_target(target.name, target.certbot is not None)
        return found

    async def _certs_target(self, target: str, has_certbot: bool) -> list[Alert]:
        out: list[Alert] = []

        def add(
            name: str,
            severity: str,
            resource: str,
            summary: str,
            evidence: dict[str, Any],
            identity: str = "",
        ) -> None:
            out.append(
                finding(
                    "certificates",
                    name,
                    severity,
                    "certs",
                    target,
                    "certificate",
                    resource,
                    summary,
                    evidence,
                    identity,
                )
            )

        inventory = await self._run("certs.inventory", "certs", target)
        if not inventory.ok:
            assert inventory.error is not None
            add(
                "CertificateProbeFailed",
                "critical",
                "inventory",
                f"certs target {target}: the inventory failed: {inventory.error.message}",
                {"error": inventory.error.message, "kind": inventory.error.kind.value},
            )
            return out
        for cert in inventory.data.get("certificates", []):
            name, status = str(cert["name"]), cert.get("status")
            where = f"{name} ({cert.get('address')})"
            facts = {
                k: cert.get(k)
                for k in (
                    "address",
                    "subject",
                    "issuer",
                    "serial",
                    "not_after",
                    "days_left",
                    "status",
                )
                if cert.get(k) is not None
            }
            if status == "error":
                add(
                    "CertificateProbeFailed",
                    "critical",
                    name,
                    f"certificate {where} cannot be read: {cert.get('error')}",
                    {
                        "error": cert.get("error"),
                        "kind": cert.get("kind"),
                        "address": cert.get("address"),
                    },
                )
                continue
            serial = str(cert.get("serial", ""))
            days = cert.get("days_left")
            if status == "expired":
                add(
                    "CertificateExpired",
                    "critical",
                    name,
                    f"certificate {where} has expired ({cert.get('not_after')})",
                    facts,
                    serial,
                )
            elif status == "critical":
                add(
                    "CertificateExpiringVerySoon",
                    "critical",
                    name,
                    f"certificate {where} expires in {days:g} days ({cert.get('not_after')})",
                    facts,
                    serial,
                )
            elif status == "warning":
                add(
                    "CertificateExpiringSoon",
                    "warning",
                    name,
                    f"certificate {where} expires in {days:g} days ({cert.get('not_after')})",
                    facts,
                    serial,
                )
            problems = [p for p in (cert.get("verify_error"),) if p] + list(cert.get("weak") or [])
            if status == "ok" and problems:
                add(
                    "CertificateInvalid",
                    "critical" if cert.get("verified") is False else "warning",
                    name,
                    f"certificate {where}: {'; '.join(problems)}",
                    {**facts, "problems": problems},
                    serial + "|" + "|".join(problems),
                )
        if has_certbot:
            acme = await self._run("certs.acme_status", "certs", target)
            if acme.ok:
                for lineage in acme.data.get("lineages", []):
                    if lineage.get("failing"):
                        add(
                            "CertificateRenewalFailed",
                            "critical",
                            str(lineage["cert_name"]),
                            f"certbot's last renewal of {lineage['cert_name']} failed "
                            f"({lineage.get('consecutive_failures')} in a row): {lineage.get('last_error')}",
                            {
                                "last_attempt": lineage.get("last_attempt"),
                                "last_error": lineage.get("last_error"),
                                "excerpt": "\n".join(lineage.get("excerpt") or []),
                                "days_left": lineage.get("days_left"),
                            },
                            str(lineage.get("last_attempt")),
                        )
            else:
                assert acme.error is not None
                add(
                    "CertificateProbeFailed",
                    "critical",
                    "certbot",
                    f"certs target {target}: certbot's state cannot be read: {acme.error.message}",
                    {"error": acme.error.message, "kind": acme.error.kind.value},
                )
        return out

    # --- backups ---------------------------------------------------------------------------

    async def backups(self) -> list[Alert]:
        found: list[Alert] = []
        mine = self.backup_targets()
        for target in (t for t in mine if isinstance(t, BackupsTarget)):
            for repo in target.repositories:
                self._beat(f"backups {target.name}/{repo.name}")
                found += await self._repository(
                    target.name, repo.name, repo.kind, repo.sweep_check, repo.check_read_data_subset
                )
        for pbs in (t for t in mine if isinstance(t, PbsTarget)):
            self._beat(f"pbs {pbs.name}")
            found += await self._pbs(pbs.name)
        for pve in (t for t in mine if isinstance(t, ProxmoxTarget)):
            self._beat(f"proxmox {pve.name}")
            found += await self._coverage(pve.name)
        return found

    async def _repository(
        self, target: str, name: str, kind: str, check: bool, subset: str | None
    ) -> list[Alert]:
        out: list[Alert] = []

        def add(
            alert: str, severity: str, summary: str, evidence: dict[str, Any], identity: str = ""
        ) -> None:
            out.append(
                finding(
                    "backups",
                    alert,
                    severity,
                    "backups",
                    target,
                    "repository",
                    name,
                    summary,
                    evidence,
                    identity,
                    labels={"kind": kind},
                )
            )

        snaps = await self._run("backups.snapshots", "backups", target, name)
        if not snaps.ok:
            assert snaps.error is not None
            add(
                "BackupRepositoryUnreadable",
                "critical",
                f"{kind} repository {name} cannot be read: {snaps.error.message}",
                {"error": snaps.error.message, "kind": snaps.error.kind.value},
                snaps.error.kind.value,
            )
            return out
        data = snaps.data
        if data.get("stale"):
            newest = data.get("newest") or {}
            age = data.get("newest_age_seconds")
            add(
                "BackupTooOld",
                "warning",
                f"{kind} repository {name}: newest snapshot "
                + (f"{human_duration(age)} old" if age is not None else "missing (no snapshots)")
                + f", expected within {human_duration(data.get('max_age_seconds'))}",
                {
                    "newest": newest.get("time"),
                    "newest_id": newest.get("short_id"),
                    "newest_age_seconds": age,
                    "snapshots": data.get("count"),
                    "max_age_seconds": data.get("max_age_seconds"),
                },
                str(newest.get("id", "none")),
            )
        locks = await self._run("backups.locks", "backups", target, name)
        if locks.ok and locks.data.get("stale_count"):
            stale = [lock for lock in locks.data.get("locks", []) if lock.get("stale")]
            add(
                "BackupStaleLock",
                "warning",
                f"{kind} repository {name}: {len(stale)} stale lock(s): "
                + "; ".join(f"{lock['id']} ({lock['why']})" for lock in stale),
                {"locks": stale},
                ",".join(sorted(str(lock["id"]) for lock in stale)),
            )
        if check:
            params = {"read_data_subset": subset} if subset else {}
            result = await self._run("backups.check", "backups", target, name, **params)
            if result.ok and result.data.get("ok") is False:
                add(
                    "BackupCheckFailed",
                    "critical",
                    f"{kind} repository {name}: check found errors: "
                    + "; ".join(result.data.get("errors", [])[:3]),
                    {
                        "errors": "\n".join(result.data.get("errors", [])),
                        "read_data_subset": subset or "none",
                    },
                )
        return out

    async def _pbs(self, target: str) -> list[Alert]:
        out: list[Alert] = []
        verify = await self._run("pbs.verify", "pbs", target)
        if verify.ok:
            groups: dict[tuple[str, str], list[Any]] = {}
            for snap in verify.data.get("failed_snapshots", []):
                groups.setdefault((snap["datastore"], snap["group"]), []).append(snap["time"])
            for (store, group), times in sorted(groups.items()):
                kind, _, ident = group.partition("/")
                out.append(
                    finding(
                        "backups",
                        "ProxmoxBackupSnapshotVerifyFailed",
                        "warning",
                        "pbs",
                        target,
                        "datastore",
                        store,
                        f"PBS {target}: {len(times)} snapshot(s) of {group} in {store} failed verification",
                        {"group": group, "backup_times": times},
                        group,
                        labels={"vm_id": ident, "backup_type": kind},
                    )
                )
        stores = await self._run("pbs.datastores", "pbs", target)
        if stores.ok:
            for row in stores.data.get("datastores", []):
                if row["gc"]["ok"] is False:
                    out.append(
                        finding(
                            "backups",
                            "PbsGarbageCollectionFailed",
                            "warning",
                            "pbs",
                            target,
                            "datastore",
                            row["store"],
                            f"PBS {target}: the last garbage collection of {row['store']} failed "
                            f"({(row['gc'].get('last_run') or {}).get('exitstatus')})",
                            {"gc": row["gc"], "used_percent": row.get("used_percent")},
                            str(row["gc"].get("upid")),
                        )
                    )
        return out

    async def _coverage(self, target: str) -> list[Alert]:
        result = await self._run("proxmox.backup_coverage", "proxmox", target)
        if not result.ok:
            return []
        out = []
        for guest in result.data.get("guests", []):
            if guest.get("covered") and guest.get("recent"):
                continue
            name = "PveGuestNotBackedUp" if not guest.get("covered") else "PveGuestBackupTooOld"
            age = guest.get("last_backup_age_seconds")
            out.append(
                finding(
                    "backups",
                    name,
                    "warning",
                    "proxmox",
                    target,
                    "id",
                    str(guest["id"]),
                    f"{guest['id']} ({guest.get('name')}): "
                    + (
                        "in no backup job"
                        if not guest.get("covered")
                        else f"newest backup {human_duration(age)} old"
                    ),
                    {
                        "jobs": guest.get("jobs"),
                        "last_backup_age_seconds": age,
                        "last_backup_on": guest.get("last_backup_on"),
                        "pbs": guest.get("pbs"),
                    },
                    str(guest.get("last_backup")),
                )
            )
        return out


class SweepActivities:
    """The sweeps as Temporal activities: an ``Evaluation`` whose findings are already alerts,
    for ``SweepWorkflow`` to route (``findings.route``) like any scheduled job's.

    Each worker sweeps its own site's targets: the main worker those with no site, and it names
    the sites that have targets of the sweep (``Evaluation.sites``), where the workflow runs the
    same activity on that site's worker."""

    def __init__(self, settings: Settings, runner: ToolRunner, site: str = "") -> None:
        self.settings = settings
        self.site = site
        self.sweeper = Sweeper(settings, runner, site)

    def _evaluation(self, alerts: list[Alert], kind: str, targets: list[Any]) -> Evaluation:
        elsewhere = sorted({t.site for t in targets if t.site and t.site != self.site})
        mine = [t for t in targets if t.site == self.site]
        where = f"site {self.site}" if self.site else "the main worker"
        return Evaluation(
            alerts=alerts,
            notes=[] if mine else [f"no {kind} targets for {where}"],
            sites={site: self.settings.site_queue(site) for site in elsewhere}
            if not self.site
            else {},
        )

    @activity.defn(name=contracts.SWEEP_CERTIFICATES.name)
    async def certificates(self, inp: SweepInput) -> Evaluation:
        found = await self.sweeper.certificates()
        return self._evaluation(found, "certs", list(self.settings.certs))

    @activity.defn(name=contracts.SWEEP_BACKUPS.name)
    async def backups(self, inp: SweepInput) -> Evaluation:
        found = await self.sweeper.backups()
        s = self.settings
        return self._evaluation(found, "backups, pbs or proxmox", [*s.backups, *s.pbs, *s.proxmox])
