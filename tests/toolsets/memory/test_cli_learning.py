"""The learning commands as users run them: stats, policy suggest → accept (a human, audited),
clear and learned, memory status and reindex, and what `incident show` cites."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from activities.memory.qdrant import close_local, open_local
from activities.records import RecordActivities
from activities.store import Store
from core.config import load_settings
from core.models import ApprovalVerdict, RiskLevel
from tests.toolsets.memory.incidents import Step, incident, record
from workers import cli as cli_module
from workers.learning import incident_record, reindex

CLI = str(Path(sys.prefix) / "bin" / "homelab-agents")
WEB = "docker:nas/web"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in this process (the CLI's imports cost seconds per subprocess)."""
    cli_module.state._settings = None
    result = CliRunner().invoke(cli_module.app, ["--config", str(config), *args])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def cli_process(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "--config", str(config), *args], capture_output=True, text=True, timeout=120
    )


async def test_suggest_accept_clear_and_stats_from_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "homelab.yaml"
    config.write_text(
        f"store: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\n"
        f"temporal: {{state_dir: '{tmp_path / 'state'}'}}\n"
        "docker:\n  - {name: nas}\n"
    )
    store = Store(load_settings(config).store_url)
    acts = RecordActivities(store)
    approved = Step(
        "docker.stop", approval=ApprovalVerdict.APPROVED, approver="alice", level=RiskLevel.HARD
    )
    for _ in range(5):
        await record(acts, incident(WEB, [approved]), [approved])
    failing = [Step("docker.restart", rolled_back=True)]
    for _ in range(2):
        await record(acts, incident(WEB, failing, verified=False), failing)

    stats = json.loads(cli(config, "stats", "--json").stdout)
    by_action = {r["action"]: r for r in stats}
    assert by_action["docker.stop"]["verified"] == 5 and by_action["docker.stop"]["approved"] == 5
    assert by_action["docker.restart"]["failed_verification"] == 2
    assert by_action["docker.restart"]["score"] < 0.5 < by_action["docker.stop"]["score"]
    table = cli(config, "stats")
    assert table.returncode == 0 and "docker.restart" in table.stdout

    suggested = json.loads(cli(config, "policy", "suggest", "--json").stdout)
    assert [(s["action"], s["target"], s["level"], s["suggested"]) for s in suggested] == [
        ("docker.stop", WEB, "HARD", "SOFT")
    ]
    nobody = cli_process(config, "policy", "accept", "docker.stop", WEB)
    assert nobody.returncode == 2 and "say who decides" in nobody.stderr
    done = cli(config, "policy", "accept", "docker.stop", WEB, "--as", "alice", "-r", "5 of 5")
    assert done.returncode == 0, done.stderr
    assert f"docker.stop on {WEB}: HARD → SOFT, accepted by cli:alice" in done.stdout
    explained = json.loads(
        cli(
            config, "policy", "explain", "docker.stop", WEB, "--json", "--recent-writes", "0"
        ).stdout
    )
    assert explained["level"] == "SOFT"
    assert any("accepted by cli:alice" in r for r in explained["reasons"])
    assert any(
        r.startswith("record: docker.stop fixed ContainerKilled on web 5 of 5")
        for r in explained["reasons"]
    )

    restricted = json.loads(
        cli(
            config, "policy", "explain", "docker.restart", WEB, "--json", "--recent-writes", "0"
        ).stdout
    )
    assert restricted["level"] == "HARD"
    learned = json.loads(cli(config, "policy", "learned", "--json").stdout)
    assert [(r["action"], r["target"]) for r in learned["restrictions"]] == [
        ("docker.restart", WEB)
    ]
    assert [(o["action"], o["level"]) for o in learned["accepted"]] == [("docker.stop", "SOFT")]
    cleared = cli(config, "policy", "clear", "docker.restart", WEB, "--as", "bob")
    assert cleared.returncode == 0, cleared.stderr
    again = cli(config, "policy", "clear", "docker.restart", WEB, "--as", "bob")
    assert again.returncode == 1 and "no learned restriction" in again.stderr
    after = json.loads(
        cli(
            config, "policy", "explain", "docker.restart", WEB, "--json", "--recent-writes", "0"
        ).stdout
    )
    assert after["level"] == "SOFT"

    log = json.loads(cli(config, "changes", "--json").stdout)
    audit = [(c["action"], c["approver"]) for c in log if c["step"] == "policy"]
    assert audit == [
        ("policy.restrict", "learning"),
        ("policy.accept", "cli:alice"),
        ("policy.clear", "cli:bob"),
    ]


async def test_memory_reindex_and_status(tmp_path: Path) -> None:
    config = tmp_path / "homelab.yaml"
    config.write_text(
        f"store: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\n"
        f"temporal: {{state_dir: '{tmp_path / 'state'}'}}\n"
        "memory: {embedder: {dimensions: 128}}\n"
        "docker:\n  - {name: nas}\n"
    )
    store = Store(load_settings(config).store_url)
    acts = RecordActivities(store)
    for alert in ("ContainerKilled", "ContainerKilled", "ContainerOOMKilled"):
        steps = [Step("docker.start")]
        await record(acts, incident(WEB, steps, alert=alert), steps)
    empty = json.loads(cli(config, "memory", "status", "--json").stdout)
    assert empty["embedder"] == "hashing-128" and empty["collections"] == {}
    held = open_local(empty["location"])  # a running worker holds the embedded store
    try:
        busy = cli_process(config, "memory", "reindex")
        assert busy.returncode == 1 and "open in another process" in busy.stderr
        assert "use a Qdrant server" in busy.stderr.replace("\n", " ")
    finally:
        close_local(empty["location"])
    assert held is not None
    done = cli_process(config, "memory", "reindex")
    assert done.returncode == 0, done.stderr
    assert "stored 3, skipped 0, failed 0" in done.stdout
    again = await reindex(load_settings(config), store)  # idempotent: the same points
    assert again == {"stored": 3, "skipped": 0, "failed": 0}
    status = json.loads(cli(config, "memory", "status", "--json").stdout)
    assert sorted(status["collections"].values()) == [1, 2]
    assert status["location"] == str((tmp_path / "state" / "memory").resolve())


async def test_incident_show_cites_the_record_as_it_was_when_the_incident_opened(
    tmp_path: Path,
) -> None:
    config = tmp_path / "homelab.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\ndocker: []\n")
    settings = load_settings(config)
    store = Store(settings.store_url)
    acts = RecordActivities(store)
    for n in range(3):
        steps = [Step("docker.start")]
        await record(
            acts, incident(WEB, steps, closed_at=datetime.now(UTC) - timedelta(days=n + 2)), steps
        )
    now = incident(WEB, [Step("docker.start")])
    await record(acts, now, [Step("docker.start")])
    lines = incident_record(settings, store, now)
    assert lines == [
        "docker.start fixed ContainerKilled on web 3 of 3 times, last 2 days ago"
    ]  # its own outcome is not part of the record it was decided on
