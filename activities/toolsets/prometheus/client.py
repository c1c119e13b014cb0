"""The Prometheus toolset, its one HTTP client per target, and the API's envelope.

Every ``/api/v1`` answer is ``{"status": "success", "data": ...}`` or an error with ``errorType``
and ``error`` (bad PromQL is a 400 ``bad_data``); HttpApi types the status, ``data`` unwraps the
envelope. The server's own ``/metrics`` gives the reload gauges without any self-scrape.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from activities.catalog import ToolContext, ToolFailure, Toolset
from activities.toolsets.http import HttpApi
from core.models import ToolErrorKind
from core.targets import HttpTarget, PrometheusTarget

TOOLSET = Toolset(
    service="prometheus",
    description="Prometheus servers: PromQL queries, targets, rules, alerts, TSDB, config reloads.",
)


def http_api(target: HttpTarget, product: str) -> HttpApi:
    """The HttpApi of any monitoring target: its url, bearer token and TLS settings."""
    headers = {}
    if target.token is not None:
        headers["Authorization"] = f"Bearer {target.token.get_secret_value()}"
    return HttpApi(
        target.url,
        product=product,
        headers=headers,
        verify=target.verify_tls,
        timeout=target.timeout,
    )


def make_client(target: PrometheusTarget) -> HttpApi:
    return http_api(target, "Prometheus")


def api_for(ctx: ToolContext[Any]) -> HttpApi:
    return ctx.clients.client("prometheus", ctx.ref.target, make_client)


def target_of(ctx: ToolContext[Any]) -> PrometheusTarget:
    target = ctx.clients.target("prometheus", ctx.ref.target)
    assert isinstance(target, PrometheusTarget)
    return target


async def data(api: HttpApi, path: str, **params: Any) -> Any:
    """The ``data`` of a ``/api/v1`` answer (errors are already typed by HttpApi)."""
    body = await api.get(path, params=params or None)
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ToolFailure(
            ToolErrorKind.FAILED,
            f"Prometheus {path} answered an unexpected body: {str(body)[:200]}",
        )
    return body.get("data")


async def self_metrics(api: HttpApi, *names: str) -> dict[str, float]:
    """Gauges from the server's own ``/metrics`` (first sample of each name)."""
    text = await api.get("/metrics")
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(str(text or "")):
        for sample in family.samples:
            if sample.name in names and sample.name not in found:
                found[sample.name] = float(sample.value)
    return found


async def flags(api: HttpApi) -> dict[str, str]:
    return dict(await data(api, "/api/v1/status/flags") or {})


async def _probe(target: PrometheusTarget) -> str:
    api = make_client(target)
    try:
        build = await data(api, "/api/v1/status/buildinfo")
        info = await data(api, "/api/v1/status/runtimeinfo")
    finally:
        await api.aclose()
    reload = "ok" if info.get("reloadConfigSuccess") else "FAILED"
    return f"Prometheus {build.get('version', '?')}, last config reload {reload}"


def probe(target: PrometheusTarget) -> str:
    return asyncio.run(_probe(target))


TOOLSET.probe = probe
