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
from core.models import UNREACHABLE_ALERT
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
    # raised by scheduled jobs' findings, and by a child's incident for its unreachable parent
    shipped = set(WATCHER_ALERTS) | SCHEDULE_ALERTS | {UNREACHABLE_ALERT}
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


def test_compose_gives_the_app_only_the_store_runtime_role() -> None:
    """No homelab-agents container sees Temporal's database password or .env whole; only the
    one-shot migrate service sees the store owner's; every app service waits for it."""
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.temporal.yml").read_text())
    services = compose["services"]
    app = {name: s for name, s in services.items() if s.get("build") == "."}
    assert set(app) == {"migrate", "worker", "intake", "bot"}
    for name, service in app.items():
        text = json.dumps(service)
        assert "TEMPORAL_DB_PASSWORD" not in text and "postgresql://temporal" not in text
        assert ".env" not in [e if isinstance(e, str) else e["path"] for e in service["env_file"]]
        store_url = service["environment"]["HOMELAB_STORE__URL"]
        assert store_url.startswith("postgresql://homelab_app:${HOMELAB_STORE_APP_PASSWORD")
        owner = "HOMELAB_STORE__OWNER_URL" in service["environment"]
        assert owner == (name == "migrate"), name
        assert ("HOMELAB_STORE_OWNER_PASSWORD" in text) == (name == "migrate"), name
        if name != "migrate":
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }
    database = services["postgresql"]
    mounted = [v for v in database["volumes"] if "initdb.sql" in v]
    assert mounted == ["./deploy/compose/initdb.sql:/docker-entrypoint-initdb.d/homelab.sql:ro"]
    initdb = (DEPLOY / "compose" / "initdb.sql").read_text()
    for variable in ("HOMELAB_STORE_OWNER_PASSWORD", "HOMELAB_STORE_APP_PASSWORD"):
        assert variable in database["environment"] and "\\getenv" in initdb
