"""Every Docker tool against the real engine: reads, exact dry-runs that change nothing,
compensations that restore, retries that never act twice, and typed errors."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker as docker_sdk
import pytest

from activities.catalog import TargetClients
from activities.tools import ToolRunner
from activities.toolsets import default_catalog
from core.config import Settings
from core.models import Reversibility, RiskLevel, TargetRef, ToolCall, ToolErrorKind, ToolResult
from workers.lab.dockerd import BUSYBOX_IMAGE, DockerEngine

pytestmark = pytest.mark.integration


@pytest.fixture
def runner(docker_engine: DockerEngine) -> Iterator[ToolRunner]:
    settings = Settings(
        docker=[
            {"name": "lab", "url": docker_engine.url},
            {"name": "gone", "url": "unix:///nonexistent/docker.sock", "timeout": 2},
        ]
    )
    clients = TargetClients(settings)
    yield ToolRunner(default_catalog(), clients)
    clients.close()


@pytest.fixture
def engine(docker_engine: DockerEngine) -> Iterator[docker_sdk.DockerClient]:
    client = docker_engine.client()
    yield client
    client.close()


def ref(resource: str = "", target: str = "lab") -> TargetRef:
    return TargetRef(service="docker", target=target, resource=resource)


async def run(runner: ToolRunner, tool: str, resource: str = "", **params: Any) -> ToolResult:
    return await runner.run(ToolCall(tool=tool, target=ref(resource), params=params))


@contextlib.contextmanager
def container(
    engine: docker_sdk.DockerClient, command: str = "exec sleep 100000", **kwargs: Any
) -> Iterator[Any]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    c = engine.containers.run(
        BUSYBOX_IMAGE, ["sh", "-c", command], name=name, detach=True, **kwargs
    )
    try:
        yield c
    finally:
        with contextlib.suppress(docker_sdk.errors.NotFound):
            engine.containers.get(name).remove(force=True)


async def test_read_tools(runner: ToolRunner, engine: docker_sdk.DockerClient) -> None:
    with container(
        engine,
        "echo hello-from-test; exec sleep 100000",
        mem_limit="64m",
        healthcheck={"test": ["CMD", "true"], "interval": 200_000_000},
    ) as c:
        volume = engine.volumes.create(f"orphan-{uuid.uuid4().hex[:6]}")
        try:
            inspect = await run(runner, "docker.inspect", c.name)
            assert inspect.ok and inspect.data["state"]["running"] is True
            assert inspect.data["memory_limit"] == 64 * 1024**2 and inspect.data["healthcheck"][
                "Test"
            ] == ["CMD", "true"]
            logs = await run(runner, "docker.logs", c.name, tail=10)
            assert any("hello-from-test" in line for line in logs.data["lines"])
            listed = await run(runner, "docker.containers")
            assert c.name in [row["name"] for row in listed.data["containers"]]
            images = await run(runner, "docker.images")
            assert (
                any(BUSYBOX_IMAGE in i["tags"] for i in images.data["images"])
                and images.data["total_size"] > 0
            )
            volumes = await run(runner, "docker.volumes")
            assert volume.name in volumes.data["orphaned"]
            networks = await run(runner, "docker.networks")
            assert {"host", "none"} <= {n["name"] for n in networks.data["networks"]}
            stats = await run(runner, "docker.stats", c.name)
            assert (
                stats.data["running"]
                and 0 < stats.data["memory_usage"] < stats.data["memory_limit"] == 64 * 1024**2
            )
            engine_info = await run(runner, "docker.engine")
            assert (
                engine_info.data["server_version"] and engine_info.data["containers_running"] >= 1
            )
            assert "reclaimable" in engine_info.data
        finally:
            volume.remove()


async def test_typed_errors(runner: ToolRunner) -> None:
    missing = await run(runner, "docker.inspect", "no-such-container")
    assert (
        not missing.ok
        and missing.error is not None
        and missing.error.kind is ToolErrorKind.NOT_FOUND
    )
    bad = await run(runner, "docker.update_resources", "x", memory="1k")
    assert (
        bad.error is not None
        and bad.error.kind is ToolErrorKind.INVALID
        and "6 MiB" in bad.error.message
    )
    unknown_target = await runner.run(
        ToolCall(tool="docker.inspect", target=ref("x", target="nope"))
    )
    assert unknown_target.error is not None and unknown_target.error.kind is ToolErrorKind.NOT_FOUND
    unreachable = await runner.run(ToolCall(tool="docker.inspect", target=ref("x", target="gone")))
    assert unreachable.error is not None and unreachable.error.kind is ToolErrorKind.UNREACHABLE


async def test_update_resources_dry_run_apply_compensate_and_retry(
    runner: ToolRunner, engine: docker_sdk.DockerClient
) -> None:
    with container(engine, mem_limit="32m", memswap_limit="48m") as c:
        call = ToolCall(
            tool="docker.update_resources", target=ref(c.name), params={"memory": "64m"}
        )
        prepared = await runner.prepare(call)
        assert (
            prepared.preview
            == f"memory 32 MiB → 64 MiB, memory-swap 48 MiB → 80 MiB on container {c.name}@lab"
        )
        assert prepared.reversibility is Reversibility.COMPENSATED and not prepared.noop
        dry = await runner.run(call.model_copy(update={"dry_run": True}))
        assert dry.data["preview"] == prepared.preview
        c.reload()
        assert c.attrs["HostConfig"]["Memory"] == 32 * 1024**2  # dry-run changed nothing

        applied = call.model_copy(update={"before": prepared.before, "change_id": "c1"})
        assert (await runner.run(applied)).ok
        assert (await runner.run(applied)).ok  # a retried activity: no error, no second change
        c.reload()
        assert (c.attrs["HostConfig"]["Memory"], c.attrs["HostConfig"]["MemorySwap"]) == (
            64 * 1024**2,
            80 * 1024**2,
        )

        assert prepared.compensation is not None
        undo = await runner.prepare(prepared.compensation)
        assert (
            await runner.run(prepared.compensation.model_copy(update={"before": undo.before}))
        ).ok
        c.reload()
        assert (c.attrs["HostConfig"]["Memory"], c.attrs["HostConfig"]["MemorySwap"]) == (
            32 * 1024**2,
            48 * 1024**2,
        )


async def test_start_stop_restart_are_guarded(
    runner: ToolRunner, engine: docker_sdk.DockerClient
) -> None:
    with container(engine) as c:
        stop = ToolCall(tool="docker.stop", target=ref(c.name), params={"timeout": 1})
        prepared = await runner.prepare(stop)
        assert prepared.compensation is not None and prepared.compensation.tool == "docker.start"
        assert (await runner.run(stop.model_copy(update={"before": prepared.before}))).ok
        c.reload()
        assert c.status == "exited"
        noop = await runner.prepare(stop)
        assert noop.noop and noop.preview.startswith("no-op")

        start = ToolCall(tool="docker.start", target=ref(c.name))
        before = (await runner.prepare(start)).before
        first = await runner.run(start.model_copy(update={"before": before}))
        c.reload()
        started_at = c.attrs["State"]["StartedAt"]
        again = await runner.run(start.model_copy(update={"before": before}))
        c.reload()
        assert first.ok and again.ok and c.attrs["State"]["StartedAt"] == started_at  # started once

        restart = ToolCall(tool="docker.restart", target=ref(c.name), params={"timeout": 1})
        before = (await runner.prepare(restart)).before
        assert (await runner.run(restart.model_copy(update={"before": before}))).ok
        c.reload()
        restarted_at = c.attrs["State"]["StartedAt"]
        assert restarted_at != started_at
        retried = await runner.run(restart.model_copy(update={"before": before}))
        c.reload()
        assert retried.ok and c.attrs["State"]["StartedAt"] == restarted_at  # not restarted twice


async def test_restart_of_a_process_that_ignores_sigterm_uses_the_stop_timeout(
    runner: ToolRunner, engine: docker_sdk.DockerClient
) -> None:
    """PID 1 here ignores SIGTERM (a shell as PID 1 has no default handler): a restart waits the
    whole stop timeout, so the timeout is a parameter and the preview says how long it may take."""
    ignores_term = "trap '' TERM; while true; do sleep 1; done"
    name = f"t-{uuid.uuid4().hex[:8]}"  # docker-py's run() has no stop_timeout: the API has
    engine.api.create_container(
        BUSYBOX_IMAGE, ["sh", "-c", ignores_term], name=name, stop_timeout=2
    )
    engine.api.start(name)
    c = engine.containers.get(name)
    try:
        own = await runner.prepare(ToolCall(tool="docker.restart", target=ref(c.name)))
        assert "SIGKILL after 2s: it may take up to 2s to stop" in own.preview  # the container's

        call = ToolCall(tool="docker.restart", target=ref(c.name), params={"timeout": 1})
        prepared = await runner.prepare(call)
        assert "SIGTERM, then SIGKILL after 1s: it may take up to 1s to stop" in prepared.preview
        started = time.monotonic()
        result = await runner.run(call.model_copy(update={"before": prepared.before}))
        elapsed = time.monotonic() - started
        assert result.ok and result.data["running"]
        assert elapsed < 6, f"restart took {elapsed:.1f}s with a 1 s stop timeout"
        c.reload()
        assert c.attrs["State"]["StartedAt"] != prepared.before["started_at"]
    finally:
        c.remove(force=True)


async def test_a_write_that_cannot_be_prepared_keeps_its_real_level(runner: ToolRunner) -> None:
    """The change log once showed HARD for a SOFT tool whose preparation failed."""
    prepared = await runner.prepare(ToolCall(tool="docker.restart", target=ref("no-such-thing")))
    assert prepared.error is not None and prepared.error.kind is ToolErrorKind.NOT_FOUND
    assert prepared.default_level is RiskLevel.SOFT


async def test_prune_images_removes_exactly_what_was_previewed(
    runner: ToolRunner, engine: docker_sdk.DockerClient, docker_engine: DockerEngine
) -> None:
    def import_image(content: bytes) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("marker")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        engine.api.import_image_from_data(buffer.getvalue())

    import_image(uuid.uuid4().bytes)  # untagged: dangling
    call = ToolCall(tool="docker.prune_images", target=ref())
    prepared = await runner.prepare(call)
    assert prepared.reversibility is Reversibility.IRREVERSIBLE
    ids = [i["id"] for i in prepared.before["images"]]
    assert ids and prepared.preview.startswith(f"remove {len(ids)} dangling image(s)")
    import_image(uuid.uuid4().bytes)  # appears after the preview: must survive
    result = await runner.run(call.model_copy(update={"before": prepared.before}))
    assert result.ok and sorted(result.data["removed"]) == sorted(ids)
    remaining = [i.id for i in engine.images.list(filters={"dangling": True})]
    assert len(remaining) == 1 and remaining[0] not in ids
    engine.images.remove(remaining[0])
    assert BUSYBOX_IMAGE in [t for i in engine.images.list() for t in i.tags]


async def test_clear_logs_truncates_the_json_log(
    runner: ToolRunner, engine: docker_sdk.DockerClient
) -> None:
    with container(
        engine,
        "i=0; while [ $i -lt 2000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; exec sleep 100000",
    ) as c:
        time.sleep(1)
        call = ToolCall(tool="docker.clear_logs", target=ref(c.name))
        prepared = await runner.prepare(call)
        assert prepared.before["size"] > 50_000 and "truncate the json-file log" in prepared.preview
        assert (await runner.run(call.model_copy(update={"before": prepared.before}))).ok
        assert (await run(runner, "docker.logs", c.name, tail=5)).data["lines"] == []


async def test_recreate_on_another_tag_and_back(
    runner: ToolRunner, engine: docker_sdk.DockerClient
) -> None:
    engine.images.get(BUSYBOX_IMAGE).tag("local/busybox", "v2")
    with container(
        engine,
        "exec sleep 100000",
        environment={"APP_MODE": "prod", "POSTGRES_PASSWORD": "recreate-pw-0451"},
        mem_limit="48m",
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
        labels={"app": "web"},
    ) as c:
        call = ToolCall(
            tool="docker.recreate",
            target=ref(c.name),
            params={"image": "local/busybox:v2", "stop_timeout": 1},
        )
        prepared = await runner.prepare(call)
        assert prepared.preview.startswith(
            f"recreate container {c.name}@lab: image {BUSYBOX_IMAGE} → local/busybox:v2 "
            "(same config: 2 env vars, 0 mounts, network default, restart policy on-failure)"
        )
        # The before-state names what the new container keeps; values never leave the engine.
        assert prepared.before["env"] == ["APP_MODE", "POSTGRES_PASSWORD"]
        assert prepared.before["labels"] == ["app"] and prepared.before["id"] == c.id
        assert "recreate-pw-0451" not in prepared.model_dump_json()
        assert "prod" not in json.dumps(prepared.before)
        result = await runner.run(
            call.model_copy(update={"before": prepared.before, "change_id": "abcdef12"})
        )
        assert result.ok, result.error
        assert "recreate-pw-0451" not in result.model_dump_json()
        fresh = engine.containers.get(c.name)
        assert fresh.id != c.id and fresh.status == "running"
        assert fresh.attrs["Config"]["Image"] == "local/busybox:v2"
        assert {"APP_MODE=prod", "POSTGRES_PASSWORD=recreate-pw-0451"} <= set(
            fresh.attrs["Config"]["Env"]
        )
        assert fresh.attrs["Config"]["Labels"]["app"] == "web"
        assert fresh.attrs["HostConfig"]["Memory"] == 48 * 1024**2
        assert fresh.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
        assert [
            x.name
            for x in engine.containers.list(all=True)
            if x.name.startswith(f"{c.name}-replaced")
        ] == []

        assert prepared.compensation is not None and prepared.compensation.params == {
            "image": BUSYBOX_IMAGE
        }
        undo = await runner.prepare(prepared.compensation)
        assert (
            await runner.run(prepared.compensation.model_copy(update={"before": undo.before}))
        ).ok
        assert engine.containers.get(c.name).attrs["Config"]["Image"] == BUSYBOX_IMAGE

        missing = await runner.run(
            ToolCall(tool="docker.recreate", target=ref(c.name), params={"image": "local/none:1"})
        )
        assert missing.error is not None and missing.error.kind is ToolErrorKind.NOT_FOUND
        assert (
            engine.containers.get(c.name).status == "running"
        )  # untouched by the refused recreate


async def test_recreate_refuses_a_container_replaced_since_it_was_prepared(
    runner: ToolRunner, engine: docker_sdk.DockerClient
) -> None:
    engine.images.get(BUSYBOX_IMAGE).tag("local/busybox", "v3")
    with container(engine, "exec sleep 100000") as c:
        call = ToolCall(
            tool="docker.recreate", target=ref(c.name), params={"image": "local/busybox:v3"}
        )
        prepared = await runner.prepare(call)
        c.remove(force=True)  # someone else recreates it (same name, same image, new config)
        other = engine.containers.run(
            BUSYBOX_IMAGE, ["sleep", "100000"], name=c.name, detach=True, environment={"X": "1"}
        )
        result = await runner.run(call.model_copy(update={"before": prepared.before}))
        assert result.error is not None and result.error.kind is ToolErrorKind.CONFLICT
        assert "was replaced since this change was prepared" in result.error.message
        assert engine.containers.get(c.name).id == other.id  # untouched
        assert engine.containers.get(c.name).attrs["Config"]["Image"] == BUSYBOX_IMAGE
