"""Calling catalog tools on real targets the way the worker does (ToolRunner: typed results,
redaction), and SSH settings for the tests' real sshd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from activities.catalog import TargetClients
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import TargetRef, ToolCall, ToolResult
from tests.conftest import make_settings
from tests.fakes.sshd import SshServer


class Tools:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runner = ToolRunner(default_catalog(), TargetClients(settings))

    async def run(
        self, tool: str, target: str, resource: str = "", dry_run: bool = False, **params: Any
    ) -> ToolResult:
        service = tool.split(".", 1)[0]
        call = ToolCall(
            tool=tool,
            target=TargetRef(service=service, target=target, resource=resource),
            params=params,
            dry_run=dry_run,
        )
        return await self.runner.run(call)

    async def ok(self, tool: str, target: str, resource: str = "", **params: Any) -> dict[str, Any]:
        result = await self.run(tool, target, resource, **params)
        assert result.ok, result.error
        return result.data

    async def fails(self, tool: str, target: str, resource: str = "", **params: Any) -> Any:
        """The typed error of a call that must fail."""
        result = await self.run(tool, target, resource, **params)
        assert not result.ok and result.error is not None, result.data
        return result.error


def tools_for(tmp: Path, **sections: Any) -> Tools:
    return Tools(make_settings(tmp, **sections))


def ssh_access(sshd: SshServer, **overrides: Any) -> dict[str, Any]:
    access: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "key_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
    }
    access.update(overrides)
    return access


def promtool() -> str:
    import shutil

    path = shutil.which("promtool")
    assert path, "promtool is missing: run deploy/scripts/install-system-deps.sh (prometheus)"
    return path


def promtool_check(rules: Path) -> str:
    import subprocess

    done = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def promtool_test(rules: Path, tests: list[dict[str, Any]], tmp: Path) -> None:
    """``promtool test rules`` on ``rules`` (annotations dropped: templated text is not what is
    tested) with these ``tests`` entries (input_series, alert_rule_test)."""
    import subprocess

    import yaml

    data = yaml.safe_load(rules.read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp / "rules.yml").write_text(yaml.safe_dump(data))
    spec = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp / "tests.yml").write_text(yaml.safe_dump(spec))
    done = subprocess.run(
        [promtool(), "test", "rules", "tests.yml"], cwd=tmp, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
