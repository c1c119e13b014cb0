"""certbot on the host: its lineages (renewal configs), their certificates and its log.

certbot appends every run to ``letsencrypt.log`` (rotated at 1 MiB), each run starting with a
``certbot version:`` line. A run concerns a lineage when it processes that lineage's renewal
config or names it; its outcome for the lineage is read from certbot's own messages
(``Failed to renew certificate X with error: ...``, ``.../live/X/fullchain.pem (success)``,
``not yet due``), and the excerpt quotes the run's INFO-and-above lines and the CA's error detail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.redact import redact_text
from core.targets import CertbotSettings

_RUN_START = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+:DEBUG:certbot\._internal\.main:certbot version: (.+)$"
)
_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+:(\w+):([\w.]+):(.*)$")
_PROCESSING = re.compile(r"Processing .*/renewal/([^/]+)\.conf\s*$")
_FAILED = re.compile(r"Failed to renew certificate (\S+) with error: (.*)$")
_LIVE = re.compile(r"/live/([^/]+)/fullchain\.pem \((success|failure)\)")
_DETAIL = re.compile(r'"detail":\s*"([^"]+)"')
EXCERPT_LINES = 25


@dataclass
class Lineage:
    name: str
    cert: str
    fullchain: str
    renew_before_expiry: str
    server: str
    authenticator: str
    installer: str
    hooks: list[str]


def parse_renewal_conf(name: str, text: str) -> Lineage:
    """The top-level keys and ``[renewalparams]`` of a renewal config (configobj syntax)."""
    top: dict[str, str] = {}
    params: dict[str, str] = {}
    section = ""
    default_before = "30 days"
    for raw in text.splitlines():
        line = raw.strip()
        commented = re.match(r"#\s*renew_before_expiry\s*=\s*(.+)$", line)
        if commented:
            default_before = commented.group(1).strip()
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]").strip()
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        target = top if not section else params if section == "renewalparams" else None
        if target is not None:
            target[key.strip()] = value.strip()
    return Lineage(
        name=name,
        cert=top.get("cert", ""),
        fullchain=top.get("fullchain", ""),
        renew_before_expiry=top.get("renew_before_expiry", default_before),
        server=params.get("server", ""),
        authenticator=params.get("authenticator", ""),
        installer=params.get("installer", ""),
        hooks=[
            f"{k}: {params[k]}"
            for k in ("pre_hook", "post_hook", "renew_hook", "deploy_hook")
            if params.get(k)
        ],
    )


def renew_before_days(text: str) -> float | None:
    """certbot's ``renew_before_expiry`` (``30 days``, ``2 weeks``, ``12 hours``) in days."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day|week|month)s?\s*", text)
    if not match:
        return None
    unit = {
        "second": 1 / 86400,
        "minute": 1 / 1440,
        "hour": 1 / 24,
        "day": 1,
        "week": 7,
        "month": 30,
    }
    return float(match.group(1)) * unit[match.group(2)]


@dataclass
class Run:
    started: str
    version: str
    arguments: str = ""
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (level, logger, message)
    details: list[str] = field(default_factory=list)


def parse_log(text: str) -> list[Run]:
    """certbot runs in log order (the first may be cut at the start of the text)."""
    runs: list[Run] = []
    for raw in text.splitlines():
        start = _RUN_START.match(raw)
        if start:
            runs.append(Run(started=start.group(1), version=start.group(2).strip()))
            continue
        if not runs:
            continue
        run = runs[-1]
        line = _LINE.match(raw)
        if line:
            level, logger, message = line.group(2), line.group(3), line.group(4)
            if "Arguments:" in message and logger.endswith("main"):
                run.arguments = message.split("Arguments:", 1)[1].strip()
            run.lines.append((level, logger, message))
            continue
        detail = _DETAIL.search(raw)
        if detail and detail.group(1) not in run.details:
            run.details.append(detail.group(1))
    return runs


def outcome(run: Run, lineage: str) -> tuple[str, str] | None:
    """(outcome, error) of ``run`` for ``lineage``: success, failure, not_due, attempted; None
    when the run did not concern it."""
    concerned = f"'{lineage}'" in run.arguments or f"/live/{lineage}/" in run.arguments
    current = ""
    result: tuple[str, str] | None = None
    for _, _, message in run.lines:
        processing = _PROCESSING.search(message)
        if processing:
            current = processing.group(1)
            concerned = concerned or current == lineage
            continue
        failed = _FAILED.search(message)
        if failed and failed.group(1) == lineage:
            return "failure", failed.group(2).strip()
        live = _LIVE.search(message)
        if live and live.group(1) == lineage:
            result = (live.group(2), "" if live.group(2) == "success" else "renewal failed")
        elif "not yet due for renewal" in message and (current == lineage or not current):
            result = result or ("not_due", "")
        elif "Writing certificate to" in message and f"/live/{lineage}/" in message:
            result = result or ("success", "")
    if result is not None:
        return result
    return ("attempted", "") if concerned else None


def excerpt(run: Run) -> list[str]:
    """What a human needs from a run: its INFO-and-above lines and the CA's error detail."""
    lines = [
        f"{run.started} {level} {message.strip()}"
        for level, _, message in run.lines
        if level in ("INFO", "WARNING", "ERROR", "CRITICAL")
    ]
    lines += [f"CA: {d}" for d in run.details]
    return [redact_text(line)[:400] for line in lines[-EXCERPT_LINES:]]


def history(runs: list[Run], lineage: str, offset: str = "+0000") -> dict[str, Any]:
    """The lineage's last attempt, last success, consecutive failures and the last run's excerpt
    (certbot logs the host's local time; ``offset`` is the host's UTC offset, ``date +%z``)."""
    mine = [(run, found) for run in runs if (found := outcome(run, lineage)) is not None]
    if not mine:
        return {
            "last_attempt": None,
            "last_outcome": None,
            "last_error": None,
            "last_success": None,
            "consecutive_failures": 0,
            "failing": False,
            "excerpt": [],
        }
    failures = 0
    for _, (result, _) in reversed(mine):
        if result != "failure":
            break
        failures += 1
    last_run, (last_result, last_error) = mine[-1]
    success = next((run.started for run, (r, _) in reversed(mine) if r == "success"), None)
    return {
        "last_attempt": _iso(last_run.started, offset),
        "last_outcome": last_result,
        "last_error": redact_text(last_error) or None,
        "last_success": _iso(success, offset) if success else None,
        "consecutive_failures": failures,
        "failing": last_result == "failure",
        "excerpt": excerpt(last_run),
    }


def _iso(stamp: str, offset: str) -> str:
    when = datetime.strptime(f"{stamp}{offset}", "%Y-%m-%d %H:%M:%S%z")
    return when.astimezone(UTC).isoformat()


def renew_argv(settings: CertbotSettings, cert_name: str, force: bool) -> list[str]:
    """``certbot renew`` for one lineage, non-interactive and without certbot's random delay."""
    argv = [*settings.command, "renew", "--cert-name", cert_name, "--non-interactive"]
    argv.append("--no-random-sleep-on-renew")
    if force:
        argv.append("--force-renewal")
    argv += ["--config-dir", settings.config_dir, "--logs-dir", settings.logs_dir]
    if settings.work_dir:
        argv += ["--work-dir", settings.work_dir]
    return argv + list(settings.extra_args)
