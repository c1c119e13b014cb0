"""Connecting to Temporal the same way everywhere (pydantic payloads, redacted failures, API key
or TLS if set)."""

from __future__ import annotations

import dataclasses

import temporalio.api.failure.v1
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverter, PayloadConverter
from temporalio.service import RPCError, RPCStatusCode

from core.config import Settings
from core.redact import redact_text
from workflows import search_attributes

DEFAULT_ADDRESS = "127.0.0.1:7233"


class RedactingFailureConverter(DefaultFailureConverter):
    """An exception becomes a failure in a workflow history (message, stack trace, causes) and
    histories outlive everything: each message and trace is redacted on the way in."""

    def to_failure(
        self,
        exception: BaseException,
        payload_converter: PayloadConverter,
        failure: temporalio.api.failure.v1.Failure,
    ) -> None:
        super().to_failure(exception, payload_converter, failure)
        node = failure
        while True:
            node.message = redact_text(node.message)
            node.stack_trace = redact_text(node.stack_trace)
            if not node.HasField("cause"):
                return
            node = node.cause


DATA_CONVERTER = dataclasses.replace(
    pydantic_data_converter, failure_converter_class=RedactingFailureConverter
)


def address(settings: Settings) -> str:
    return settings.temporal.address or f"{settings.temporal.ip}:{settings.temporal.port}"


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    api_key = settings.temporal.api_key.get_secret_value() if settings.temporal.api_key else None
    return await Client.connect(
        address(settings),
        namespace=settings.temporal.namespace,
        data_converter=DATA_CONVERTER,
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
