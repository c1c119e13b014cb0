"""The CLI as users run it: exit codes, JSON output, config errors (no services needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.prefix) / "bin" / "homelab-agents")


def cli(
    *args: str, config: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [CLI, *(["--config", str(config)] if config else []), *args]
    import os

    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_policy_explain_names_every_rule(tmp_path: Path) -> None:
    config = tmp_path / "homelab.yaml"
    config.write_text(
        f"store: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\n"
        "approval:\n  critical: ['docker:*/postgres*']\n"
        "docker:\n  - {name: nas}\n"
    )
    done = cli(
        "policy",
        "explain",
        "docker.prune_images",
        "docker:nas/postgres-main",
        "--json",
        config=config,
    )
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert decision["level"] == "HARD"
    reasons = " | ".join(decision["reasons"])
    assert "catalog default for docker.prune_images is SOFT" in reasons
    assert "critical pattern 'docker:*/postgres*'" in reasons
    text = cli("policy", "explain", "docker.restart", "docker:nas/web", config=config)
    assert text.returncode == 0 and "SOFT" in text.stdout
    many = cli(
        "policy",
        "explain",
        "docker.restart",
        "docker:nas/web",
        "--recent-writes",
        "6",
        "--json",
        config=config,
    )
    assert json.loads(many.stdout)["level"] == "HARD"


def test_usage_and_config_errors_exit_2(tmp_path: Path) -> None:
    assert cli("policy", "explain", "docker.nope", "docker:nas/web").returncode == 2
    assert cli("policy", "explain", "docker.restart", "not-a-target").returncode == 2
    assert cli("no-such-command").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("approval:\n  timeout: never\n")
    done = cli("tools", "list", config=bad)
    assert done.returncode == 2 and "approval.timeout" in done.stderr
    assert cli("tools", "list", config=tmp_path / "missing.yaml").returncode == 2


def test_tools_list_json_is_the_catalog() -> None:
    done = cli("tools", "list", "--json")
    assert done.returncode == 0
    tools = {t["name"]: t for t in json.loads(done.stdout)}
    assert tools["docker.start"]["kind"] == "write" and tools["docker.start"]["level"] == "NONE"
    assert tools["docker.inspect"]["kind"] == "read" and tools["docker.inspect"]["dry_run"] is False
    assert "memory" in tools["docker.update_resources"]["parameters"]["properties"]


def test_approve_without_identity_is_a_usage_error(tmp_path: Path) -> None:
    done = cli("approve", "incident-x", env={"HOMELAB_APPROVER": ""})
    assert done.returncode == 2 and "--approver" in done.stderr


def test_incident_show_prints_values_not_python_reprs() -> None:
    """`incident show` once printed kind=<ToolErrorKind.UNREACHABLE: 'unreachable'>."""
    from datetime import UTC, datetime

    from core.models import (
        Action,
        ActionOutcome,
        Alert,
        AlertStatus,
        ApprovalVerdict,
        ChangeResult,
        Evidence,
        IncidentState,
        Outcome,
        Phase,
        Plan,
        RiskLevel,
        TargetRef,
        ToolError,
        ToolErrorKind,
    )
    from workers.cli import incident_lines

    now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    target = TargetRef(service="docker", target="lab", resource="web")
    action = Action(id="a1", tool="docker.start", target=target, params={"timeout": 5})
    state = IncidentState(
        incident_id="incident-x",
        workflow_id="incident-x",
        alert=Alert(
            name="ContainerKilled", status=AlertStatus.FIRING, fingerprint="x", starts_at=now
        ),
        phase=Phase.ESCALATED,
        opened_at=now,
        evidence=[
            Evidence(
                key="inspect",
                tool="docker.inspect",
                target=str(target),
                ok=False,
                error=ToolError(kind=ToolErrorKind.UNREACHABLE, message="engine lab is down"),
            )
        ],
        plan=Plan(source="runbook", actions=[action]),
        actions=[
            ActionOutcome(
                action=action,
                level=RiskLevel.SOFT,
                approval=ApprovalVerdict.NOT_REQUIRED,
                result=ChangeResult.SKIPPED,
            )
        ],
        outcome=Outcome.ESCALATED,
    )
    text = "\n".join(incident_lines(state))
    assert "evidence inspect: unreachable: engine lab is down" in text
    assert 'a1 docker.start docker:lab/web {"timeout": 5}' in text
    assert "SOFT/not_required" in text and "outcome escalated" in text
    for repr_marker in ("<", "ToolErrorKind", "RiskLevel.", "kind="):
        assert repr_marker not in text, text
