"""Timeouts and retry policies for every kind of activity the workflows call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

# Typed, permanent failures from our own activities: retrying cannot help.
NON_RETRYABLE = ["ToolInvalid", "ValidationError", "ConfigError"]


HEARTBEAT = timedelta(seconds=10)


def read_tool() -> dict[str, Any]:
    return {
        "start_to_close_timeout": timedelta(seconds=30),
        "heartbeat_timeout": HEARTBEAT,
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(milliseconds=500),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=5),
            maximum_attempts=3,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    }


def write_tool(timeout_seconds: float) -> dict[str, Any]:
    """Writes are idempotent against their before-state, so a retry after a lost result is safe.

    A cancelled incident waits for its write to stop before compensating it, never racing it.
    """
    return {
        "start_to_close_timeout": timedelta(seconds=timeout_seconds),
        "heartbeat_timeout": HEARTBEAT,
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=10),
            maximum_attempts=3,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    }


def internal() -> dict[str, Any]:
    """Store, policy, planner, triage: local and cheap, retried patiently."""
    return {
        "start_to_close_timeout": timedelta(seconds=30),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(milliseconds=200),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=10),
            maximum_attempts=10,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    }


def memory() -> dict[str, Any]:
    """Recall, remember, the flapping guard: helpful, never worth holding an incident up."""
    return {
        "start_to_close_timeout": timedelta(seconds=20),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(milliseconds=500),
            maximum_interval=timedelta(seconds=5),
            maximum_attempts=3,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    }


RECORD_DEADLINE = timedelta(minutes=30)
"""How long a change record is retried (a store outage) before the write it records is undone."""


def record() -> dict[str, Any]:
    """The change log: retried patiently until ``RECORD_DEADLINE``; a change that still cannot be
    recorded is rolled back and escalated, never left applied and unrecorded."""
    return {
        "start_to_close_timeout": timedelta(seconds=30),
        "schedule_to_close_timeout": RECORD_DEADLINE,
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=60),
            maximum_attempts=0,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    }


def notify() -> dict[str, Any]:
    """Notifications are best-effort: a channel outage must never hold an incident up."""
    return {
        "start_to_close_timeout": timedelta(seconds=20),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=10),
            maximum_attempts=3,
        ),
    }


def verify(timeout: timedelta, stable_for: timedelta) -> dict[str, Any]:
    return {
        "start_to_close_timeout": timeout + stable_for + timedelta(seconds=30),
        "heartbeat_timeout": timedelta(seconds=15),
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        "retry_policy": RetryPolicy(maximum_attempts=2, initial_interval=timedelta(seconds=1)),
    }
