"""The PostgreSQL runbooks and the rules they answer: promtool checks and unit-tests the shipped
rule file, every rule has a runbook, alert labels map to target/database/table, and the runbook
planner turns evidence into the right (or no) action."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from activities.catalog import TargetClients
from activities.incident import IncidentActivities
from activities.planner import runbook_plan
from activities.runbooks import RunbookError, load_runbooks, match
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import Alert, AlertStatus, Evidence, PlanRequest, Runbook, TargetRef, Triage

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "postgres.rules.yml"
CATALOG = default_catalog()
RUNBOOKS = load_runbooks(CATALOG)


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run deploy/scripts/install-system-deps.sh (prometheus)"
    return path


def test_shipped_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout


SERIES = 'instance="db:9187",job="postgres"'
CASES: list[dict[str, Any]] = [
    {
        "alert": "PostgresqlLockBlocking",
        "series": [
            (
                f'pg_stat_activity_count{{{SERIES},datname="shop",state="active",usename="app",'
                'application_name="web",backend_type="client backend",wait_event_type="Lock",'
                'wait_event="transactionid"}',
                "0 1 1 1 1",
            ),
            (
                f'pg_stat_activity_count{{{SERIES},datname="other",state="active",usename="app",'
                'application_name="web",backend_type="client backend",wait_event_type="IO",'
                'wait_event="DataFileRead"}',
                "3 3 3 3 3",
            ),
        ],
        "at": "4m",
        "labels": [{"datname": "shop"}],
    },
    {
        "alert": "PostgresqlTooManyDeadTuples",
        "series": [
            (
                f'pg_stat_user_tables_n_dead_tup{{{SERIES},datname="shop",schemaname="public",relname="items"}}',
                "40000x5",
            ),
            (
                f'pg_stat_user_tables_n_live_tup{{{SERIES},datname="shop",schemaname="public",relname="items"}}',
                "20000x5",
            ),
            (f"pg_replication_is_replica{{{SERIES}}}", "0x5"),
        ],
        "at": "4m",
        "labels": [{"datname": "shop", "schemaname": "public", "relname": "items"}],
    },
    {
        "alert": "PostgresqlInvalidIndex",
        "series": [
            (
                f'pg_index_properties{{{SERIES},datname="shop",schemaname="public",relname="orders",'
                'indexrelname="orders_customer_idx",is_unique="0",is_primary="0",is_valid="0",'
                'is_ready="1"}',
                "1x15",
            ),
            (
                f'pg_index_properties{{{SERIES},datname="shop",schemaname="public",relname="orders",'
                'indexrelname="orders_pkey",is_unique="1",is_primary="1",is_valid="1",is_ready="1"}',
                "1x15",
            ),
        ],
        "at": "12m",
        "labels": [
            {
                "datname": "shop",
                "schemaname": "public",
                "relname": "orders",
                "indexrelname": "orders_customer_idx",
            }
        ],
    },
    {
        "alert": "PostgresqlUnusedReplicationSlot",
        "series": [
            (
                f'pg_replication_slot_slot_is_active{{{SERIES},slot_name="stale",slot_type="physical"}}',
                "0x40",
            ),
            (
                f'pg_replication_slot_slot_is_active{{{SERIES},slot_name="replica1",slot_type="physical"}}',
                "1x40",
            ),
        ],
        "at": "35m",
        "labels": [{"slot_name": "stale", "slot_type": "physical"}],
    },
    {
        "alert": "PostgresqlTooManyConnections",
        "series": [
            (f'pg_stat_activity_count{{{SERIES},datname="shop",state="idle"}}', "20x5"),
            (f'pg_stat_activity_count{{{SERIES},datname="shop",state="active"}}', "5x5"),
            (f"pg_settings_max_connections{{{SERIES}}}", "30x5"),
        ],
        "at": "4m",
        "labels": [{}],
    },
    {
        "alert": "PostgresqlMaxConnectionsReached",
        "series": [
            (f'pg_stat_activity_count{{{SERIES},datname="shop",state="idle"}}', "27x5"),
            (f"pg_settings_max_connections{{{SERIES}}}", "30x5"),
            (f"pg_settings_superuser_reserved_connections{{{SERIES}}}", "3x5"),
        ],
        "at": "3m",
        "labels": [{}],
    },
    {
        "alert": "PostgresqlLongRunningTransaction",
        "series": [
            (
                f'pg_stat_activity_max_tx_duration{{{SERIES},datname="shop",state="idle in transaction"}}',
                "2000x5",
            ),
            (f'pg_stat_activity_max_tx_duration{{{SERIES},datname="shop",state="active"}}', "3x5"),
        ],
        "at": "4m",
        "labels": [{"datname": "shop"}],
    },
    {
        "alert": "PostgresqlReplicationLag",
        "series": [
            ('pg_replication_lag_seconds{instance="replica:9187",job="postgres"}', "60x3"),
            ('pg_replication_is_replica{instance="replica:9187",job="postgres"}', "1x3"),
        ],
        "at": "2m",
        "labels": [{"instance": "replica:9187"}],
    },
]


def test_rules_fire_with_the_labels_the_runbooks_need(tmp_path: Path) -> None:
    """promtool's own rule unit tests: the expressions fire, and only with the expected labels."""
    rules = yaml.safe_load(RULES.read_text())
    severity = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # templated text is not what is tested here
            severity[rule["alert"]] = rule["labels"]["severity"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    tests = []
    for case in CASES:
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case["series"]],
                "alert_rule_test": [
                    {
                        "eval_time": case["at"],
                        "alertname": case["alert"],
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "instance": "db:9187",
                                    "job": "postgres",
                                    "severity": severity[case["alert"]],
                                    **labels,
                                }
                            }
                            for labels in case["labels"]
                        ],
                    }
                ],
            }
        )
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [promtool(), "test", "rules", "tests.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def alert(name: str, **labels: str) -> Alert:
    return Alert(
        name=name,
        status=AlertStatus.FIRING,
        fingerprint="fp1",
        labels={"alertname": name, **labels},
        starts_at=datetime.now(UTC),
    )


def test_every_shipped_rule_has_a_postgres_runbook() -> None:
    names = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(names) == 11
    for name in names:
        runbook = match(RUNBOOKS, alert(name))
        assert runbook is not None and runbook.service == "postgres", name
    assert {match(RUNBOOKS, alert(n)).name for n in names} == {  # type: ignore[union-attr]
        "postgres-down",
        "postgres-connections-saturated",
        "postgres-long-running-transaction",
        "postgres-lock-blocking",
        "postgres-deadlocks",
        "postgres-dead-tuples",
        "postgres-invalid-index",
        "postgres-replication-lag",
        "postgres-unused-replication-slot",
    }


def settings(**extra: Any) -> Settings:
    return Settings(
        docker=[],
        temporal={"address": "127.0.0.1:7233"},
        postgres=[
            {"name": "main", "dsn": "host=db1 user=m", "instances": ["db1:9187", "db1.lan:5432"]},
            {"name": "replica", "dsn": "host=db2 user=m", "instances": ["db2:9187"]},
        ],
        **extra,
    )


async def triage(s: Settings, a: Alert) -> Triage:
    activities = IncidentActivities(s, CATALOG, ToolRunner(CATALOG, TargetClients(s)), RUNBOOKS)
    result: Triage = await ActivityEnvironment().run(activities.triage, a)
    return result


async def test_alert_labels_pick_target_database_and_table() -> None:
    t = await triage(
        settings(),
        alert(
            "PostgresqlTooManyDeadTuples",
            instance="db1:9187",
            datname="shop",
            schemaname="sales",
            relname="items",
        ),
    )
    assert t.target == TargetRef(service="postgres", target="main", resource="shop")
    assert t.runbook is not None
    bloat = next(d for d in t.runbook.diagnostics if d.key == "bloat")
    assert bloat.params == {"table": "items", "schema": "sales", "limit": 5}
    assert t.runbook.verification.checks[0].params == {
        "table": "items",
        "schema": "sales",
        "limit": 1,
    }
    # the remediation keeps its reference: the planner resolves it against the same alert
    assert t.runbook.remediations[0].params["table"] == {"from": "alert.labels.relname"}

    # postgres_exporter's `server` label (host:port of the database) also names the target
    by_server = await triage(
        settings(),
        alert("PostgresqlLockBlocking", instance="exp:9187", server="db1.lan:5432", datname="shop"),
    )
    assert by_server.target == TargetRef(service="postgres", target="main", resource="shop")


async def test_unmappable_alerts_say_why() -> None:
    nowhere = await triage(
        settings(), alert("PostgresqlLockBlocking", instance="db9:9187", datname="x")
    )
    assert nowhere.target is None
    assert any("no such target" in n and "db9:9187" in n for n in nowhere.notes)
    named = await triage(
        settings(), alert("PostgresqlDown", homelab_target="nope", instance="db1:9187")
    )
    assert named.target is None and any("no postgres target named 'nope'" in n for n in named.notes)
    no_db = await triage(settings(), alert("PostgresqlLockBlocking", instance="db1:9187"))
    assert no_db.target is None and any("['datname']" in n for n in no_db.notes)
    no_table = await triage(
        settings(), alert("PostgresqlTooManyDeadTuples", instance="db1:9187", datname="shop")
    )
    assert no_table.target is None
    assert any("diagnostic 'bloat' needs table from the alert" in n for n in no_table.notes)
    critical = await triage(
        settings(approval={"critical": ["postgres:main/payments"]}),
        alert("PostgresqlLockBlocking", instance="db1:9187", datname="payments"),
    )
    assert critical.critical and any("critical pattern" in n for n in critical.notes)


def plan_for(runbook_name: str, a: Alert, target: TargetRef, **evidence: dict[str, Any]) -> Any:
    runbook = next(r for r in RUNBOOKS if r.name == runbook_name)
    t = Triage(
        incident_type=runbook.incident_type,
        service="postgres",
        target=target,
        severity="warning",
        critical=False,
        runbook=runbook,
        approval_timeout="5m",
        approvers=[],
    )
    ev = [
        Evidence(key=k, tool="t", target=str(target), ok=True, data=v) for k, v in evidence.items()
    ]
    return runbook_plan(PlanRequest(incident_id="i", alert=a, triage=t, evidence=ev), CATALOG)


LOCKED = TargetRef(service="postgres", target="main", resource="shop")


def blocker(**over: Any) -> dict[str, Any]:
    return {
        "pid": 4242,
        "state": "idle in transaction",
        "protected": None,
        "xact_start": "2026-11-27T05:00:00.123456+00:00",
        **over,
    }


def test_lock_blocking_plan_terminates_an_idle_blocker_cancels_an_active_one() -> None:
    a = alert("PostgresqlLockBlocking", datname="shop")
    plan = plan_for(
        "postgres-lock-blocking",
        a,
        LOCKED,
        locks={"blocked_count": 2, "root_blocker": blocker()},
        activity={},
    )
    assert [(x.tool, x.params) for x in plan.actions] == [
        ("postgres.terminate_backend", {"pid": 4242, "xact_start": blocker()["xact_start"]})
    ]
    active = plan_for(
        "postgres-lock-blocking",
        a,
        LOCKED,
        locks={"blocked_count": 1, "root_blocker": blocker(state="active")},
        activity={},
    )
    assert [x.tool for x in active.actions] == ["postgres.cancel_query"]
    superuser = plan_for(
        "postgres-lock-blocking",
        a,
        LOCKED,
        locks={"blocked_count": 1, "root_blocker": blocker(protected="superuser session")},
        activity={},
    )
    assert superuser.actions == [] and superuser.escalate is True
    gone = plan_for(
        "postgres-lock-blocking",
        a,
        LOCKED,
        locks={"blocked_count": 0, "root_blocker": None},
        activity={},
    )
    assert gone.actions == [] and gone.escalate is True


def test_long_transaction_plan_spares_backups_and_cancels_before_terminating() -> None:
    a = alert("PostgresqlLongRunningTransaction", datname="shop")
    oldest = {**blocker(state="active"), "xact_seconds": 4000, "application": "report"}
    plan = plan_for(
        "postgres-long-running-transaction",
        a,
        LOCKED,
        activity={"oldest_transaction": oldest},
        locks={},
    )
    assert [x.tool for x in plan.actions] == ["postgres.cancel_query", "postgres.terminate_backend"]
    assert all(x.params["xact_start"] == oldest["xact_start"] for x in plan.actions)
    dump = plan_for(
        "postgres-long-running-transaction",
        a,
        LOCKED,
        activity={"oldest_transaction": {**oldest, "application": "pg_dump"}},
        locks={},
    )
    assert dump.actions == [] and dump.escalate


def test_dead_tuples_plan_vacuums_the_alerted_table() -> None:
    a = alert("PostgresqlTooManyDeadTuples", datname="shop", relname="items")
    plan = plan_for(
        "postgres-dead-tuples",
        a,
        LOCKED,
        bloat={"table": {"n_dead_tup": 40000}},
        vacuum={},
        activity={},
    )
    assert [(x.tool, x.params) for x in plan.actions] == [
        ("postgres.vacuum", {"table": "items", "schema": None, "analyze": True})
    ]


def test_diagnosis_only_runbooks_escalate() -> None:
    for name, a in (
        ("postgres-deadlocks", alert("PostgresqlDeadLocks", datname="shop")),
        ("postgres-down", alert("PostgresqlDown")),
    ):
        plan = plan_for(
            name,
            a,
            TargetRef(service="postgres", target="main"),
            counters={},
            locks={},
            activity={},
            health={},
            connections={},
        )
        assert plan.escalate and plan.actions == [] and "diagnosis only" in plan.notes[-1]


def test_diagnostics_can_only_take_parameters_from_the_alert(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nservice: postgres\nalerts: [X]\nincident_type: x\n"
        "diagnostics:\n  - {key: a, tool: postgres.health}\n"
        "  - {key: b, tool: postgres.bloat, params: {table: {from: a.version}}}\n"
    )
    with pytest.raises(RunbookError, match=r"diagnostics.1.params.table.from: only alert"):
        load_runbooks(CATALOG, [tmp_path])
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nservice: postgres\nalerts: [X]\nincident_type: x\n"
        "diagnostics:\n  - {key: alert, tool: postgres.health}\n"
    )
    with pytest.raises(RunbookError, match="reserved for the alert"):
        load_runbooks(CATALOG, [tmp_path])


def test_runbook_model_defaults_keep_old_histories_valid() -> None:
    old = next(r for r in RUNBOOKS if r.name == "postgres-lock-blocking").model_dump(by_alias=True)
    old.pop("escalate_if_no_action")
    assert Runbook.model_validate(old).escalate_if_no_action is False


def test_postgres_target_dsn_from_a_file_and_required(tmp_path: Path) -> None:
    secret = tmp_path / "dsn"
    secret.write_text("host=db.lan user=homelab_monitor password=hunter2\n")
    s = Settings(docker=[], postgres=[{"name": "main", "dsn_file": str(secret)}])
    assert s.postgres[0].read_dsn.get_secret_value().endswith("password=hunter2")
    assert "hunter2" not in repr(s.postgres[0])
    with pytest.raises(ValueError, match="dsn or dsn_file is required"):
        Settings(docker=[], postgres=[{"name": "main"}])
