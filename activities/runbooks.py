"""Runbook loading, validation against the catalog, and alert matching.

Runbooks are YAML data (``runbooks/`` plus any ``runbook_dirs`` the user adds; a user runbook with
the same name replaces the built-in one). A runbook that names an unknown tool, uses a write tool as
a diagnostic or refers to evidence it never gathers is rejected at load time with the file and key.
A diagnostic may read another service (evidence from Prometheus for a container's incident): it runs
on that service's target (``on:``, or its only one), resolved at triage.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from activities.catalog import Catalog
from activities.planner import ALERT_KEY, PLACEHOLDER, TARGET_KEY
from core.models import Alert, Runbook

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "runbooks"


class RunbookError(Exception):
    """A runbook file is invalid; the message names the file and the key."""


def _alert_only(params: dict[str, object], where: str) -> list[str]:
    """Diagnostics and checks run before any evidence exists: only the alert can feed them."""
    problems = []
    for name, value in params.items():
        if isinstance(value, dict) and "from" in value:
            source = str(value["from"]).split(".", 1)[0]
            if source not in (ALERT_KEY, TARGET_KEY):
                problems.append(
                    f"{where}.params.{name}.from: only alert.* or target.* can be used here, "
                    f"not {source!r}"
                )
        if isinstance(value, dict) and "template" in value:
            for ref in PLACEHOLDER.findall(str(value["template"])):
                if ref.split(".", 1)[0] not in (ALERT_KEY, TARGET_KEY):
                    problems.append(
                        f"{where}.params.{name}.template: only {{alert.*}} or {{target.*}} can "
                        f"be used here, not {{{ref}}}"
                    )
    return problems


def _problems(runbook: Runbook, catalog: Catalog) -> list[str]:
    problems: list[str] = []
    keys = {ALERT_KEY}
    for i, step in enumerate(runbook.diagnostics):
        if step.key == ALERT_KEY:
            problems.append(f"diagnostics.{i}.key: {ALERT_KEY!r} is reserved for the alert itself")
        keys.add(step.key)
        problems.extend(_alert_only(step.params, f"diagnostics.{i}"))
        if step.tool not in catalog:
            problems.append(f"diagnostics.{i}.tool: unknown tool {step.tool!r}")
        elif catalog.get(step.tool).is_write:
            problems.append(f"diagnostics.{i}.tool: {step.tool} is a write tool")
        elif step.on and catalog.get(step.tool).service == runbook.service:
            problems.append(f"diagnostics.{i}.on: only a step of another service names a target")
    for i, rem in enumerate(runbook.remediations):
        if rem.tool not in catalog:
            problems.append(f"remediations.{i}.tool: unknown tool {rem.tool!r}")
        elif not catalog.get(rem.tool).is_write:
            problems.append(f"remediations.{i}.tool: {rem.tool} is a read tool, not a remediation")
        for j, cond in enumerate(rem.when):
            if cond.evidence not in keys:
                problems.append(
                    f"remediations.{i}.when.{j}.evidence: {cond.evidence!r} is not a diagnostics key"
                )
        if isinstance(rem.resource, dict) and "from" in rem.resource:
            source = str(rem.resource["from"]).split(".", 1)[0]
            if source not in keys:
                problems.append(
                    f"remediations.{i}.resource.from: {source!r} is not a diagnostics key"
                )
        for name, value in rem.params.items():
            if isinstance(value, dict) and "from" in value:
                source = str(value["from"]).split(".", 1)[0]
                if source not in keys:
                    problems.append(
                        f"remediations.{i}.params.{name}.from: {source!r} is not a diagnostics key"
                    )
    for i, check in enumerate(runbook.verification.checks):
        problems.extend(_alert_only(check.params, f"verification.checks.{i}"))
        if check.tool not in catalog:
            problems.append(f"verification.checks.{i}.tool: unknown tool {check.tool!r}")
        elif catalog.get(check.tool).is_write:
            problems.append(f"verification.checks.{i}.tool: {check.tool} is a write tool")
    return problems


def load_file(path: Path, catalog: Catalog) -> Runbook:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RunbookError(f"{path}: not valid YAML: {exc}") from exc
    try:
        runbook = Runbook.model_validate(raw)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RunbookError(f"{path}: {detail}") from exc
    problems = _problems(runbook, catalog)
    if problems:
        raise RunbookError(f"{path}: " + "; ".join(problems))
    return runbook


def load_runbooks(catalog: Catalog, extra_dirs: Iterable[Path] = ()) -> list[Runbook]:
    """Built-in runbooks, then the user's (same name replaces), validated against the catalog."""
    by_name: dict[str, Runbook] = {}
    for directory in [BUILTIN_DIR, *extra_dirs]:
        if not directory.is_dir():
            if directory is not BUILTIN_DIR:
                raise RunbookError(f"runbook directory {directory} does not exist")
            continue
        for path in sorted(directory.rglob("*.y*ml")):
            runbook = load_file(path, catalog)
            by_name[runbook.name] = runbook
    return list(by_name.values())


def match(runbooks: Iterable[Runbook], alert: Alert) -> Runbook | None:
    """The runbook for an alert: its name listed, its labels matched; most specific wins."""
    candidates = [
        rb
        for rb in runbooks
        if alert.name in rb.alerts
        and all(alert.labels.get(k) == v for k, v in rb.match_labels.items())
    ]
    if not candidates:
        return None
    return sorted(candidates, key=lambda rb: (-len(rb.match_labels), rb.name))[0]
