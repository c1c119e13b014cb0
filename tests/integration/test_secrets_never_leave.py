"""Secrets never leave: real incidents with planted secrets, then every place they could surface.

Planted: a container's environment (``POSTGRES_PASSWORD=…`` and friends) that ``docker.recreate``
carries over, secrets the container writes to its log (a bearer token, ``PGPASSWORD=``, a JSON
password, SQL ``PASSWORD '…'``, ``redis://:pw@``, ``GITHUB_TOKEN=``, ``AWS_SECRET_ACCESS_KEY=``),
a Basic auth header and a DSN in an alert's annotations, the PostgreSQL targets' DSN passwords,
the store's URL password, the intake's bearer token, the LLM provider's key and the Telegram bot
token. Two incidents run through the real intake, worker, bot and Temporal dev server: a crashed
container that the (fake) LLM plans to recreate on another tag, approved with a Telegram button,
and a blocking PostgreSQL session terminated autonomously. Then every workflow history (exported
with the dev server's own ``temporal workflow show --output json``), every row of the store,
``GET /changes``, every log record, every request body the LLM fake received and every Bot API
call's parameters are searched for every secret: zero hits.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from temporalio.testing import WorkflowEnvironment

from activities.store import Store
from core.models import ChangeResult, Outcome, RiskLevel
from core.redact import install_log_redaction
from tests.fakes.openai_compat import fake_llm
from tests.fakes.telegram import FakeTelegram
from tests.integration.pg_helpers import apply_roles, backend_exists, new_database
from tests.integration.stack import alertmanager_payload, am_alert, running_stack, target_host
from tests.integration.test_change_log_integrity import psql_initdb, store_database
from tests.integration.test_postgres_incidents import EXPORTER, Blocked, pg_alert
from tests.integration.test_telegram import (
    ALICE,
    APPROVE,
    CHAT,
    INFO,
    approval_message,
    button,
    press,
)
from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine
from workers.lab.postgres import Postgres

pytestmark = pytest.mark.integration

TEMPORAL = Path(sys.prefix) / "bin" / "temporal"


def planted(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(8)}"


class Secrets:
    """Every planted secret, by where it was planted."""

    def __init__(self) -> None:
        self.container_env = planted("envpw")
        self.log_bearer = planted("bearer")
        self.log_pgpassword = planted("pgpw")
        self.log_json = planted("jsonpw")
        self.log_sql = planted("sqlpw")
        self.log_redis = planted("redispw")
        self.log_github = planted("ghtok")
        self.log_aws = planted("awskey")
        self.basic_password = planted("basicpw")
        self.basic = base64.b64encode(f"ops:{self.basic_password}".encode()).decode()
        self.annotation_dsn = planted("annotdsn")
        self.dsn = planted("dsnpw")
        self.maintenance_dsn = planted("maintpw")
        self.store = planted("storepw")
        self.store_owner = planted("ownerpw")
        self.intake = planted("intake")
        self.llm_key = "sk-" + planted("llm")
        self.telegram = f"7012345678:AAF{secrets.token_urlsafe(24)}"

    def items(self) -> dict[str, str]:
        values = dict(vars(self))
        values["basic (base64)"] = values.pop("basic")
        return values

    def hits(self, text: str) -> list[str]:
        return [name for name, value in self.items().items() if value in text]


@pytest.fixture
def planted_secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    """Every log record of this process (worker, intake, bot all run here), as a process started by
    the CLI would write it: redaction installed, everything at DEBUG."""
    lines: list[str] = []
    before_factory = logging.getLogRecordFactory()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    root = logging.getLogger()
    handler = Keep(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    level = root.level
    import core.redact

    installed = core.redact._installed
    core.redact._installed = False
    install_log_redaction()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        logging.setLogRecordFactory(before_factory)
        core.redact._installed = installed


def crashing_container(docker: Any, name: str, state: Path, s: Secrets) -> Any:
    """Writes its secrets to its log, then exits 3 the first time only (the marker survives a
    recreate: it is on a bind mount)."""
    script = (
        'echo "calling upstream with Authorization: Bearer $LOG_BEARER"; '
        'echo "PGPASSWORD=$LOG_PG psql -h db"; '
        'echo "{\\"user\\": \\"app\\", \\"password\\": \\"$LOG_JSON\\"}"; '
        "echo \"ALTER ROLE app PASSWORD '$LOG_SQL'\"; "
        'echo "cache at redis://:$LOG_REDIS@cache:6379/0"; '
        'echo "GITHUB_TOKEN=$LOG_GH AWS_SECRET_ACCESS_KEY=$LOG_AWS"; '
        "if [ -f /state/crashed ]; then exec sleep 100000; fi; touch /state/crashed; exit 3"
    )
    state.mkdir(parents=True, exist_ok=True)
    return docker.containers.run(
        BUSYBOX_IMAGE,
        ["sh", "-c", script],
        name=name,
        detach=True,
        environment={
            "POSTGRES_PASSWORD": s.container_env,
            "LOG_BEARER": s.log_bearer,
            "LOG_PG": s.log_pgpassword,
            "LOG_JSON": s.log_json,
            "LOG_SQL": s.log_sql,
            "LOG_REDIS": s.log_redis,
            "LOG_GH": s.log_github,
            "LOG_AWS": s.log_aws,
        },
        volumes={str(state): {"bind": "/state", "mode": "rw"}},
    )


def decoded(value: Any) -> Iterator[str]:
    """Every string in an exported history, with each payload's base64 data decoded."""
    if isinstance(value, dict):
        data = value.get("data")
        if isinstance(data, str) and "metadata" in value:
            try:
                yield base64.b64decode(data).decode("utf-8", errors="replace")
            except ValueError:
                yield data
        for item in value.values():
            yield from decoded(item)
    elif isinstance(value, list):
        for item in value:
            yield from decoded(item)
    elif isinstance(value, str):
        yield value


