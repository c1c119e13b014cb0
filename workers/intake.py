"""The intake HTTP server: Alertmanager webhooks in, incident workflows out.

``POST /alerts/alertmanager`` takes the webhook v4 payload. Every alert in the group is validated
and routed on its own, so one bad alert never costs the good ones: the answer is 202 with one
result per routed alert and the reasons for any rejected. Malformed requests get a 4xx naming what
was wrong; if Temporal cannot take the alerts the answer is 503 so Alertmanager retries (nothing is
lost, and re-sent alerts deduplicate by fingerprint).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from core.config import Settings
from core.metrics import INTAKE_LATENCY, INTAKE_REJECTED
from core.models import AlertmanagerAlert, AlertmanagerEnvelope
from workers.routing import AlertRouter, TemporalUnavailable

log = logging.getLogger(__name__)


def _error(status: int, reason: str, **extra: Any) -> JSONResponse:
    INTAKE_REJECTED.labels(str(status)).inc()
    return JSONResponse({"error": reason, **extra}, status_code=status)


def _describe(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(settings: Settings, router: AlertRouter, store: Any = None) -> FastAPI:
    app = FastAPI(title="homelab-agents intake", version="0.1.0")
    token = settings.intake.token.get_secret_value() if settings.intake.token else None
    limit = settings.intake.max_body_bytes

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "task_queue": settings.temporal.task_queue}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/changes", response_model=None)
    async def changes(request: Request, incident: str | None = Query(default=None)) -> Any:
        if not authorized(request):
            return _error(401, "missing or wrong bearer token")
        if store is None:
            return _error(404, "no change log store is attached to this intake")
        records = await asyncio.to_thread(store.list_changes, incident)
        return [json.loads(r.model_dump_json()) for r in records]

    @app.post("/alerts/alertmanager", response_model=None)
    async def alertmanager(request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            return await _handle(request)
        finally:
            INTAKE_LATENCY.observe(time.perf_counter() - started)

    async def _handle(request: Request) -> JSONResponse:
        if not authorized(request):
            return _error(401, "missing or wrong bearer token")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _error(
                415, f"content type must be application/json, got {content_type or 'none'!r}"
            )
        body = await _read_body(request, limit)
        if body is None:
            return _error(413, f"body larger than intake.max_body_bytes ({limit} bytes)")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        try:
            envelope = AlertmanagerEnvelope.model_validate(payload)
        except ValidationError as exc:
            return _error(422, "not an Alertmanager webhook v4 payload", details=_describe(exc))

        received = datetime.now(UTC)
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(envelope.alerts):
            try:
                alert = AlertmanagerAlert.model_validate(raw).to_alert(received)
            except ValidationError as exc:
                rejected.append({"index": index, "reason": "; ".join(_describe(exc))})
                INTAKE_REJECTED.labels("alert").inc()
                continue
            try:
                routed = await router.route(alert)
            except TemporalUnavailable as exc:
                log.warning("%s", exc)
                return JSONResponse(
                    {
                        "error": "Temporal is unavailable; retry",
                        "detail": str(exc),
                        "routed": accepted,
                    },
                    status_code=503,
                    headers={"Retry-After": "5"},
                )
            accepted.append({"index": index, **routed.model_dump(mode="json")})
        if not accepted:
            return _error(422, "no valid alert in the payload", rejected=rejected)
        return JSONResponse(
            {
                "status": "accepted",
                "received_at": received.isoformat(),
                "results": accepted,
                "rejected": rejected,
            },
            status_code=202,
        )

    return app
