"""Silences the agents create and expire: bounded, tagged with their incident, never leaked.

A retried ``silence`` finds the silence its incident already made for the same matchers and
extends it instead of adding a second one; the compensation expires by that same tag and matchers
(the id does not exist before the write), and ``expire_silence`` never touches anyone else's.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.catalog import ToolContext, ToolFailure
from activities.toolsets.alertmanager.client import (
    CREATED_BY,
    LABEL_NAME,
    TOOLSET,
    Matcher,
    api_for,
    marker,
    matchers_text,
    same_matchers,
    target_of,
)
from activities.toolsets.alertmanager.reads import list_silences, matching_alerts, silence_row
from core.models import Reversibility, RiskLevel, ToolErrorKind
from core.units import human_duration, parse_duration

MIN_SILENCE = timedelta(minutes=1)
LIVE = ("active", "pending")


class _Bounded(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duration: str = Field(
        default="1h", description="how long (5m, 2h); at most the target's max_silence"
    )
    comment: str = Field(
        default="", max_length=500, description="why, e.g. a link to the incident's workflow"
    )

    @field_validator("duration")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        parsed = parse_duration(value)
        if not isinstance(parsed, timedelta) or parsed < MIN_SILENCE:
            raise ValueError(f"{value!r} is not a duration of at least 1m (5m, 2h)")
        return value

    @property
    def seconds(self) -> float:
        parsed = parse_duration(self.duration)
        assert isinstance(parsed, timedelta)
        return parsed.total_seconds()

    def selected(self) -> list[Matcher]:
        """The matchers the silence gets."""
        raise NotImplementedError


class SilenceAlertParams(_Bounded):
    labels: dict[str, str] = Field(
        description="the alert's labels (all of them): each becomes an equality matcher, so "
        "only that alert is muted"
    )

    @field_validator("labels")
    @classmethod
    def _an_alert(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("the labels of one alert, alertname included")
        if len(labels) < 2:
            raise ValueError("alertname alone would mute every instance: give all the labels")
        bad = [name for name in labels if not re.fullmatch(LABEL_NAME, name)]
        if bad:
            raise ValueError(f"not label names: {bad}")
        return labels

    def selected(self) -> list[Matcher]:
        return [Matcher(name=k, value=v) for k, v in sorted(self.labels.items())]


class SilenceMatchingParams(_Bounded):
    matchers: list[Matcher] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _not_everything(self) -> SilenceMatchingParams:
        # Alertmanager's own rule: at least one matcher that does not match the empty string.
        if not any(m.is_equal and not m.is_regex and m.value for m in self.matchers) and not any(
            m.is_equal and m.is_regex and m.value not in ("", ".*", ".+") for m in self.matchers
        ):
            raise ValueError("at least one matcher must name a non-empty value")
        return self

    def selected(self) -> list[Matcher]:
        return list(self.matchers)


class ExpireParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    silence_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    incident: str | None = Field(
        default=None, max_length=300, description="expire this incident's silences"
    )
    matchers: list[Matcher] | None = Field(
        default=None, description="with incident: only its silences with exactly these matchers"
    )

    @model_validator(mode="after")
    def _one_way(self) -> ExpireParams:
        if not self.silence_id and self.incident is None:
            raise ValueError("give silence_id or incident")
        return self


async def capture_silence(ctx: ToolContext[Any]) -> dict[str, Any]:
    params: _Bounded = ctx.params
    limit = target_of(ctx).max_silence.total_seconds()
    if params.seconds > limit:
        raise ToolFailure(
            ToolErrorKind.INVALID,
            f"a {params.duration} silence exceeds alertmanager {ctx.ref.target}'s max_silence "
            f"({human_duration(limit)})",
        )
    matchers = params.selected()
    wanted = [m.model_dump() for m in matchers]
    tag = marker(ctx.incident_id)
    existing = [
        s
        for s in await list_silences(ctx, matchers)
        if s["state"] in LIVE
        and s["created_by"] == CREATED_BY
        and tag in s["comment"]
        and same_matchers(s["matchers"], wanted)
    ]
    alerts = await matching_alerts(ctx, matchers)
    return {
        "matchers": wanted,
        "duration_seconds": params.seconds,
        "comment": f"{params.comment} {tag}".strip(),
        "marker": tag,
        "existing": existing[0]["id"] if existing else None,
        "existing_ends_at": existing[0]["ends_at"] if existing else None,
        "matching_alerts": len(alerts),
        "examples": [a.get("labels", {}).get("alertname") for a in alerts[:5]],
    }


def preview_silence(ctx: ToolContext[Any], before: dict[str, Any]) -> str:
    what = f"{human_duration(before['duration_seconds'])} on alertmanager {ctx.ref.target}"
    head = (
        f"extend silence {before['existing']} of {matchers_text(before['matchers'])} to {what}"
        if before["existing"]
        else f"silence {matchers_text(before['matchers'])} for {what}"
    )
    return (
        f"{head} ({before['matching_alerts']} alert(s) match now); comment: {before['comment']!r}"
    )


def compensate_silence(ctx: ToolContext[Any], before: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "alertmanager.expire_silence",
        {"incident": ctx.incident_id or "manual", "matchers": before["matchers"]},
    )


async def create_silence(ctx: ToolContext[Any]) -> dict[str, Any]:
    before = ctx.before or await capture_silence(ctx)
    now = datetime.now(UTC)
    # re-check: a retried attempt (or a concurrent one) may have created it meanwhile
    fresh = await capture_silence(ctx)
    existing = fresh["existing"] or before.get("existing")
    body: dict[str, Any] = {
        "matchers": [Matcher.model_validate(m).api() for m in before["matchers"]],
        "startsAt": now.isoformat().replace("+00:00", "Z"),
        "endsAt": (now + timedelta(seconds=before["duration_seconds"]))
        .isoformat()
        .replace("+00:00", "Z"),
        "createdBy": CREATED_BY,
        "comment": before["comment"],
    }
    if existing:
        body["id"] = existing
    answer = await api_for(ctx).post("/api/v2/silences", json_body=body)
    silence_id = str((answer or {}).get("silenceID", ""))
    if not silence_id:
        raise ToolFailure(ToolErrorKind.FAILED, f"Alertmanager answered no silenceID: {answer}")
    return {
        "silence_id": silence_id,
        "extended": bool(existing),
        "matchers": before["matchers"],
        "ends_at": body["endsAt"],
        "comment": before["comment"],
        "url": f"{target_of(ctx).url.rstrip('/')}/#/silences/{silence_id}",
        "_summary": f"silence {silence_id} on {matchers_text(before['matchers'])} until "
        f"{body['endsAt']}",
    }


@TOOLSET.write(
    "silence",
    "Silence one alert (all its labels as equality matchers) for a bounded time, tagged with the "
    "incident; returns the silence id. For the incident's own alert while it is handled; "
    "compensated by expire_silence.",
    SilenceAlertParams,
    level=RiskLevel.NONE,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_silence,
    preview=preview_silence,
    compensate=compensate_silence,
    needs_resource=False,
)
async def silence(ctx: ToolContext[SilenceAlertParams]) -> dict[str, Any]:
    return await create_silence(ctx)


@TOOLSET.write(
    "silence_matching",
    "Silence every alert the matchers select (regex and negative matchers allowed) for a bounded "
    "time: wider than one alert, so HARD. Compensated by expire_silence.",
    SilenceMatchingParams,
    level=RiskLevel.HARD,
    reversibility=Reversibility.COMPENSATED,
    capture=capture_silence,
    preview=preview_silence,
    compensate=compensate_silence,
    needs_resource=False,
)
async def silence_matching(ctx: ToolContext[SilenceMatchingParams]) -> dict[str, Any]:
    return await create_silence(ctx)


async def capture_expire(ctx: ToolContext[ExpireParams]) -> dict[str, Any]:
    params = ctx.params
    if params.silence_id:
        try:
            found = await api_for(ctx).get(f"/api/v2/silence/{params.silence_id}")
        except ToolFailure as failure:
            if failure.kind is ToolErrorKind.NOT_FOUND:
                return {"silences": []}
            raise
        rows = [silence_row(found)]
        if rows[0]["created_by"] != CREATED_BY or not rows[0]["incident"]:
            raise ToolFailure(
                ToolErrorKind.INVALID,
                f"silence {params.silence_id} was not created by homelab-agents "
                f"(by {rows[0]['created_by']!r}): the agents expire only their own",
            )
    else:
        tag = marker(params.incident or "")
        wanted = [m.model_dump() for m in params.matchers] if params.matchers else None
        rows = [
            s
            for s in await list_silences(ctx, params.matchers or [])
            if s["created_by"] == CREATED_BY
            and tag in s["comment"]
            and (wanted is None or same_matchers(s["matchers"], wanted))
        ]
    live = [s for s in rows if s["state"] in LIVE]
    return {"silences": [{k: s[k] for k in ("id", "matchers", "ends_at", "state")} for s in live]}


def preview_expire(ctx: ToolContext[ExpireParams], before: dict[str, Any]) -> str:
    found = before["silences"]
    if not found:
        return f"no-op: no live homelab-agents silence to expire on alertmanager {ctx.ref.target}"
    listed = "; ".join(
        f"{s['id']} {matchers_text(s['matchers'])} (until {s['ends_at']})" for s in found[:5]
    )
    return f"expire {len(found)} silence(s) on alertmanager {ctx.ref.target}: {listed}"


@TOOLSET.write(
    "expire_silence",
    "Expire the agents' own silences: one by id, or every live one an incident made (optionally "
    "only those with exactly the given matchers). The compensation of silence.",
    ExpireParams,
    level=RiskLevel.NONE,
    reversibility=Reversibility.STATELESS,
    capture=capture_expire,
    preview=preview_expire,
    is_noop=lambda ctx, b: not b["silences"],
    needs_resource=False,
)
async def expire_silence(ctx: ToolContext[ExpireParams]) -> dict[str, Any]:
    planned = (ctx.before or await capture_expire(ctx))["silences"]
    api = api_for(ctx)
    expired, skipped = [], []
    for item in planned:
        try:
            await api.delete(f"/api/v2/silence/{item['id']}")
            expired.append(item["id"])
        except ToolFailure as failure:
            # already expired (500 "already expired") or gone (404): the goal holds
            if failure.kind in (ToolErrorKind.NOT_FOUND, ToolErrorKind.FAILED):
                current = await capture_expire(ctx)
                if item["id"] not in {s["id"] for s in current["silences"]}:
                    skipped.append(item["id"])
                    continue
            raise
    return {
        "expired": expired,
        "already_gone": skipped,
        "_summary": f"expired {len(expired)} silence(s) on alertmanager {ctx.ref.target}",
    }