def export_history(address: str, workflow_id: str) -> str:
    done = subprocess.run(
        [str(TEMPORAL), "workflow", "show", "--address", address, "--namespace", "default"]
        + ["--workflow-id", workflow_id, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def store_dump(url: str) -> str:
    """Every row of every table of the store, as text (read as the superuser)."""
    engine = sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608
                out.append(f"{table}: {json.dumps(dict(row._mapping), default=str)}")
    engine.dispose()
    return "\n".join(out)


async def test_planted_secrets_surface_nowhere(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    postgres: Postgres,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    planted_secrets: Secrets,
    captured_logs: list[str],
) -> None:
    s = planted_secrets
    apply_roles(postgres)
    # The store as the compose file runs it: migrated by its owner, used by the run-time role.
    made = psql_initdb(
        postgres,
        {"HOMELAB_STORE_OWNER_PASSWORD": s.store_owner, "HOMELAB_STORE_APP_PASSWORD": s.store},
    )
    assert made.returncode == 0, made.stderr
    store_db = store_database(postgres)
    where = f"127.0.0.1:{postgres.port}/{store_db}"
    store_url = f"postgresql://homelab_app:{s.store}@{where}"
    owner_url = f"postgresql://homelab_owner:{s.store_owner}@{where}"
    Store(store_url, owner_url=owner_url).migrate()
    shop = new_database(postgres, "secshop")
    monkeypatch.setenv("SEC_LLM_KEY", s.llm_key)
    docker = docker_engine.client()
    docker.images.get(BUSYBOX_IMAGE).tag("local/busybox", "sec")
    name = f"sec-{uuid.uuid4().hex[:6]}"
    target = f"docker:lab/{name}"
    recreate = {
        "hypotheses": [{"statement": "the image is broken", "evidence": ["logs"]}],
        "actions": [
            {
                "tool": "docker.recreate",
                "target": target,
                "params": {"image": "local/busybox:sec", "stop_timeout": 1},
                "rationale": "run the same container on the pinned tag",
            },
            {"tool": "docker.start", "target": target, "rationale": "it exited"},
        ],
        "confidence": 0.9,
    }
    pg_target = {
        "name": "lab",
        "instances": [EXPORTER],
        "dsn": f"host=127.0.0.1 port={postgres.port} user=homelab_monitor dbname=postgres "
        f"password={s.dsn}",
        "maintenance_dsn": f"postgresql://homelab_maint:{s.maintenance_dsn}@127.0.0.1:"
        f"{postgres.port}/postgres",
        "connect_timeout": 3,
    }
    fake = FakeTelegram(token=s.telegram, chats=[CHAT]).start()
    scene: Blocked | None = None
    try:
        with fake_llm() as llm:
            api_base = llm.route("planner", plan=recreate, api_key=s.llm_key)
            async with running_stack(
                dev_env,
                docker_engine,
                tmp_path,
                bot=True,
                store={"url": store_url, "owner_url": owner_url},
                intake={"token": s.intake},
                postgres=[pg_target],
                llm={
                    "providers": [
                        {
                            "name": "planner",
                            "model": "openai/gpt-4o-mini",
                            "api_base": api_base,
                            "api_key_env": "SEC_LLM_KEY",
                            "timeout": "10s",
                        }
                    ],
                    "offer": ["docker.recreate"],  # beyond the runbook's own: a human's choice
                },
                telegram={
                    "token": s.telegram,
                    "chat_id": CHAT,
                    "base_url": fake.base_url,
                    "poll_timeout": 2,
                },
                approval={"approvers": ["telegram:111"]},
            ) as stack:
                auth = {"authorization": f"Bearer {s.intake}"}
                # 1. A crashed container, recreated on another tag after a Telegram approval.
                container = crashing_container(docker, name, tmp_path / "state", s)
                container.wait(timeout=20)
                alert = am_alert("ContainerKilled", name)
                alert["annotations"] |= {
                    "description": "health probe: curl -H 'Authorization: Basic "
                    f"{s.basic}' http://app:8080/health",
                    "runbook_url": f"see postgresql://app:{s.annotation_dsn}@db:5432/app",
                }
                response = await stack.post(alertmanager_payload(alert), headers=auth)
                assert response.status_code == 202, response.text
                message = await approval_message(fake)
                assert "docker.recreate" in message["text"]
                info = await press(fake, ALICE, message, button(message, INFO))
                assert info == "🔍 Details sent below."  # alert and evidence, in the chat
                await fake.until(lambda f: f.replies_to(CHAT, message["message_id"]))
                answer = await press(fake, ALICE, message, button(message, APPROVE))
                assert answer.startswith("✅ Approved"), answer
                docker_state = await stack.result(f"incident-{alert['fingerprint']}", 120)
                assert docker_state.outcome is Outcome.RESOLVED, docker_state.notes
                assert [(a.action.tool, a.result) for a in docker_state.actions] == [
                    ("docker.recreate", ChangeResult.APPLIED),
                    ("docker.start", ChangeResult.APPLIED),
                ]
                fresh = docker.containers.get(name)
                assert fresh.attrs["Config"]["Image"] == "local/busybox:sec"
                assert f"POSTGRES_PASSWORD={s.container_env}" in fresh.attrs["Config"]["Env"]

                # 2. A blocking session on PostgreSQL, terminated autonomously.
                scene = Blocked(postgres, shop)
                pg = pg_alert("PostgresqlLockBlocking", datname=shop)
                response = await stack.post(alertmanager_payload(pg), headers=auth)
                assert response.status_code == 202, response.text
                pg_state = await stack.result(f"incident-{pg['fingerprint']}", 90)
                assert pg_state.outcome is Outcome.RESOLVED, pg_state.notes
                assert [(a.action.tool, a.level) for a in pg_state.actions] == [
                    ("postgres.terminate_backend", RiskLevel.SOFT)
                ]
                assert not backend_exists(postgres, scene.blocker_pid)

                async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
                    changes = await http.get(f"{stack.intake_url}/changes", headers=auth)
                assert changes.status_code == 200 and len(changes.json()) == 3
                workflow_ids = [
                    w.id
                    async for w in stack.client.list_workflows(
                        f"TaskQueue = '{stack.settings.temporal.task_queue}'"
                    )
                ]
    finally:
        fake.stop()
        if scene is not None:
            scene.close()
        for leftover in docker.containers.list(all=True, filters={"name": name}):
            leftover.remove(force=True)
        docker.close()

    # The planted secrets really were there to leak (the LLM saw the logs, Telegram the preview).
    prompts = [json.dumps(call.body) for call in llm.calls()]
    assert prompts and "Bearer ***" in prompts[0] and "PGPASSWORD=***" in prompts[0]
    assert "Authorization: Basic ***" in prompts[0]
    assert len(workflow_ids) == 2

    found: dict[str, list[str]] = {}

    def scan(where: str, text: str) -> None:
        hits = s.hits(text)
        if hits:
            found[where] = hits

    address = target_host(dev_env)
    payloads: dict[str, str] = {}
    for workflow_id in workflow_ids:
        exported = export_history(address, workflow_id)
        payloads[workflow_id] = "\n".join(decoded(json.loads(exported)))
        scan(f"history {workflow_id} (raw)", exported)
        scan(f"history {workflow_id} (payloads)", payloads[workflow_id])
    # The exported payloads are the real ones: the evidence, masked, and the recreate's names.
    docker_history = payloads[f"incident-{alert['fingerprint']}"]
    assert "Bearer ***" in docker_history and "Authorization: Basic ***" in docker_history
    assert '"POSTGRES_PASSWORD"' in docker_history and "docker.recreate" in docker_history
    scan("store (every table)", store_dump(f"postgresql://postgres@{where}"))
    scan("GET /changes", changes.text)
    scan("logs", "\n".join(captured_logs))
    scan("LLM request bodies", "\n".join(prompts))
    scan("Telegram Bot API calls", "\n".join(json.dumps(c.params) for c in fake.calls))
    assert len(captured_logs) > 100 and len(fake.calls) > 3
    assert found == {}, json.dumps(found, indent=1)
