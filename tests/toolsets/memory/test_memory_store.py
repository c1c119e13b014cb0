"""The incident memory on qdrant-client's real embedded mode: store → recall by similarity within
the service and alert, idempotent re-store, embedders kept apart, no bogus vector on an embedding
failure, and what one process stored recalled by the next."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from activities.memory.activities import MemoryActivities
from activities.memory.qdrant import point_id
from activities.records import RecordActivities
from activities.store import Store
from core.config import Settings
from core.memory import RecallRequest, recall_request, state_text
from core.models import ChangeResult, Evidence, IncidentState
from tests.conftest import make_settings
from tests.fakes.embeddings import FakeEmbeddings
from tests.toolsets.memory.incidents import Step, in_activity, incident, record
from workers.lab.processes import free_port

ROOT = Path(__file__).resolve().parents[3]


def with_embedder(settings: Settings, **embedder: Any) -> Settings:
    memory = settings.memory.model_copy(
        update={"embedder": settings.memory.embedder.model_copy(update=embedder)}
    )
    return settings.model_copy(update={"memory": memory})


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def inspect_evidence(status: str, log: str) -> list[Evidence]:
    return [
        Evidence(
            key="inspect",
            tool="docker.inspect",
            target="docker:lab/web",
            ok=True,
            data={"state": {"status": status, "running": False, "exit_code": 137}},
        ),
        Evidence(key="logs", tool="docker.logs", target="", ok=True, data={"lines": [log]}),
    ]


async def remember(memory: MemoryActivities, state: IncidentState, run_id: str = "r1") -> Any:
    return await in_activity(memory.remember, state, workflow_id=state.workflow_id, run_id=run_id)


async def test_recall_finds_similar_incidents_of_its_service_and_alert_only(
    memory: MemoryActivities, records: RecordActivities
) -> None:
    web = [
        incident(
            "docker:lab/web",
            [Step("docker.start")],
            evidence=inspect_evidence("exited", "fatal: out of file descriptors"),
        )
        for _ in range(2)
    ]
    db = incident(
        "docker:lab/db",
        [Step("docker.start", rolled_back=True)],
        verified=False,
        evidence=inspect_evidence("exited", "FATAL: could not write to file: no space left"),
    )
    oom = incident("docker:lab/web", [Step("docker.update_resources")], alert="ContainerOOMKilled")
    other_service = incident("hosts:lab", [Step("hosts.restart_unit")], alert="ContainerKilled")
    for state in [*web, db, oom, other_service]:
        steps = [Step(a.action.tool, rolled_back=bool(state.rollbacks)) for a in state.actions]
        run_id = await record(records, state, steps)
        done = await remember(memory, state, run_id)
        assert done.stored, done.reason

    now = incident(
        "docker:lab/web",
        [],
        evidence=inspect_evidence("exited", "fatal: out of file descriptors"),
    )
    recall = await in_activity(memory.recall, recall_request(now))

    recalled = [p.workflow_id for p in recall.incidents]
    assert set(recalled) == {web[0].workflow_id, web[1].workflow_id, db.workflow_id}
    assert recalled[-1] == db.workflow_id  # another container, another log: least similar
    assert recall.incidents[0].score > recall.incidents[-1].score
    assert recall.incidents[0].actions == ["docker.start: verified"]
    assert recall.incidents[-1].actions == ["docker.start: rolled back"]
    assert recall.embedder == "hashing-256"
    start = recall.record("docker.start")
    assert start is not None
    assert start.line.startswith("docker.start fixed ContainerKilled on web 2 of 2 times, last ")
    assert start.line.endswith("; 1 failed verification on db")
    assert recall.record("docker.update_resources") is None  # another alert's record
    lines = recall.lines()  # for humans: the record, then the closest incidents
    assert lines[0] == start.line
    assert lines[1].startswith(f"similar ({recall.incidents[0].score:.2f}): ")
    assert lines[1].endswith("resolved (docker.start: verified)")

    strict = MemoryActivities(
        memory.settings.model_copy(
            update={"memory": memory.settings.memory.model_copy(update={"min_score": 0.99})}
        ),
        memory.store,
        vectors=memory.vectors,
    )
    close = await in_activity(strict.recall, recall_request(now))
    assert {p.workflow_id for p in close.incidents} == {w.workflow_id for w in web}


async def test_a_retried_or_replayed_remember_overwrites_its_point(
    memory: MemoryActivities,
) -> None:
    state = incident("docker:lab/web", [Step("docker.start")])
    first = await remember(memory, state, "run-1")
    again = await remember(memory, state, "run-1")  # the activity retried after a lost result
    assert first.stored and again.stored and first.point_id == again.point_id
    assert first.point_id == point_id(state.workflow_id, "run-1")
    counts = memory.vectors.count()
    assert sum(counts.values()) == 1
    later_run = await remember(memory, state, "run-2")  # the same alert re-fired: a new run
    assert later_run.point_id != first.point_id
    assert sum(memory.vectors.count().values()) == 2


async def test_embedders_never_mix_their_vectors(
    memory_factory: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeEmbeddings(dimensions=64, api_key="sk-test")
    try:
        monkeypatch.setenv("FAKE_EMBED_KEY", "sk-test")
        hashing = memory_factory(settings)
        small = memory_factory(with_embedder(settings, dimensions=128))
        provider = memory_factory(
            with_embedder(
                settings,
                model="openai/fake-embed",
                api_base=fake.api_base,
                api_key_env="FAKE_EMBED_KEY",
            )
        )
        a = incident("docker:lab/web", [Step("docker.start")])
        b = incident("docker:lab/web", [Step("docker.start")])
        c = incident("docker:lab/web", [Step("docker.start")])
        assert (await remember(hashing, a)).stored
        assert (await remember(small, b)).stored
        done = await remember(provider, c)
        assert done.stored, done.reason
        assert provider.embedder.name == "openai-fake-embed-64"
        assert fake.requests[-1].body["input"] == [state_text(c)]

        query = recall_request(incident("docker:lab/web", []))
        seen = {
            name: {p.workflow_id for p in (await in_activity(m.recall, query)).incidents}
            for name, m in (("hashing", hashing), ("small", small), ("provider", provider))
        }
        assert seen == {
            "hashing": {a.workflow_id},
            "small": {b.workflow_id},
            "provider": {c.workflow_id},
        }
        counts = hashing.vectors.count()
        assert {n.split("--")[0] for n in counts} == {
            "incidents-hashing-256",
            "incidents-hashing-128",
            "incidents-openai-fake-embed-64",
        }
        assert all(n == 1 for n in counts.values())
    finally:
        fake.stop()


async def test_an_embedding_failure_stores_nothing_and_recall_keeps_the_record(
    memory_factory: Any,
    settings: Settings,
    records: RecordActivities,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeEmbeddings(dimensions=32, api_key="sk-fail")
    monkeypatch.setenv("FAKE_EMBED_KEY", "sk-fail")
    try:
        memory = memory_factory(
            with_embedder(
                settings,
                model="openai/fake-embed",
                api_base=fake.api_base,
                api_key_env="FAKE_EMBED_KEY",
            )
        )
        state = incident("docker:lab/web", [Step("docker.start")])
        await record(records, state, [Step("docker.start")])
        for behaviour, why in (
            ("zeros", "zero vector"),
            ("nan", "non-finite"),
            ("error", "InternalServerError"),
        ):
            fake.behaviour = behaviour
            before = sample(
                "homelab_memory_embedding_failures_total",
                {"embedder": "openai-fake-embed", "stage": "remember"},
            )
            done = await remember(memory, state)
            assert not done.stored and "embedding failed" in done.reason, done
            assert why in done.reason, done.reason
            after = sample(
                "homelab_memory_embedding_failures_total",
                {"embedder": "openai-fake-embed", "stage": "remember"},
            )
            assert after == before + 1
        assert memory.vectors.count() == {}  # no collection, no point, no zero vector

        recall = await in_activity(memory.recall, recall_request(state))
        assert recall.incidents == []
        assert any("embedding failed" in n for n in recall.notes)
        assert recall.record("docker.start") is not None  # the SQL record does not need vectors

        fake.behaviour = "ok"
        done = await remember(memory, state)
        assert done.stored
        stored = memory.vectors.get(
            memory.embedder.name, "docker", "ContainerKilled", done.point_id
        )
        assert stored is not None and any(v != 0 for v in stored["vector"])
    finally:
        fake.stop()


async def test_an_unreachable_qdrant_server_never_fails_an_incident(
    memory_factory: Any, tmp_path: Path, store: Store, records: RecordActivities
) -> None:
    settings = make_settings(tmp_path, memory={"qdrant": f"http://127.0.0.1:{free_port()}"})
    memory = memory_factory(settings)
    state = incident("docker:lab/web", [Step("docker.start")])
    await record(records, state, [Step("docker.start")])
    before = sample("homelab_memory_unavailable_total", {"stage": "remember"})
    done = await remember(memory, state)
    assert not done.stored and done.reason.startswith("memory unavailable")
    assert sample("homelab_memory_unavailable_total", {"stage": "remember"}) == before + 1
    recall = await in_activity(memory.recall, recall_request(state))
    assert recall.incidents == [] and "memory unavailable" in recall.notes[0]
    assert recall.record("docker.start") is not None


async def test_what_one_process_stored_the_next_recalls(
    memory: MemoryActivities, settings: Settings, tmp_path: Path
) -> None:
    state = incident("docker:lab/web", [Step("docker.start")], summary="web exited with code 137")
    settings_file, state_file = tmp_path / "settings.json", tmp_path / "state.json"
    dumped = settings.model_dump(mode="json")  # secrets are masked in a dump: the URL by hand
    dumped["store"]["url"] = settings.store_url
    settings_file.write_text(json.dumps(dumped))
    state_file.write_text(state.model_dump_json())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.toolsets.memory.remember_once",
            str(settings_file),
            str(state_file),
            "run-7",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["stored"] is True

    recall = await in_activity(memory.recall, recall_request(state))  # this process, later
    assert [p.workflow_id for p in recall.incidents] == [state.workflow_id]
    assert recall.incidents[0].score > 0.99


async def test_recall_requests_stay_small_and_skip_noise() -> None:
    lines = [f"2026-11-27T03:00:{i:02d}Z worker {i} crashed" for i in range(200)]
    state = incident(
        "docker:lab/web",
        [],
        evidence=[
            Evidence(
                key="logs",
                tool="docker.logs",
                target="docker:lab/web",
                ok=True,
                data={"lines": lines, "id": "f" * 64, "started_at": "2026-11-27T03:00:00Z"},
            ),
            Evidence(key="inspect", tool="docker.inspect", target="", ok=False),
        ],
    )
    request = recall_request(state)
    assert isinstance(request, RecallRequest) and len(request.model_dump_json()) < 3000
    assert "worker 199 crashed" in request.text  # the log's end, where the cause is
    assert "f" * 64 not in request.text and "started_at" not in request.text
    assert "inspect failed" in request.text
    assert request.text == state_text(state)


def test_outcome_rows_ignore_dry_runs_and_skips(store: Store) -> None:
    state = incident(
        "docker:lab/web",
        [Step("docker.start", result=ChangeResult.SKIPPED), Step("docker.restart")],
    )
    state.actions[1].dry_run = True
    store.record_incident(state, "r1")
    assert store.outcomes() == []
