"""`homelab-agents doctor`: is every configured piece reachable, and is the setup safe?"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
from pydantic import BaseModel
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client

from activities.catalog import Catalog
from activities.runbooks import RunbookError, load_runbooks
from activities.store import Store
from core.config import LLMProvider, Settings
from core.redact import redact_text
from core.targets import HttpTarget
from workers.temporal_client import address, connect


class Finding(BaseModel):
    check: str
    target: str
    ok: bool
    detail: str
    warning: bool = False


async def _probe(check: str, name: str, fn: Any, *args: Any) -> Finding:
    try:
        detail = await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout=15)
        return Finding(check=check, target=name, ok=True, detail=str(detail))
    except Exception as exc:
        return Finding(
            check=check, target=name, ok=False, detail=redact_text(f"{type(exc).__name__}: {exc}")
        )


def _http_ready(target: HttpTarget) -> str:
    verify: bool | str = target.verify_tls
    response = httpx.get(target.url.rstrip("/") + "/-/ready", timeout=target.timeout, verify=verify)
    response.raise_for_status()
    return f"ready ({response.status_code})"


def _llm_provider(provider: LLMProvider) -> str:
    """Configuration only (no paid call): the key is set, and a self-hosted endpoint answers."""
    if provider.api_key_env and not os.environ.get(provider.api_key_env):
        raise RuntimeError(f"{provider.api_key_env} is not set (the key of {provider.model})")
    if provider.api_base:
        response = httpx.get(provider.api_base.rstrip("/") + "/models", timeout=5, trust_env=False)
        if response.status_code >= 500:
            raise RuntimeError(f"{provider.api_base} answered {response.status_code}")
        return f"{provider.model} at {provider.api_base} (HTTP {response.status_code})"
    return f"{provider.model} ({provider.tier}), key in {provider.api_key_env or 'the provider default'}"


async def _site(client: Client, settings: Settings, site: str) -> Finding:
    """A site's pollers, as Temporal sees its task queue: none means its incidents wait."""
    queue = settings.site_queue(site)
    try:
        desc = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
        )
    except Exception as exc:
        return Finding(check="site", target=site, ok=False, detail=f"{queue}: {exc}")
    pollers = [p.identity for p in desc.pollers]
    if not pollers:
        return Finding(
            check="site",
            target=site,
            ok=False,
            detail=f"no worker polls {queue}: start `homelab-agents worker --site {site}` there",
        )
    return Finding(
        check="site", target=site, ok=True, detail=f"{queue}: {len(pollers)} poller(s) {pollers}"
    )


async def run_doctor(settings: Settings, catalog: Catalog) -> list[Finding]:
    findings: list[Finding] = []
    client: Client | None = None
    try:
        client = await asyncio.wait_for(connect(settings), timeout=10)
        info = await client.service_client.workflow_service.get_system_info(GetSystemInfoRequest())
        findings.append(
            Finding(
                check="temporal",
                target=address(settings),
                ok=True,
                detail=f"server {info.server_version or 'reachable'}, namespace {settings.temporal.namespace}",
            )
        )
    except Exception as exc:
        hint = "" if settings.temporal.address else " (is `homelab-agents up` running?)"
        findings.append(
            Finding(check="temporal", target=address(settings), ok=False, detail=f"{exc}{hint}")
        )

    def store_check() -> str:
        store = Store(settings.store_url)
        try:
            return f"{store.dialect}, schema version {store.schema_version()}"
        finally:
            store.close()

    findings.append(await _probe("store", redact_text(settings.store_url), store_check))
    try:
        runbooks = load_runbooks(catalog, settings.runbook_dirs)
        findings.append(
            Finding(check="runbooks", target="", ok=True, detail=f"{len(runbooks)} loaded")
        )
    except RunbookError as exc:
        findings.append(Finding(check="runbooks", target="", ok=False, detail=str(exc)))

    if client is not None:
        for site in settings.sites():
            findings.append(await _site(client, settings, site))
    probes = {ts.service: ts.probe for ts in catalog.toolsets if ts.probe}
    for service in settings.services:
        for target in settings.targets(service):
            if target.site:
                findings.append(
                    Finding(
                        check=service,
                        target=target.name,
                        ok=True,
                        warning=True,
                        detail=f"at site {target.site}: its site's worker reaches it, not this host",
                    )
                )
            elif service in probes:
                findings.append(await _probe(service, target.name, probes[service], target))
            elif isinstance(target, HttpTarget):
                findings.append(await _probe(service, target.name, _http_ready, target))
    for provider in settings.llm.providers:
        findings.append(await _probe("llm", provider.name, _llm_provider, provider))
    if not settings.approval.approvers:
        findings.append(
            Finding(
                check="approval",
                target="approvers",
                ok=True,
                warning=True,
                detail="no approvers configured: every HARD action will be auto-denied at its timeout",
            )
        )
    return findings
