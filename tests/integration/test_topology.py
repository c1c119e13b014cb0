"""A Docker engine that goes away, end to end on the dev server and a private dockerd of this test's
own (it is stopped): ten container alerts make one engine incident with ten waiting members, no
container write and no container notification while the engine is down; once it is back, each
container is looked at again and started only if it is still down."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.topology import parent_alert
from core.models import ChangeResult, IncidentState, Outcome, Phase, TargetRef
from tests.integration.stack import alertmanager_payload, am_alert, run_container, running_stack
from workers.lab.dockerd import DockerEngine
from workflows.incident import IncidentWorkflow

pytestmark = pytest.mark.integration

CHILDREN = 10


async def test_an_engine_that_goes_away_makes_one_incident_and_its_containers_wait_for_it(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    short = Path(tempfile.mkdtemp(prefix="eng-", dir="/tmp"))  # unix socket paths are short
    engine = DockerEngine(short).start()
    try:
        async with running_stack(dev_env, engine, tmp_path) as stack:
            docker = stack.docker()
            tag = uuid.uuid4().hex[:6]
            names = [f"app{i}-{tag}" for i in range(CHILDREN)]
            for i, name in enumerate(names):
                policy = {"Name": "always"} if i % 2 == 0 else {"Name": "no"}
                run_container(docker, name, "exec sleep 100000", init=True, restart_policy=policy)
            docker.close()

            assert engine.proc is not None
            engine.proc.stop(grace=15)  # dockerd goes away; its containers stop with it
            engine.proc = None
            alerts = [am_alert("ContainerKilled", name) for name in names]
            assert (await stack.post(alertmanager_payload(*alerts))).status_code == 202

            parent_id = f"incident-{parent_alert(TargetRef(service='docker', target='lab'), '').fingerprint}"
            parent = await stack.wait_state(
                parent_id, lambda s: len(s.joined) == CHILDREN and s.phase is Phase.VERIFY, 120
            )
            assert {j.name for j in parent.joined} == {"ContainerKilled"}
            assert all(j.waiting for j in parent.joined)
            children = [f"incident-{a['fingerprint']}" for a in alerts]
            for wid in children:
                child: IncidentState = await stack.handle(wid).query(IncidentWorkflow.get_state)
                assert child.joined_to == parent_id and child.actions == [] and child.plan is None
                assert child.notifications_sent == 0
            assert stack.store.list_changes() == []  # no write while the engine is down
            assert parent.notifications_sent == 2  # the engine's: opened, and its plan (wait)

            engine.start()
            done = await stack.result(parent_id, timeout=120)
            assert done.outcome is Outcome.RECOVERED and done.actions == []
            for i, wid in enumerate(children):
                state = await stack.result(wid, timeout=120)
                if i % 2 == 0:  # the engine started it again (restart policy): nothing to do
                    assert state.outcome is Outcome.RECOVERED, (names[i], state.notes)
                    assert state.actions == [] and state.notifications_sent == 0
                else:  # still down: started, verified, and said so
                    assert state.outcome is Outcome.RESOLVED, (names[i], state.notes)
                    assert [(a.action.tool, a.result) for a in state.actions] == [
                        ("docker.start", ChangeResult.APPLIED)
                    ]
                    assert state.notifications_sent > 0
            writes = stack.store.list_changes()
            assert sorted(c.target for c in writes) == sorted(
                f"docker:lab/{name}" for i, name in enumerate(names) if i % 2 == 1
            )
    finally:
        engine.stop()
        shutil.rmtree(short, ignore_errors=True)
