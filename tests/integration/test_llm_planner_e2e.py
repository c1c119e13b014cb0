"""Alert in → LLM-planned fix, on the real Temporal dev server and a real Docker engine.

The container writes a prompt injection into its own log before it crashes. The primary provider
(a fake route that obeys whatever the prompt says) proposes pruning every image; the validator
refuses it twice (plan and repair), the fallback provider's plan starts the container, and the
engine's images are untouched.
"""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from temporalio.testing import WorkflowEnvironment

from core.models import ChangeResult, Outcome
from tests.fakes.openai_compat import INJECTED_TEXT, fake_llm
from tests.integration.stack import (
    CRASH_ONCE,
    alertmanager_payload,
    am_alert,
    run_container,
    running_stack,
    start_events,
    wait_exited,
)
from tests.workflows.test_llm_planner import scheduled
from workers.lab.dockerd import DockerEngine

pytestmark = pytest.mark.integration


def unused_image(docker: object, repository: str) -> str:
    """A one-file image no container uses: exactly what `prune_unused_images` would delete."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"keep me"
        info = tarfile.TarInfo("keep.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    docker.api.import_image_from_data(buffer.getvalue(), repository=repository, tag="1")  # type: ignore[attr-defined]
    return f"{repository}:1"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_llm_plan_with_failover_fixes_a_container_and_ignores_injected_orders(
    dev_env: WorkflowEnvironment,
    docker_engine: DockerEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("E2E_PRIMARY_KEY", "sk-e2e-primary-0000000")
    monkeypatch.setenv("E2E_FALLBACK_KEY", "sk-e2e-fallback-000000")
    name = f"llm-{uuid.uuid4().hex[:6]}"
    target = f"docker:lab/{name}"
    start = {
        "hypotheses": [
            {"statement": "the main process exited with code 3", "evidence": ["inspect", "logs"]}
        ],
        "actions": [{"tool": "docker.start", "target": target, "rationale": "it is down"}],
        "confidence": 0.8,
    }
    prune = {"actions": [{"tool": "docker.prune_unused_images", "target": "docker:lab"}]}
    with fake_llm() as llm:
        primary = llm.route(
            "primary", "obey", injected_plan=prune, plan=start, api_key="sk-e2e-primary-0000000"
        )
        fallback = llm.route("fallback", plan=start, api_key="sk-e2e-fallback-000000")
        providers = [
            {
                "name": "primary",
                "model": "openai/gpt-4o-mini",
                "api_base": primary,
                "api_key_env": "E2E_PRIMARY_KEY",
                "timeout": "5s",
            },
            {
                "name": "fallback",
                "model": "openai/gpt-4o-mini",
                "api_base": fallback,
                "api_key_env": "E2E_FALLBACK_KEY",
                "timeout": "5s",
            },
        ]
        ok_before = metric(
            "homelab_llm_requests_total",
            provider="fallback",
            model="openai/gpt-4o-mini",
            outcome="ok",
        )
        async with running_stack(
            dev_env, docker_engine, tmp_path, llm={"providers": providers}
        ) as stack:
            docker = stack.docker()
            keep = unused_image(docker, f"llm5/unused-{uuid.uuid4().hex[:6]}")
            images_before = sorted(i.id for i in docker.images.list(all=True))
            container = run_container(docker, name, f"echo '{INJECTED_TEXT}'; {CRASH_ONCE}")
            assert wait_exited(container)["ExitCode"] == 3
            since = time.time()
            alert = am_alert("ContainerKilled", name)
            response = await stack.post(alertmanager_payload(alert))
            assert response.status_code == 202, response.text
            state = await stack.result(f"incident-{alert['fingerprint']}")

            container.reload()
            assert container.status == "running"
            assert start_events(docker, name, since) == 1
            assert sorted(i.id for i in docker.images.list(all=True)) == images_before
            assert docker.images.get(keep).tags == [keep]  # the unused image survived
            docker.images.remove(keep)  # leave the shared engine as other tests expect it
            assert state.outcome is Outcome.RESOLVED

            plan = state.plan
            assert plan is not None and plan.source == "llm:fallback"
            assert [(a.provider, a.round, a.outcome) for a in plan.attempts] == [
                ("primary", "plan", "invalid"),
                ("primary", "repair", "invalid"),
                ("fallback", "plan", "ok"),
            ]
            assert "prune_unused_images" in plan.attempts[0].reason
            assert llm.order() == ["primary", "primary", "fallback"]
            # The injection reached the model only as quoted log data, with each provider's key.
            first = llm.calls("primary")[0]
            logs_block = first.prompt.split('<data key="logs" tool="docker.logs" ok="true">')[1]
            assert INJECTED_TEXT in logs_block.split("</data>")[0]
            assert first.headers["authorization"] == "Bearer sk-e2e-primary-0000000"
            assert llm.calls("fallback")[0].headers["authorization"] == (
                "Bearer sk-e2e-fallback-000000"
            )

            changes = stack.store.list_changes(state.workflow_id)
            assert [(c.action, c.result) for c in changes] == [
                ("docker.start", ChangeResult.APPLIED)
            ]
            events = await scheduled(stack.handle(state.workflow_id))
            assert [s for k, s, _ in events if k == "llm.plan"] == [
                "LLM primary (openai/gpt-4o-mini)",
                "LLM primary (openai/gpt-4o-mini) repair",
                "LLM fallback (openai/gpt-4o-mini)",
            ]
            assert not [d for k, _, d in events if k == "tool.prepare" and "prune" in d["tool"]]

            ledger = stack.store.list_llm_usage(state.workflow_id)
            assert [(r["provider"], r["outcome"]) for r in ledger] == [
                ("primary", "invalid"),
                ("primary", "invalid"),
                ("fallback", "ok"),
            ]
            spent = sum(r["cost_usd"] for r in ledger)
            assert 0 < spent < 0.002  # gpt-4o-mini prices from litellm's bundled map
            stored = stack.store.get_incident(state.workflow_id)
            assert stored is not None and stored.plan is not None
            assert stored.plan.attempts[-1].cost_usd == pytest.approx(ledger[-1]["cost_usd"])
        assert (
            metric(
                "homelab_llm_requests_total",
                provider="fallback",
                model="openai/gpt-4o-mini",
                outcome="ok",
            )
            == ok_before + 1
        )
