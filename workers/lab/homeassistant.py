"""A real Home Assistant core on loopback, in its own venv (it pins many libraries).

The venv is built once per pinned version under ``~/.cache/homelab-agents/ha-venv-<version>``
(``python -m workers.lab.homeassistant`` builds it ahead, as ``make ha-venv`` does on CI). An
admin's long-lived access token is minted offline into ``.storage/auth`` before the first start,
so no onboarding or browser is needed. Home Assistant asks its supervisor to restart it by exiting
with code 100; here a small loop plays the supervisor (as a container's restart policy does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from workers.lab.processes import Proc, wait_for

VERSION = "2024.3.3"  # the newest release that installs on Python 3.11 (2024.4 needs 3.12)
PINS = ("josepy<2",)  # josepy 2 breaks acme (via hass-nabucasa): every request would answer 500
RESTART_EXIT_CODE = 100

MKTOKEN = """
import asyncio, sys
from datetime import timedelta
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.auth import auth_manager_from_config
from homeassistant.auth.const import GROUP_ID_ADMIN
from homeassistant.auth.models import TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN

async def main(cfg):
    hass = HomeAssistant(cfg)
    await asyncio.gather(dr.async_load(hass), er.async_load(hass))
    hass.auth = await auth_manager_from_config(hass, [{"type": "homeassistant"}], [])
    user = await hass.auth.async_create_user("homelab-agents", group_ids=[GROUP_ID_ADMIN])
    token = await hass.auth.async_create_refresh_token(
        user, client_name="homelab-agents", token_type=TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN,
        access_token_expiration=timedelta(days=3650))
    print(hass.auth.async_create_access_token(token))
    hass.set_state(CoreState.running)  # else async_stop returns early and nothing is written
    await hass.async_stop()

asyncio.run(main(sys.argv[1]))
"""

BASE_CONFIG = """\
homeassistant:
  name: Lab
  latitude: 52.5
  longitude: 13.4
  elevation: 30
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
logger:
  default: warning
template:
  - sensor:
      - name: lab_temperature
        unique_id: lab_temperature
        state: "{{{{ 21.5 }}}}"
input_boolean:
  lab_switch:
    name: Lab switch
"""


def venv_dir(version: str = VERSION) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "homelab-agents" / f"ha-venv-{version}"


def ensure_venv(version: str = VERSION) -> tuple[Path, float]:
    """The venv's directory, and the seconds spent installing it now (0 when cached)."""
    venv = venv_dir(version)
    if (venv / ".complete").exists():
        return venv, 0.0
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"homeassistant=={version}", *PINS],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    seconds = time.monotonic() - started
    (venv / ".complete").write_text(f"{seconds:.1f}\n")
    return venv, seconds


class HomeAssistant:
    """``start()`` writes the config (``BASE_CONFIG`` plus ``extra``), mints a token on the first
    start, runs hass under the restart loop and waits until the core is RUNNING."""

    def __init__(self, root: Path, port: int, extra: str = "", version: str = VERSION) -> None:
        self.root = root
        self.port = port
        self.config_dir = root / "config"
        self.extra = extra
        self.version = version
        self.proc: Proc | None = None
        self.token = ""
        self.install_seconds = 0.0
        self.start_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, extra: str | None = None) -> None:
        if extra is not None:
            self.extra = extra
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            BASE_CONFIG.format(port=self.port) + self.extra
        )

    def start(self) -> HomeAssistant:
        venv, self.install_seconds = ensure_venv(self.version)
        self.write_config()
        token_file = self.root / "token"
        if not token_file.exists():
            minted = subprocess.run(
                [str(venv / "bin" / "python"), "-c", MKTOKEN, str(self.config_dir)],
                capture_output=True,
                text=True,
                check=True,
            )
            token_file.write_text(minted.stdout.strip())
        self.token = token_file.read_text().strip()
        hass = f"{venv / 'bin' / 'hass'} -c {self.config_dir} --log-file {self.root / 'hass.log'}"
        # SIGTERM to the loop stops hass first (and waits for it), then the loop.
        loop = (
            "trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT; "
            f"while :; do {hass} & child=$!; wait $child; rc=$?; "
            f"echo exit $rc >> {self.root / 'exits.log'}; "
            f"[ $rc -eq {RESTART_EXIT_CODE} ] || exit $rc; done"
        )
        started = time.monotonic()
        self.proc = Proc.spawn("homeassistant", ["sh", "-c", loop], self.root / "out.log")
        wait_for(self.running, 120, f"Home Assistant on port {self.port}", interval=0.2)
        self.start_seconds = time.monotonic() - started
        return self

    def api(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def running(self) -> bool:
        if self.proc is not None and not self.proc.alive():
            raise RuntimeError(f"Home Assistant exited: {self.proc.tail()}")
        config = self.api("GET", "/api/config")
        return isinstance(config, dict) and config.get("state") == "RUNNING"

    def states(self) -> dict[str, str]:
        listed = self.api("GET", "/api/states")
        assert isinstance(listed, list)
        return {s["entity_id"]: s["state"] for s in listed}

    def restarts(self) -> int:
        log = self.root / "exits.log"
        return log.read_text().count(f"exit {RESTART_EXIT_CODE}") if log.exists() else 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=20)


if __name__ == "__main__":
    path, spent = ensure_venv()
    print(f"{path} (installed in {spent:.0f}s)" if spent else f"{path} (cached)")
