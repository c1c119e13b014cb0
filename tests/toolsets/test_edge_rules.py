"""The edge rule files (Home Assistant, DNS, Tailscale, UniFi): promtool unit-tests that each alert
fires with the labels its runbook needs (the target's `instance`/`server`, the resource label), and
every rule is answered by a runbook of the right service."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from activities.runbooks import load_runbooks, match
from activities.toolsets import default_catalog
from core.models import Alert, AlertStatus

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
FILES = ("homeassistant.rules.yml", "dns.rules.yml", "edge.rules.yml")
SERVICE = {
    "HomeAssistant": "homeassistant",
    "DnsResolutionFailing": "unbound",
    "Adguard": "adguard",
    "DnsRecordDrift": "cloudflare",
    "DynamicDnsRecordStale": "cloudflare",
    "Tailscale": "tailscale",
    "Unifi": "unifi",
}

CASES: list[dict[str, Any]] = [
    {
        "alert": "HomeAssistantDown",
        "at": "5m",
        "series": [('up{job="homeassistant",instance="ha:8123"}', "0x10")],
        "labels": [{"instance": "ha:8123", "job": "homeassistant"}],
    },
    {
        "alert": "HomeAssistantEntitiesUnavailable",
        "at": "15m",
        "series": [
            (
                f'homeassistant_entity_available{{job="homeassistant",instance="ha:8123",entity="sensor.nas_{i}",domain="sensor"}}',
                "0x20",
            )
            for i in range(6)
        ]
        + [
            (
                'homeassistant_entity_available{job="homeassistant",instance="ha:8123",entity="light.hall",domain="light"}',
                "1x20",
            )
        ],
        "labels": [{"instance": "ha:8123", "job": "homeassistant"}],
    },
    {
        "alert": "HomeAssistantRestarted",
        "at": "4m",
        "series": [
            (
                'homeassistant_state_change_total{job="homeassistant",instance="ha:8123",entity="light.hall"}',
                "5 6 7 1 2",
            )
        ],
        "labels": [{"instance": "ha:8123", "job": "homeassistant"}],
    },
    {
        "alert": "DnsResolutionFailing",
        "at": "5m",
        "series": [('probe_success{job="dns",instance="10.0.0.53:53"}', "1 0 0 0 0 0")],
        "labels": [{"instance": "10.0.0.53:53", "job": "dns"}],
    },
    {
        "alert": "AdguardUpstreamsFailing",
        "at": "15m",
        "series": [
            (
                'adguard_top_upstreams_avg_response_time_seconds{server="http://adguard.lan:3000",upstream="tls://1.1.1.1"}',
                "3x20",
            ),
            ('adguard_avg_processing_time_seconds{server="http://adguard.lan:3000"}', "0.02x20"),
        ],
        "labels": [{"server": "http://adguard.lan:3000"}],
    },
    {
        "alert": "AdguardProtectionDisabled",
        "at": "40m",
        "series": [('adguard_protection_enabled{server="http://adguard.lan:3000"}', "0x50")],
        "labels": [{"server": "http://adguard.lan:3000"}],
    },
    {
        "alert": "AdguardNothingBlocked",
        "at": "70m",
        "series": [
            ('adguard_blocked_filtered{server="http://adguard.lan:3000"}', "0x80"),
            ('adguard_queries{server="http://adguard.lan:3000"}', "5000x80"),
        ],
        "labels": [{"server": "http://adguard.lan:3000"}],
    },
    {
        "alert": "DnsRecordDrift",
        "at": "10m",
        "series": [
            (
                'probe_success{job="dns-records",instance="ns1.example.com",record="home.example.com"}',
                "0x20",
            )
        ],
        "labels": [
            {"instance": "ns1.example.com", "job": "dns-records", "record": "home.example.com"}
        ],
    },
    {
        "alert": "DynamicDnsRecordStale",
        "at": "15m",
        "series": [
            (
                'probe_success{job="ddns",instance="ns1.example.com",record="home.example.com"}',
                "0x20",
            )
        ],
        "labels": [{"instance": "ns1.example.com", "job": "ddns", "record": "home.example.com"}],
    },
    {
        "alert": "TailscaleDeviceKeyExpiringSoon",
        "at": "90m",
        "series": [
            ('tailscale_devices_expires_timestamp{id="n1",hostname="gateway"}', "864000x100"),
            ('tailscale_devices_expires_timestamp{id="n2",hostname="laptop"}', "99999999x100"),
        ],
        "labels": [{"id": "n1", "hostname": "gateway"}],
    },
    {
        "alert": "TailscaleSubnetRouterOffline",
        "at": "10m",
        "series": [
            ('tailscale_devices_online{id="n1",hostname="gateway"}', "0x20"),
            ('tailscale_devices_routes_enabled{id="n1",hostname="gateway"}', "1x20"),
            ('tailscale_devices_online{id="n3",hostname="phone"}', "0x20"),
            ('tailscale_devices_routes_enabled{id="n3",hostname="phone"}', "0x20"),
        ],
        "labels": [{"id": "n1", "hostname": "gateway"}],
    },
    {
        "alert": "UnifiApOffline",
        "at": "5m",
        "series": [
            ('probe_success{job="unifi-aps",instance="192.168.1.10",device="AP Living"}', "0x10")
        ],
        "labels": [{"instance": "192.168.1.10", "job": "unifi-aps", "device": "AP Living"}],
    },
    {
        "alert": "UnifiDeviceDisconnected",
        "at": "5m",
        "series": [
            (
                'probe_success{job="unifi-devices",instance="192.168.1.2",device="Switch Office"}',
                "0x10",
            )
        ],
        "labels": [{"instance": "192.168.1.2", "job": "unifi-devices", "device": "Switch Office"}],
    },
]


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run deploy/scripts/install-system-deps.sh (prometheus)"
    return path


def rules() -> dict[str, dict[str, Any]]:
    found = {}
    for name in FILES:
        for group in yaml.safe_load((RULES / name).read_text())["groups"]:
            for rule in group["rules"]:
                found[rule["alert"]] = rule | {"file": name}
    return found


def test_rules_fire_with_the_labels_the_runbooks_need(tmp_path: Path) -> None:
    shipped = rules()
    assert sorted(c["alert"] for c in CASES) == sorted(shipped)
    for name in FILES:
        data = yaml.safe_load((RULES / name).read_text())
        for group in data["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)  # templated text is not what is tested here
        (tmp_path / name).write_text(yaml.safe_dump(data))
    tests = [
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
                                "severity": shipped[case["alert"]]["labels"]["severity"],
                                **labels,
                            }
                        }
                        for labels in case["labels"]
                    ],
                }
            ],
        }
        for case in CASES
    ]
    spec = {"rule_files": list(FILES), "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [promtool(), "test", "rules", "tests.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_edge_rule_has_a_runbook_of_its_service() -> None:
    runbooks = load_runbooks(default_catalog())
    for name in rules():
        labels = {
            k: v for case in CASES if case["alert"] == name for k, v in case["labels"][0].items()
        }
        fired = Alert(
            name=name,
            status=AlertStatus.FIRING,
            fingerprint="f1",
            labels={"alertname": name, **labels},
            starts_at=datetime.now(UTC),
        )
        runbook = match(runbooks, fired)
        service = next(v for k, v in SERVICE.items() if name.startswith(k))
        assert runbook is not None and runbook.service == service, name
        if runbook.resource_labels:  # the alert carries the label naming the resource
            assert any(label in labels for label in runbook.resource_labels), name
