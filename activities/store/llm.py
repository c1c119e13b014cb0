"""The LLM planner's usage ledger (monthly budget) and its response cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from activities.store.base import StoreBase
from activities.store.schema import llm_cache, llm_usage


class LLMLedger(StoreBase):
    def record_llm_usage(
        self,
        *,
        incident_id: str,
        provider: str,
        model: str,
        outcome: str,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: float = 0.0,
        latency_s: float = 0.0,
        cached: bool = False,
        at: datetime | None = None,
    ) -> None:
        """One LLM call (or cache hit); every real call counts, failed ones included."""
        when = at or datetime.now(UTC)
        with self._tx() as conn:
            conn.execute(
                llm_usage.insert().values(
                    at=when,
                    month=when.astimezone(UTC).strftime("%Y-%m"),
                    incident_id=incident_id,
                    provider=provider,
                    model=model,
                    outcome=outcome,
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                    cost_usd=cost_usd,
                    latency_s=latency_s,
                    cached=cached,
                )
            )

    def llm_month_spend(self, month: str | None = None) -> float:
        """USD recorded in a calendar month (UTC, ``YYYY-MM``; default the current one)."""
        month = month or datetime.now(UTC).strftime("%Y-%m")
        query = sa.select(sa.func.coalesce(sa.func.sum(llm_usage.c.cost_usd), 0.0)).where(
            llm_usage.c.month == month
        )
        with self._tx() as conn:
            return float(conn.execute(query).scalar() or 0.0)

    def list_llm_usage(self, incident_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(llm_usage).order_by(llm_usage.c.at, llm_usage.c.id)
        if incident_id:
            query = query.where(llm_usage.c.incident_id == incident_id)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def llm_cache_get(self, key: str) -> str | None:
        query = (
            sa.select(llm_cache.c.response)
            .where(llm_cache.c.key == key)
            .where(llm_cache.c.expires_at > datetime.now(UTC))
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return str(row.response) if row else None

    def llm_cache_put(self, key: str, model: str, response: str, ttl: timedelta) -> None:
        now = datetime.now(UTC)
        values = {
            "key": key,
            "model": model,
            "response": response,
            "created_at": now,
            "expires_at": now + ttl,
        }
        with self._tx() as conn:
            conn.execute(llm_cache.delete().where(llm_cache.c.expires_at <= now))
            stmt: Any
            if conn.dialect.name == "postgresql":
                stmt = pg_insert(llm_cache).values(**values)
            else:
                stmt = sqlite_insert(llm_cache).values(**values)
            update = {
                k: stmt.excluded[k] for k in ("model", "response", "created_at", "expires_at")
            }
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=update))
