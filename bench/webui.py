"""What an incident looks like in the Temporal Web UI, from a real run, for the docs.

Starts a Temporal dev server with its Web UI, the worker and the intake, and a private Docker
engine; three containers die and their ContainerKilled alerts are posted: two are critical
(``approval.critical``), so their restarts wait for a human (phase AwaitingApproval), the third
is restarted and resolved. Then headless Chromium (Debian's package) saves:

* docs/images/webui-awaiting-approval.png: the workflow list filtered by
  ``HomelabPhase = 'AwaitingApproval'``;
* docs/images/webui-incident-details.png: one waiting incident's page, with its current details
  (phase, target, plan, the pending approval).

    .venv/bin/python bench/webui.py
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.agents import running_agents
from bench.services import incident_result
from core.models import IncidentState, Phase
from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine
from workers.lab.processes import free_port
from workflows.incident import IncidentWorkflow

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"
CRASH_ONCE = "if [ -f /tmp/crashed ]; then exec sleep 100000; fi; touch /tmp/crashed; exit 3"
AWAITING = "HomelabPhase = 'AwaitingApproval'"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    return found


class Browser:
    """Headless Chromium driven over the DevTools protocol: navigate, wait until the page shows
    what it should (the UI renders after its API calls, and a running workflow's page keeps a long
    poll open), then capture. Offline-friendly flags: no sandbox (root), no GPU, nothing fetched
    but the page."""

    def __init__(self, profile: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={self.port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "NO_PROXY": "*", "no_proxy": "*"},
        )
        self.ws: Any = None
        self.session: Any = None
        self.next_id = 0

    async def __aenter__(self) -> Browser:
        import aiohttp  # the websocket client; installed with the project's dependencies

        async with httpx.AsyncClient(trust_env=False) as http:
            for _ in range(100):
                try:
                    pages = (await http.get(f"http://127.0.0.1:{self.port}/json/list")).json()
                    page = next(p for p in pages if p.get("type") == "page")
                    break
                except (httpx.HTTPError, StopIteration, ValueError):
                    await asyncio.sleep(0.1)
            else:
                raise RuntimeError("chromium's DevTools endpoint did not answer")
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        self.proc.terminate()
        self.proc.wait(15)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mine = self.next_id
        await self.ws.send_json({"id": mine, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=60)
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    async def capture(
        self, url: str, out: Path, shows: str, width: int, height: int, click: str = ""
    ) -> None:
        """``click``: the text of a tab to open first (the page's current details are under
        "User Metadata")."""
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        clicked = not click
        while time.monotonic() < deadline:
            if not clicked:
                found = await self.call(
                    "Runtime.evaluate",
                    expression=(
                        "(() => { const el = [...document.querySelectorAll('a,button,[role=tab]')]"
                        f".find(e => e.innerText.trim() === {json.dumps(click)});"
                        " if (el) { el.click(); return true } return false })()"
                    ),
                )
                clicked = bool(found.get("result", {}).get("value"))
            text = await self.call(
                "Runtime.evaluate", expression="document.body ? document.body.innerText : ''"
            )
            if shows in str(text.get("result", {}).get("value", "")):
                break
            await asyncio.sleep(0.25)
        else:
            shot = await self.call("Page.captureScreenshot", format="png")
            failed = out.with_suffix(".failed.png")
            failed.write_bytes(base64.b64decode(shot["data"]))
            page = str(text.get("result", {}).get("value", ""))[:1500]
            raise RuntimeError(f"{url} never showed {shows!r} (see {failed}); it shows: {page}")
        await asyncio.sleep(2.0)  # the rest of the page's requests, frames and transitions
        shot = await self.call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))


def webhook(name: str, fingerprint: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "homelab-agents",
        "groupKey": "{}",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ContainerKilled", "name": name, "severity": "critical"},
                "annotations": {"summary": f"Container {name} exited with code 3"},
                "startsAt": datetime.now(UTC).isoformat(),
                "fingerprint": fingerprint,
            }
        ],
    }


async def main() -> list[Path]:
    root = Path(tempfile.mkdtemp(prefix="hl-webui-"))
    engine = DockerEngine(root / "docker").start()
    dc = engine.client()
    ui_port = free_port()
    names = ["postgres-photos", "postgres-nextcloud", "uptime-kuma"]
    fps = {name: uuid.uuid4().hex[:16] for name in names}
    out: list[Path] = []
    try:
        for name in names:
            container = dc.containers.run(
                BUSYBOX_IMAGE, ["sh", "-c", CRASH_ONCE], name=name, detach=True
            )
            while container.status != "exited":
                await asyncio.sleep(0.05)
                container.reload()
        async with (
            running_agents(
                root,
                "homelab-agents",
                ui_port=ui_port,
                docker=[{"name": "nas", "url": engine.url, "watch_events": False}],
                approval={"approvers": ["alice"], "critical": ["docker:*/postgres*"]},
            ) as agents,
            httpx.AsyncClient(trust_env=False, timeout=30) as http,
        ):
            for name in names:
                (await http.post(agents.url, json=webhook(name, fps[name]))).raise_for_status()
            state = await incident_result(agents.client, f"incident-{fps['uptime-kuma']}")
            assert isinstance(state, IncidentState)
            waiting = [f"incident-{fps[n]}" for n in names[:2]]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                listed = [w.id async for w in agents.client.list_workflows(AWAITING)]
                if sorted(listed) == sorted(waiting):
                    break
                await asyncio.sleep(0.3)
            else:
                raise RuntimeError(f"the waiting incidents never showed in the list: {listed}")
            handle = agents.client.get_workflow_handle_for(IncidentWorkflow.run, waiting[0])
            current = await handle.query(IncidentWorkflow.get_state)
            assert current.phase is Phase.AWAITING_APPROVAL, current.phase
            run_id = (await handle.describe()).run_id
            for _ in range(100):  # the UI's own API answers
                try:
                    if (await http.get(f"{agents.ui}/api/v1/namespaces")).is_success:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            DOCS.mkdir(parents=True, exist_ok=True)
            listing = DOCS / "webui-awaiting-approval.png"
            details = DOCS / "webui-incident-details.png"
            async with Browser(root / "profile") as browser:
                await browser.capture(
                    f"{agents.ui}/namespaces/default/workflows?query={quote(AWAITING)}",
                    listing,
                    waiting[1],
                    1400,
                    700,
                )
                await browser.capture(
                    f"{agents.ui}/namespaces/default/workflows/{waiting[0]}/{run_id}/history",
                    details,
                    "Current Details",  # rendered in a frame of its own, after this heading
                    1400,
                    760,
                    click="User Metadata",
                )
            out = [listing, details]
    finally:
        dc.close()
        engine.stop()
    return out


if __name__ == "__main__":
    for path in asyncio.run(main()):
        print(f"saved {path}")
    sys.stdout.flush()
    os._exit(0)  # the Temporal client can crash the interpreter at exit (sdk-python#300)
