"""One chat completion through litellm, with its failures typed for Temporal's retry policy.

litellm is imported here lazily, on the first LLM call and in a thread: importing it costs seconds
and three thousand modules, which neither the CLI nor workflow code may pay. The bundled price map
is used (``LITELLM_LOCAL_MODEL_COST_MAP=True`` before the import: no download), and litellm's and
the OpenAI SDK's own retries are off so that every attempt is a Temporal activity attempt.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from temporalio.exceptions import ApplicationError

from core.config import LLMProvider
from core.planning import (
    LLM_CONFIG,
    LLM_ERROR,
    LLM_RATE_LIMITED,
    LLM_REJECTED,
    LLM_SERVER_ERROR,
    LLM_TIMEOUT,
    LLM_UNREACHABLE,
)
from core.redact import redact_text

SUBMIT_PLAN = "submit_plan"

_module: ModuleType | None = None
_import_lock = threading.Lock()


def _import_litellm() -> ModuleType:
    global _module
    with _import_lock:
        if _module is None:
            # Must precede the import: litellm otherwise fetches its price map from the network.
            os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
            import litellm

            litellm.suppress_debug_info = True
            _module = litellm
    return _module


async def litellm_module() -> ModuleType:
    """litellm, imported on first use in a thread so the worker's event loop keeps running."""
    if _module is not None:
        return _module
    return await asyncio.to_thread(_import_litellm)


@dataclass
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_s: float


def api_key(provider: LLMProvider, index: int) -> str | None:
    if provider.api_key_env:
        value = os.environ.get(provider.api_key_env, "")
        if not value:
            raise ApplicationError(
                f"llm.providers.{index}.api_key_env: environment variable "
                f"{provider.api_key_env} is not set (provider {provider.name})",
                type=LLM_CONFIG,
                non_retryable=True,
            )
        return value
    # An OpenAI-compatible local server (llama.cpp, vLLM, LM Studio) needs no key, but the
    # client insists on one; hosted providers without api_base read their usual variables.
    return "no-key" if provider.api_base else None


def cost(litellm: ModuleType, provider: LLMProvider, tokens_in: int, tokens_out: int) -> float:
    """The provider's price override, else litellm's bundled price map, else 0 (unknown)."""
    if provider.input_cost_per_token is not None or provider.output_cost_per_token is not None:
        return tokens_in * (provider.input_cost_per_token or 0.0) + tokens_out * (
            provider.output_cost_per_token or 0.0
        )
    try:
        prompt, completion = litellm.cost_per_token(
            model=provider.model, prompt_tokens=tokens_in, completion_tokens=tokens_out
        )
    except Exception:  # a model the price map does not know
        return 0.0
    return float(prompt) + float(completion)


def request_options(provider: LLMProvider, schema: dict[str, Any]) -> dict[str, Any]:
    if provider.output == "json":
        return {"response_format": {"type": "json_object"}}
    if provider.output == "tools":
        return {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": SUBMIT_PLAN,
                        "description": "Submit the remediation plan.",
                        "parameters": schema,
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": SUBMIT_PLAN}},
        }
    return {}


async def complete(
    provider: LLMProvider, index: int, messages: list[dict[str, str]], schema: dict[str, Any]
) -> Completion:
    """Ask once. Raises a typed ``ApplicationError`` (see ``classify``) on any failure."""
    key = api_key(provider, index)
    litellm = await litellm_module()
    started = time.monotonic()
    try:
        response = await litellm.acompletion(
            model=provider.model,
            messages=messages,
            api_base=provider.api_base,
            api_key=key,
            timeout=provider.timeout.total_seconds(),
            max_tokens=provider.max_tokens,
            temperature=provider.temperature,
            num_retries=0,
            max_retries=0,
            **request_options(provider, schema),
        )
    except Exception as exc:
        raise classify(litellm, exc, provider) from None
    latency = time.monotonic() - started
    text = answer_text(response)
    usage = getattr(response, "usage", None)
    tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
    tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
    return Completion(
        text=text,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost_usd=cost(litellm, provider, tokens_in, tokens_out),
        latency_s=latency,
    )


def answer_text(response: Any) -> str:
    """The forced tool call's arguments when present, else the message content."""
    try:
        message = response.choices[0].message
    except (AttributeError, IndexError):
        return ""
    for call in getattr(message, "tool_calls", None) or []:
        function = getattr(call, "function", None)
        if function is not None and getattr(function, "arguments", None):
            return str(function.arguments)
    return str(getattr(message, "content", "") or "")


def retry_after(exc: Exception) -> timedelta | None:
    """``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms`` from the error response."""
    response = getattr(exc, "response", None)
    headers: Any = getattr(response, "headers", None) or getattr(
        exc, "litellm_response_headers", None
    )
    if not headers:
        return None
    get = headers.get
    millis = get("retry-after-ms")
    if millis:
        try:
            return timedelta(milliseconds=float(millis))
        except ValueError:
            pass
    value = get("retry-after")
    if not value:
        return None
    try:
        return timedelta(seconds=max(float(value), 0.0))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - datetime.now(UTC), timedelta(0))


def classify(litellm: ModuleType, exc: Exception, provider: LLMProvider) -> ApplicationError:
    """Map a litellm/OpenAI error to the retry semantics the workflow's policy expects.

    429 → retryable after ``Retry-After`` (failing over at once if that is longer than
    ``max_retry_after``); timeouts, connection errors and 5xx → retryable; any other 4xx →
    non-retryable (the request itself is wrong: key, model, size); anything else → retryable.
    """
    message = redact_text(f"{provider.name}: {type(exc).__name__}: {exc}")[:800]
    status = getattr(exc, "status_code", None)
    if isinstance(exc, litellm.RateLimitError) or status == 429:
        wait = retry_after(exc)
        if wait is not None and wait > provider.max_retry_after:
            return ApplicationError(
                f"{message} (Retry-After {wait.total_seconds():g}s is longer than "
                f"max_retry_after {provider.max_retry_after.total_seconds():g}s: failing over)",
                type=LLM_RATE_LIMITED,
                non_retryable=True,
            )
        return ApplicationError(message, type=LLM_RATE_LIMITED, next_retry_delay=wait)
    if isinstance(exc, litellm.Timeout):
        return ApplicationError(message, type=LLM_TIMEOUT)
    if isinstance(exc, litellm.APIConnectionError):
        return ApplicationError(message, type=LLM_UNREACHABLE)
    if isinstance(status, int) and 400 <= status < 500 and status != 408:
        return ApplicationError(f"{message} (HTTP {status})", type=LLM_REJECTED, non_retryable=True)
    if isinstance(status, int) and status >= 500:
        return ApplicationError(f"{message} (HTTP {status})", type=LLM_SERVER_ERROR)
    return ApplicationError(message, type=LLM_ERROR)
