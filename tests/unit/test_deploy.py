"""The shipped deploy files stay true to the code: rules pass promtool, the dashboard and the
agents' rules only query metrics (and labels) the code exports, runbooks answer shipped alerts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import core.metrics  # noqa: F401 - registers the metrics
from activities.runbooks import load_runbooks
from activities.toolsets import default_catalog
from core.schedules import SCHEDULE_ALERTS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WATCHER_ALERTS = {"ContainerKilled", "ContainerOOMKilled", "ContainerUnhealthy"}


def exported() -> dict[str, set[str]]:
    """metric name (incl. _bucket/_sum/_count/_total forms) → its label names."""
    out: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.collect():
            if not family.name.startswith("homelab_"):
                continue
            labels = set()
            for sample in family.samples:
                labels |= set(sample.labels) - {"le"}
            for suffix in ("", "_total", "_bucket", "_sum", "_count", "_created"):
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
            names = getattr(collector, "_labelnames", ())
            for suffix in ("", "_total", "_bucket", "_sum", "_count"):
                out[family.name + suffix] |= set(names)
    return out


def queried(expr: str) -> list[tuple[str, set[str]]]:
    metrics = re.findall(r"\bhomelab_[a-z_]+", expr)
    by = set(re.findall(r"\bby \(([^)]*)\)", expr))
    labels = {label.strip() for group in by for label in group.split(",") if label.strip()}
    return [(m, labels) for m in metrics]


def test_rule_files_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: deploy/scripts/install-system-deps.sh installs it"
    files = sorted((DEPLOY / "prometheus").glob("*.rules.yml"))
    assert len(files) >= 2
    for path in files:
        done = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, f"{path.name}: {done.stdout}{done.stderr}"


def test_dashboard_and_agent_rules_query_exported_metrics() -> None:
    metrics = exported()
    dashboard = json.loads((DEPLOY / "grafana" / "homelab-agents.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]  # rows: none
    rules = yaml.safe_load((DEPLOY / "prometheus" / "homelab-agents.rules.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs
    for expr in exprs:
        for metric, labels in queried(expr):
            assert metric in metrics, f"{metric} is not exported (in {expr!r})"
            unknown = labels - metrics[metric] - {"le", "instance", "job"}
            assert not unknown, f"{expr!r} groups by {unknown}, which {metric} does not have"


def test_every_runbook_answers_a_shipped_alert() -> None:
    shipped = set(WATCHER_ALERTS) | SCHEDULE_ALERTS  # raised by scheduled jobs' findings
    for path in (DEPLOY / "prometheus").glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            shipped |= {r["alert"] for r in group["rules"] if "alert" in r}
    for runbook in load_runbooks(default_catalog()):
        assert set(runbook.alerts) & shipped, f"{runbook.name} answers none of the shipped alerts"


def test_rule_unit_tests_pass_promtool() -> None:
    """deploy/prometheus/tests: each alert fires on the series it should, and only then."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: deploy/scripts/install-system-deps.sh installs it"
    files = sorted((DEPLOY / "prometheus" / "tests").glob("*.test.yml"))
    assert len(files) >= 2
    done = subprocess.run(
        [promtool, "test", "rules", *map(str, files)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"
    tested = set()
    for path in files:
        for group in yaml.safe_load(path.read_text())["tests"]:
            tested |= {case["alertname"] for case in group.get("alert_rule_test", [])}
    for name in ("monitoring", "node"):
        rules = yaml.safe_load((DEPLOY / "prometheus" / f"{name}.rules.yml").read_text())
        alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
        assert alerts <= tested, f"{name}.rules.yml: no promtool test for {alerts - tested}"
