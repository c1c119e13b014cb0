"""The Redis, proxy and broker runbooks and the rules they answer: promtool unit-tests the shipped
rules (they fire, with the labels that map to a target and resource), alerts match the right
runbook, and the runbook planner turns evidence into the right — or no — action."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.incident import resolve_target
from activities.planner import runbook_plan
from activities.runbooks import load_runbooks, match
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import Alert, AlertStatus, Evidence, Plan, PlanRequest, TargetRef, Triage

ROOT = Path(__file__).resolve().parents[2]
CATALOG = default_catalog()
RUNBOOKS = load_runbooks(CATALOG)
RULE_FILES = ["redis.rules.yml", "proxies.rules.yml", "brokers.rules.yml"]

RULE_CASES: list[dict[str, Any]] = [
    {
        "file": "redis.rules.yml",
        "alert": "RedisOutOfConfiguredMaxmemory",
        "series": [
            ('redis_memory_used_bytes{instance="r:9121",job="redis"}', "95x5"),
            ('redis_memory_max_bytes{instance="r:9121",job="redis"}', "100x5"),
        ],
        "at": "4m",
        "labels": {"instance": "r:9121", "job": "redis"},
    },
    {
        "file": "redis.rules.yml",
        "alert": "RedisTooManyConnections",
        "series": [
            ('redis_connected_clients{instance="r:9121",job="redis"}', "60x5"),
            ('redis_config_maxclients{instance="r:9121",job="redis"}', "64x5"),
        ],
        "at": "4m",
        "labels": {"instance": "r:9121", "job": "redis"},
    },
    {
        "file": "proxies.rules.yml",
        "alert": "BlackboxProbeHttpFailure",
        "series": [
            (
                'probe_http_status_code{instance="http://site",job="probe",proxy="nginx",homelab_target="edge"}',
                "502x3",
            )
        ],
        "at": "1m",
        "labels": {
            "instance": "http://site",
            "job": "probe",
            "proxy": "nginx",
            "homelab_target": "edge",
        },
    },
    {
        "file": "proxies.rules.yml",
        "alert": "ProxyConfigReloadFailed",
        "series": [
            (
                'proxy_config_last_reload_successful{instance="n:9100",job="node",proxy="nginx",homelab_target="edge"}',
                "0x3",
            )
        ],
        "at": "1m",
        "labels": {"instance": "n:9100", "job": "node", "proxy": "nginx", "homelab_target": "edge"},
    },
    {
        "file": "proxies.rules.yml",
        "alert": "HaproxyHighHttp5xxErrorRateServer",
        "series": [
            (
                'haproxy_server_http_responses_total{instance="lb:8405",job="haproxy",proxy="be_app",server="web2",code="5xx"}',
                "0+60x5",
            ),
            (
                'haproxy_server_http_responses_total{instance="lb:8405",job="haproxy",proxy="be_app",server="web2",code="2xx"}',
                "0+60x5",
            ),
            (
                'haproxy_server_http_responses_total{instance="lb:8405",job="haproxy",proxy="be_app",server="web1",code="2xx"}',
                "0+60x5",
            ),
        ],
        "at": "4m",
        "labels": {"instance": "lb:8405", "proxy": "be_app", "server": "web2"},
    },
    {
        "file": "brokers.rules.yml",
        "alert": "RabbitmqNoConsumer",
        "series": [
            (
                'rabbitmq_queue_consumers{instance="mq:15692",job="rabbitmq",vhost="/",queue="jobs"}',
                "0x5",
            ),
            (
                'rabbitmq_queue_messages{instance="mq:15692",job="rabbitmq",vhost="/",queue="jobs"}',
                "25x5",
            ),
            (
                'rabbitmq_queue_consumers{instance="mq:15692",job="rabbitmq",vhost="/",queue="idle"}',
                "0x5",
            ),
            (
                'rabbitmq_queue_messages{instance="mq:15692",job="rabbitmq",vhost="/",queue="idle"}',
                "0x5",
            ),
        ],
        "at": "3m",
        "labels": {"instance": "mq:15692", "job": "rabbitmq", "vhost": "/", "queue": "jobs"},
    },
    {
        "file": "brokers.rules.yml",
        "alert": "NatsSlowConsumers",
        "series": [('gnatsd_varz_slow_consumers{instance="nats:7777",job="nats"}', "0 0 1 1 1")],
        "at": "3m",
        "labels": {"instance": "nats:7777", "job": "nats"},
    },
]


def test_rules_fire_with_the_labels_the_runbooks_need(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run deploy/scripts/install-system-deps.sh (prometheus)"
    for name in RULE_FILES:
        rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / name).read_text())
        severity = {}
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
                severity[rule["alert"]] = rule["labels"]["severity"]
        (tmp_path / name).write_text(yaml.safe_dump(rules))
        tests = [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case["series"]],
                "alert_rule_test": [
                    {
                        "eval_time": case["at"],
                        "alertname": case["alert"],
                        "exp_alerts": [
                            {"exp_labels": {**case["labels"], "severity": severity[case["alert"]]}}
                        ],
                    }
                ],
            }
            for case in RULE_CASES
            if case["file"] == name
        ]
        spec = tmp_path / f"{name}.test.yml"
        spec.write_text(yaml.safe_dump({"rule_files": [name], "tests": tests}))
        done = subprocess.run(
            [promtool, "test", "rules", str(spec)], capture_output=True, text=True
        )
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"


def alert(name: str, **labels: str) -> Alert:
    return Alert(
        name=name,
        status=AlertStatus.FIRING,
        fingerprint="f1",
        labels={"alertname": name, **labels},
        starts_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("name", "labels", "runbook"),
    [
        ("RedisOutOfConfiguredMaxmemory", {}, "redis-out-of-memory"),
        ("RedisRejectedConnections", {}, "redis-connections"),
        ("BlackboxProbeHttpFailure", {"proxy": "nginx"}, "nginx-upstream-down"),
        ("BlackboxProbeFailed", {"proxy": "caddy"}, "caddy-probe-failure"),
        ("BlackboxProbeHttpFailure", {}, None),
        ("ProxyConfigReloadFailed", {"proxy": "haproxy"}, "haproxy-config-reload"),
        ("ProxyConfigReloadFailed", {"proxy": "nginx"}, "nginx-config-reload"),
        ("HaproxyHighHttp5xxErrorRateServer", {}, "haproxy-5xx"),
        ("RabbitmqNoConsumer", {"queue": "jobs"}, "rabbitmq-no-consumer"),
        ("RabbitmqMemoryAlarm", {}, "rabbitmq-resource-alarm"),
        ("NatsSlowConsumers", {}, "nats-slow-consumers"),
    ],
)
def test_alerts_match_their_runbook(name: str, labels: dict[str, str], runbook: str | None) -> None:
    found = match(RUNBOOKS, alert(name, **labels))
    assert (found.name if found else None) == runbook


def test_labels_map_to_targets_and_resources() -> None:
    settings = Settings(
        docker=[],
        nginx=[{"name": "edge"}, {"name": "other"}],
        rabbitmq=[{"name": "mq", "password": "x", "instances": ["mq:15692"]}],
    )
    rb = match(RUNBOOKS, alert("BlackboxProbeHttpFailure", proxy="nginx"))
    assert rb is not None
    ref, _ = resolve_target(settings, rb, alert("X", proxy="nginx", homelab_target="edge"))
    assert ref == TargetRef(service="nginx", target="edge")
    rb = match(RUNBOOKS, alert("RabbitmqNoConsumer"))
    assert rb is not None
    ref, _ = resolve_target(settings, rb, alert("X", instance="mq:15692", queue="jobs"))
    assert ref == TargetRef(service="rabbitmq", target="mq", resource="jobs")


def plan_for(runbook_name: str, target: TargetRef, **evidence: dict[str, Any]) -> Plan:
    runbook = next(rb for rb in RUNBOOKS if rb.name == runbook_name)
    triage = Triage(
        incident_type=runbook.incident_type,
        service=runbook.service,
        target=target,
        critical=False,
        runbook=runbook,
        severity="warning",
        approval_timeout=timedelta(minutes=5),
        approvers=[],
    )
    request = PlanRequest(
        incident_id="i1",
        alert=alert(runbook.alerts[0]),
        triage=triage,
        evidence=[
            Evidence(key=k, tool="t", target=str(target), ok=True, data=v)
            for k, v in evidence.items()
        ],
    )
    return runbook_plan(request, CATALOG)


REDIS = TargetRef(service="redis", target="cache")


def test_redis_oom_raises_maxmemory_only_with_room() -> None:
    full = {"used_percent": 99.5, "can_grow": True, "suggested_maxmemory": 3145728}
    plan = plan_for("redis-out-of-memory", REDIS, info=full, bigkeys={}, config={})
    (action,) = plan.actions
    assert action.tool == "redis.config_set"
    assert action.params == {"parameter": "maxmemory", "value": 3145728}
    at_ceiling = {**full, "can_grow": False}
    plan = plan_for("redis-out-of-memory", REDIS, info=at_ceiling, bigkeys={}, config={})
    assert plan.actions == [] and plan.escalate


def test_haproxy_5xx_drains_the_worst_server_only_when_others_are_up() -> None:
    lb = TargetRef(service="haproxy", target="lb")
    worst = {"backend": "be_app", "server": "web2", "share_5xx": 0.9, "others_up": 1}
    plan = plan_for("haproxy-5xx", lb, servers={"worst_5xx": worst})
    (action,) = plan.actions
    assert (action.tool, action.params) == (
        "haproxy.disable_server",
        {"backend": "be_app", "server": "web2"},
    )
    alone = plan_for("haproxy-5xx", lb, servers={"worst_5xx": {**worst, "others_up": 0}})
    assert alone.actions == [] and alone.escalate
    some = plan_for("haproxy-5xx", lb, servers={"worst_5xx": {**worst, "share_5xx": 0.1}})
    assert some.actions == []


def test_proxy_reload_only_when_the_config_test_passes() -> None:
    edge = TargetRef(service="nginx", target="edge")
    plan = plan_for("nginx-config-reload", edge, config={"valid": True}, status={"active": 1})
    assert [a.tool for a in plan.actions] == ["nginx.reload"]
    broken = plan_for("nginx-config-reload", edge, config={"valid": False}, status={})
    assert broken.actions == [] and broken.escalate


def test_rabbitmq_backlog_purge_only_without_consumers() -> None:
    jobs = TargetRef(service="rabbitmq", target="mq", resource="jobs")
    plan = plan_for(
        "rabbitmq-queue-backlog", jobs, queue={"consumers": 0, "messages_ready": 5000}, nodes={}
    )
    assert [a.tool for a in plan.actions] == ["rabbitmq.purge_queue"]
    busy = plan_for(
        "rabbitmq-queue-backlog", jobs, queue={"consumers": 2, "messages_ready": 5000}, nodes={}
    )
    assert busy.actions == [] and busy.escalate
