"""Connecting to Temporal the same way everywhere (pydantic payloads, API key or TLS if set)."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from core.config import Settings
from workflows import search_attributes

DEFAULT_ADDRESS = "127.0.0.1:7233"


def address(settings: Settings) -> str:
    return settings.temporal.address or f"{settings.temporal.ip}:{settings.temporal.port}"


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    api_key = settings.temporal.api_key.get_secret_value() if settings.temporal.api_key else None
    return await Client.connect(
        address(settings),
        namespace=settings.temporal.namespace,
        data_converter=pydantic_data_converter,
        api_key=api_key,
        tls=settings.temporal.tls or bool(api_key),
        lazy=lazy,
    )


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register DESIGN.md's search attributes that the namespace lacks; returns the added names."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as err:  # the Java time-skipping server cannot list, only add
        if err.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in search_attributes.ALL
        if key.name not in known
    }
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
            )
        except RPCError as err:
            if err.status is not RPCStatusCode.ALREADY_EXISTS:
                raise
            return []
    return sorted(missing)
