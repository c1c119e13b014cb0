"""A real Home Assistant core (its own cached venv) with a REST integration polling a small
"NAS" JSON endpoint the tests switch off and on, once per module."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from workers.lab.homeassistant import HomeAssistant
from workers.lab.processes import free_port

NAS_SENSORS = ("temperature", "load", "disk_used", "uptime", "fan", "power")


class Nas:
    """The JSON endpoint the rest integration polls; ``down()`` closes its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._http: ThreadingHTTPServer | None = None

    def up(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                data = json.dumps({k: i + 1.5 for i, k in enumerate(NAS_SENSORS)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def rest_config(nas: Nas) -> str:
    sensors = "".join(
        f"      - name: nas_{k}\n        unique_id: nas_{k}\n"
        f'        value_template: "{{{{ value_json.{k} }}}}"\n'
        for k in NAS_SENSORS
    )
    return (
        "rest:\n"
        f"  - resource: http://127.0.0.1:{nas.port}/state.json\n"
        "    scan_interval: 3600\n"
        "    timeout: 2\n"
        "    sensor:\n" + sensors
    )


@pytest.fixture(scope="module")
def nas() -> Iterator[Nas]:
    server = Nas()
    server.up()
    yield server
    server.down()


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory, nas: Nas) -> Iterator[HomeAssistant]:
    root: Path = tmp_path_factory.mktemp("ha")
    instance = HomeAssistant(root, free_port(), rest_config(nas))
    try:
        instance.start()
        print(
            f"\nHome Assistant {instance.version}: venv install {instance.install_seconds:.0f}s, "
            f"RUNNING after {instance.start_seconds:.1f}s"
        )
        yield instance
    finally:
        instance.stop()


def ha_target(ha: HomeAssistant, **extra: Any) -> dict[str, Any]:
    return {"name": "house", "url": ha.url, "token": ha.token, "timeout": 5, **extra}


def break_nas(ha: HomeAssistant, nas: Nas) -> None:
    """The NAS goes away and the next poll fails: every NAS sensor unavailable; the NAS comes
    back, but the integration only polls again in an hour."""
    import time

    nas.down()
    ha.api("POST", "/api/services/homeassistant/update_entity", {"entity_id": "sensor.nas_load"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = ha.states()
        if all(states.get(f"sensor.nas_{k}") == "unavailable" for k in NAS_SENSORS):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"NAS sensors never became unavailable: {ha.states()}")
    nas.up()
