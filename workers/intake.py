"""The intake HTTP server: Alertmanager webhooks in, incident workflows out.

``POST /alerts/alertmanager`` takes the webhook v4 payload. Every alert in the group is validated
on its own, so one bad alert never costs the good ones: the answer is 202 with one result per
accepted alert and the reasons for any rejected. Accepted means committed to the store's outbox:
the answer never waits for Temporal (a storm of posts costs each one a SQL insert), the alert
survives a crash of the intake, and the forwarder (workers/forwarder.py) delivers it once per
(fingerprint, status, startsAt); a repeat is answered ``duplicate``. Malformed requests get a 4xx
naming what was wrong; if the store cannot take the alerts the answer is 503 so Alertmanager
retries.
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
from sqlalchemy.exc import SQLAlchemyError

from core.config import Settings
from core.metrics import INTAKE_LATENCY, INTAKE_REJECTED
from core.models import Alert, AlertmanagerAlert, AlertmanagerEnvelope
from workers.forwarder import Forwarder
from workers.routing import workflow_id_for

log = logging.getLogger(__name__)


class AsciiJSONResponse(JSONResponse):
    """Escapes everything outside ASCII: a lone surrogate quoted back from a bad label cannot
    break the answer that names it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _error(status: int, reason: str, **extra: Any) -> JSONResponse:
    INTAKE_REJECTED.labels(str(status)).inc()
    return AsciiJSONResponse({"error": reason, **extra}, status_code=status)


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


def create_app(settings: Settings, forwarder: Forwarder, store: Any = None) -> FastAPI:
    app = FastAPI(title="homelab-agents intake", version="0.1.0")
    token = settings.intake.token.get_secret_value() if settings.intake.token else None
    limit = settings.intake.max_body_bytes
    max_alerts = settings.intake.max_alerts_per_post

    expected = token.encode() if token is not None else b""

    def authorized(request: Request) -> bool:
        """Bearer token compared as bytes, in constant time (any header bytes are just wrong)."""
        if token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        presented = value.strip().encode("latin-1", "replace")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented, expected)

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
        except Exception:  # a bug: answered, logged, and the connection stays usable
            log.exception("intake failed on a webhook post")
            return _error(500, "internal error in the intake (logged); nothing was routed")
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
            envelope = AlertmanagerEnvelope.model_validate(payload)
        except RecursionError:
            return _error(400, "body is nested too deeply to be an Alertmanager webhook payload")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        except ValidationError as exc:
            return _error(422, "not an Alertmanager webhook v4 payload", details=_describe(exc))
        if len(envelope.alerts) > max_alerts:
            return _error(
                413,
                f"{len(envelope.alerts)} alerts in one post exceed intake.max_alerts_per_post "
                f"({max_alerts}); lower max_alerts in the Alertmanager receiver",
            )

        received = datetime.now(UTC)
        valid: list[tuple[int, Alert]] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(envelope.alerts):
            try:
                parsed = AlertmanagerAlert.model_validate(raw)
            except (ValidationError, RecursionError) as exc:
                reason = (
                    "; ".join(_describe(exc))
                    if isinstance(exc, ValidationError)
                    else "nested too deeply"
                )
                rejected.append({"index": index, "reason": reason})
                INTAKE_REJECTED.labels("alert").inc()
                continue
            problem = parsed.time_problem(received)
            if problem:
                rejected.append({"index": index, "reason": problem})
                INTAKE_REJECTED.labels("alert").inc()
                continue
            valid.append((index, parsed.to_alert(received)))
        if not valid:
            return _error(422, "no valid alert in the payload", rejected=rejected)
        try:
            accepted = await forwarder.accept([alert for _, alert in valid])
        except SQLAlchemyError as exc:
            log.warning("the outbox could not take %d alerts: %s", len(valid), exc)
            INTAKE_REJECTED.labels("503").inc()
            return AsciiJSONResponse(
                {"error": "the intake's store is unavailable; retry"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        results = [
            {
                "index": index,
                "fingerprint": alert.fingerprint,
                "alertname": alert.name,
                "status": alert.status.value,
                "workflow_id": workflow_id_for(alert),
                "delivery_id": one.delivery_id,
                "action": "accepted" if one.new else "duplicate",
            }
            for (index, alert), one in zip(valid, accepted, strict=True)
        ]
        return AsciiJSONResponse(
            {
                "status": "accepted",
                "received_at": received.isoformat(),
                "results": results,
                "rejected": rejected,
            },
            status_code=202,
        )

    return app
