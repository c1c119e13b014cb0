"""Annotations: an incident's steps on the user's dashboards, written once per step."""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.grafana.client import TOOLSET, api_for, target_of
from core.models import Reversibility, RiskLevel, ToolErrorKind

TAG = r"^[^,\s][^,]{0,99}$"


class AnnotateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000, description="what happened (HTML allowed)")
    tags: list[str] = Field(
        default_factory=list, max_length=20, description="e.g. incident id, step"
    )
    time_ms: int | None = Field(
        default=None, ge=0, description="epoch milliseconds; default: when the call is prepared"
    )
    time_end_ms: int | None = Field(default=None, ge=0, description="for a region")
    dashboard_uid: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$", description="unset: an org annotation"
    )
    panel_id: int | None = Field(default=None, ge=1)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        bad = [t for t in tags if not re.fullmatch(TAG, t)]
        if bad:
            raise ValueError(f"tags cannot be empty or contain commas: {bad}")
        return tags


def _tags(ctx: ToolContext[AnnotateParams]) -> list[str]:
    merged: list[str] = []
    for tag in [*target_of(ctx).tags, *ctx.params.tags]:
        if tag not in merged:
            merged.append(tag)
    return merged


async def _existing(ctx: ToolContext[AnnotateParams], when: int, tags: list[str]) -> int | None:
    """The annotation this call already wrote (same time, tags and text), if any."""
    params: dict[str, Any] = {"from": when, "to": when, "tags": tags, "limit": 100}
    if ctx.params.dashboard_uid:
        params["dashboardUID"] = ctx.params.dashboard_uid
    found = await api_for(ctx).get("/api/annotations", params=params)
    for item in found or []:
        if item.get("text") == ctx.params.text and set(item.get("tags") or []) == set(tags):
            return int(item["id"])
    return None


async def capture(ctx: ToolContext[AnnotateParams]) -> dict[str, Any]:
    when = ctx.params.time_ms if ctx.params.time_ms is not None else int(time.time() * 1000)
    tags = _tags(ctx)
    return {"time_ms": when, "tags": tags, "existing": await _existing(ctx, when, tags)}


@TOOLSET.write(
    "annotate",
    "Add an annotation (text and tags, org-wide or on one dashboard/panel) so the incident shows "
    "on the user's dashboards; the target's tags are always added. A retry never duplicates it.",
    AnnotateParams,
    level=RiskLevel.NONE,
    reversibility=Reversibility.STATELESS,
    capture=capture,
    preview=lambda ctx, b: (
        f"annotate grafana {ctx.ref.target}"
        + (f" dashboard {ctx.params.dashboard_uid}" if ctx.params.dashboard_uid else "")
        + f" at {b['time_ms']} with tags {b['tags']}: {ctx.params.text[:200]!r}"
    ),
    is_noop=lambda ctx, b: b["existing"] is not None,
    needs_resource=False,
)
async def annotate(ctx: ToolContext[AnnotateParams]) -> dict[str, Any]:
    before = ctx.before or await capture(ctx)
    existing = await _existing(ctx, before["time_ms"], before["tags"])
    if existing is None:
        body: dict[str, Any] = {
            "time": before["time_ms"],
            "tags": before["tags"],
            "text": ctx.params.text,
        }
        if ctx.params.time_end_ms is not None:
            body["timeEnd"] = ctx.params.time_end_ms
        if ctx.params.dashboard_uid:
            body["dashboardUID"] = ctx.params.dashboard_uid
        if ctx.params.panel_id is not None:
            body["panelId"] = ctx.params.panel_id
        answer = await api_for(ctx).post("/api/annotations", json_body=body)
        if not isinstance(answer, dict) or "id" not in answer:
            raise ToolFailure(ToolErrorKind.FAILED, f"Grafana answered no annotation id: {answer}")
        existing = int(answer["id"])
    return {
        "annotation_id": existing,
        "time_ms": before["time_ms"],
        "tags": before["tags"],
        "_summary": f"annotation {existing} on grafana {ctx.ref.target} ({', '.join(before['tags'])})",
    }
