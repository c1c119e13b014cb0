"""Failures written into workflow histories (an activity's exception, its cause, their stack
traces) are redacted by the one data converter every client and worker uses."""

from __future__ import annotations

import temporalio.api.failure.v1
from temporalio.converter import DefaultPayloadConverter

from workers.temporal_client import DATA_CONVERTER, RedactingFailureConverter


def _raise() -> None:
    try:
        raise ConnectionError("connect to postgresql://app:cause-pw-1@db/x refused")
    except ConnectionError as cause:
        raise RuntimeError("record failed: PGPASSWORD=msg-pw-2 psql") from cause


def test_messages_stacks_and_causes_are_redacted() -> None:
    assert isinstance(DATA_CONVERTER.failure_converter, RedactingFailureConverter)
    failure = temporalio.api.failure.v1.Failure()
    try:
        _raise()
    except RuntimeError as exc:
        DATA_CONVERTER.failure_converter.to_failure(exc, DefaultPayloadConverter(), failure)
    text = str(failure)
    assert "cause-pw-1" not in text and "msg-pw-2" not in text
    assert failure.message == "record failed: PGPASSWORD=*** psql"
    assert failure.cause.message == "connect to postgresql://app:***@db/x refused"
    assert "_raise" in failure.stack_trace and "_raise" in failure.cause.stack_trace
