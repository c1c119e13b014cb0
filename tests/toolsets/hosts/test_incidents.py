"""End to end on the real stack: a host's non-Docker data mount fills up with a log; the real
node_exporter reports it, the real Prometheus fires HostOutOfDiskSpace (the mount labelled
homelab_service="hosts" by the node job's relabelling), the real Alertmanager posts it to the
intake, and the hosts-disk-full runbook frees the mount with the host's logrotate config over SSH."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from temporalio.testing import WorkflowEnvironment

from core.models import ChangeResult, Outcome, RiskLevel
from tests.integration.stack import running_stack, target_host
from tests.toolsets.hosts.conftest import HostLab
from tests.toolsets.incidents import Monitoring, incident_settings, start_monitoring
from workers.lab.dockerd import DockerEngine
from workers.lab.monitoring import node_exporter
from workers.lab.processes import Proc, free_port

pytestmark = pytest.mark.integration
NO_ENGINE = cast(DockerEngine, None)


@pytest.fixture(scope="module")
def node_stack(session_root: Path, host_lab: HostLab) -> Iterator[tuple[Monitoring, Proc, int]]:
    root = session_root / "host-incidents"
    port = free_port()
    node = node_exporter(root, port)
    relabel = {
        "source_labels": ["mountpoint"],
        "regex": re.escape(str(host_lab.mount)),
        "target_label": "homelab_service",
        "replacement": "hosts",
    }
    try:
        stack = start_monitoring(
            root, scrape={"node": [f"127.0.0.1:{port}"]}, relabels={"node": [relabel]}
        )
    except BaseException:
        node.stop()
        raise
    yield stack, node, port
    stack.stop()
    node.stop()


def fill_to(host_lab: HostLab, used_percent: float) -> Path:
    """A compressible log that leaves the mount ``used_percent`` full."""
    stat = os.statvfs(host_lab.mount)
    size, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
    target_free = size * (100 - used_percent) / 100
    return host_lab.fill_log("app.log", int((free - target_free) // (1024 * 1024)))


async def test_full_data_mount_is_freed_by_logrotate(
    dev_env: WorkflowEnvironment,
    host_lab: HostLab,
    node_stack: tuple[Monitoring, Proc, int],
    tmp_path: Path,
) -> None:
    monitoring, _, node_port = node_stack
    settings = incident_settings(
        target_host(dev_env),
        tmp_path,
        monitoring,
        hosts=[host_lab.target(instances=[f"127.0.0.1:{node_port}"])],
    )
    log = fill_to(host_lab, 95)
    stat = os.statvfs(host_lab.mount)
    assert stat.f_bavail / stat.f_blocks < 0.10
    try:
        async with running_stack(dev_env, NO_ENGINE, tmp_path, settings=settings) as stack:
            fingerprint = await monitoring.fingerprint(
                "HostOutOfDiskSpace", timeout=60, mountpoint=str(host_lab.mount)
            )
            state = await stack.result(f"incident-{fingerprint}", timeout=120)

            assert state.outcome is Outcome.RESOLVED, state.notes
            assert state.triage is not None and state.triage.runbook is not None
            assert state.triage.runbook.name == "hosts-disk-full"
            assert state.alert.labels["homelab_service"] == "hosts"
            assert str(state.triage.target) == "hosts:lab"
            assert [(a.action.tool, a.level, a.result) for a in state.actions] == [
                ("hosts.rotate_logs", RiskLevel.SOFT, ChangeResult.APPLIED)
            ]
            assert state.actions[0].action.params == {"config": str(host_lab.logrotate)}
            assert state.verification is not None and state.verification.passed
            (change,) = stack.store.list_changes(state.workflow_id)
            assert f"{log} (" in change.preview and change.reversibility.value == "irreversible"
        assert not log.exists() and (host_lab.logs / "app.log.1.gz").exists()
        after = os.statvfs(host_lab.mount)
        assert after.f_bavail / after.f_blocks > 0.5
    finally:
        log.unlink(missing_ok=True)
        for rotated in host_lab.logs.glob("app.log.*"):
            rotated.unlink()
