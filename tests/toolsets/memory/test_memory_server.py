"""The incident memory against a Qdrant server's REST API (the compose file's Qdrant): one
collection per embedder with keyword indexes, the service and alert as a filter, the API key on
every request, and a failing or refusing server never failing an incident."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.memory.activities import MemoryActivities
from activities.records import RecordActivities
from activities.store import Store
from core.memory import recall_request
from tests.conftest import make_settings
from tests.fakes.qdrant import FakeQdrant
from tests.toolsets.memory.incidents import Step, in_activity, incident, record


@pytest.fixture
def qdrant() -> Iterator[FakeQdrant]:
    server = FakeQdrant(api_key="qdrant-secret")
    yield server
    server.stop()


def server_memory(tmp_path: Path, store: Store, url: str, key: str) -> MemoryActivities:
    settings = make_settings(tmp_path, memory={"qdrant": url, "api_key": key})
    return MemoryActivities(settings, store)


async def remember(memory: MemoryActivities, state: Any, run_id: str = "r1") -> Any:
    return await in_activity(memory.remember, state, workflow_id=state.workflow_id, run_id=run_id)


async def test_one_collection_per_embedder_filtered_by_service_and_alert(
    qdrant: FakeQdrant, tmp_path: Path, store: Store, records: RecordActivities
) -> None:
    memory = server_memory(tmp_path, store, qdrant.url, "qdrant-secret")
    web = incident("docker:lab/web", [Step("docker.start")])
    oom = incident("docker:lab/web", [Step("docker.update_resources")], alert="ContainerOOMKilled")
    host = incident("hosts:lab", [Step("hosts.restart_unit")])
    for state in (web, oom, host):
        await record(records, state, [Step(a.action.tool) for a in state.actions])
        done = await remember(memory, state)
        assert done.stored and done.collection == "incidents-hashing-256", done
    again = await remember(memory, web)  # a retried activity: the same point
    assert again.point_id == (await remember(memory, web)).point_id

    assert memory.vectors.count() == {"incidents-hashing-256": 3}
    assert qdrant.indexes == {
        "incidents-hashing-256": {"service": "keyword", "alert": "keyword", "target": "keyword"}
    }
    assert len(qdrant.calls("create")) == 1
    assert all(r.header("api-key") == "qdrant-secret" for r in qdrant.requests)

    recall = await in_activity(memory.recall, recall_request(incident("docker:lab/web", [])))
    assert [p.workflow_id for p in recall.incidents] == [web.workflow_id]
    sent = qdrant.calls("query")[-1].body
    conditions = {c["key"]: c["match"]["value"] for c in sent["filter"]["must"]}
    assert conditions == {"service": "docker", "alert": "ContainerKilled"}
    assert sent["limit"] == 5 and sent["score_threshold"] == 0.5


async def test_a_refusing_or_failing_server_stores_nothing_and_recall_goes_on(
    qdrant: FakeQdrant, tmp_path: Path, store: Store, records: RecordActivities
) -> None:
    state = incident("docker:lab/web", [Step("docker.start")])
    await record(records, state, [Step("docker.start")])
    wrong_key = server_memory(tmp_path, store, qdrant.url, "not-the-key")
    done = await remember(wrong_key, state)
    assert not done.stored and done.reason.startswith("memory unavailable")
    assert "not-the-key" not in done.reason

    memory = server_memory(tmp_path, store, qdrant.url, "qdrant-secret")
    qdrant.fail_with = 503
    done = await remember(memory, state)
    assert not done.stored and "503" in done.reason
    recall = await in_activity(memory.recall, recall_request(state))
    assert recall.incidents == [] and recall.notes[0].startswith("no similar incidents: memory")
    assert recall.record("docker.start") is not None

    qdrant.fail_with = None
    assert (await remember(memory, state)).stored
