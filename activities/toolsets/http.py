"""One HTTP client for every toolset that talks to an HTTP API (httpx, async).

What an HTTP failure means is the same for every API, so it is decided here once: a connection
error, a timeout or a 502/503/504 is UNREACHABLE (Temporal retries it), 429 is RATE_LIMITED (retried
after ``Retry-After``), 401/403 UNAUTHORIZED, 404 NOT_FOUND, 409 CONFLICT, other 4xx INVALID, and
other 5xx FAILED. Each API only says where it puts its error message (``message``). Secrets in
headers never reach an error text; response text is redacted before it is quoted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from activities.catalog import ToolFailure
from core.models import ToolErrorKind
from core.redact import redact_text

MessageFn = Callable[[httpx.Response], str]


def default_message(response: httpx.Response) -> str:
    """``message``/``error``/``errors`` of a JSON body, else the start of the text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "error", "errors", "detail", "msg"):
            value = body.get(key)
            if value:
                return (value if isinstance(value, str) else json.dumps(value))[:300]
    return json.dumps(body)[:300]


def status_failure(response: httpx.Response, product: str, message: MessageFn) -> ToolFailure:
    """The typed failure of a non-2xx answer."""
    status = response.status_code
    text = redact_text(message(response))
    where = f"{product} {response.request.method} {response.request.url.path}"
    if status == 429:
        after = response.headers.get("retry-after", "").strip()
        seconds = float(after) if after.replace(".", "", 1).isdigit() else None
        return ToolFailure(
            ToolErrorKind.RATE_LIMITED,
            f"{where}: rate limited (HTTP 429{', retry after ' + after + 's' if after else ''})"
            f": {text}",
            retry_after=seconds,
        )
    kind = {
        401: ToolErrorKind.UNAUTHORIZED,
        403: ToolErrorKind.UNAUTHORIZED,
        404: ToolErrorKind.NOT_FOUND,
        409: ToolErrorKind.CONFLICT,
        502: ToolErrorKind.UNREACHABLE,
        503: ToolErrorKind.UNREACHABLE,
        504: ToolErrorKind.UNREACHABLE,
    }.get(status)
    if kind is None:
        kind = ToolErrorKind.INVALID if status < 500 else ToolErrorKind.FAILED
    hint = " (check the token and its permissions)" if kind is ToolErrorKind.UNAUTHORIZED else ""
    return ToolFailure(kind, f"{where}: HTTP {status}: {text}{hint}")


class HttpApi:
    """An API's base URL, credentials and TLS settings, with typed failures.

    Toolsets create one per target through ``TargetClients.client`` and call ``get``/``post``/...;
    the answer is the decoded JSON (or text), a failure is always a ``ToolFailure``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        product: str,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        verify: bool | str = True,
        timeout: float = 10.0,
        message: MessageFn = default_message,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.product = product
        self.message = message
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=dict(headers or {}),
            auth=auth,
            verify=verify,
            timeout=timeout,
            trust_env=False,  # a homelab API on the LAN never goes through a proxy
            follow_redirects=False,
            transport=transport,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        """The decoded answer (JSON, else text; the response itself with ``raw``)."""
        try:
            response = await self.client.request(
                method,
                path,
                params=params,
                json=json_body,
                data=data,
                content=content,
                headers=headers,
            )
        except httpx.TimeoutException as exc:
            raise ToolFailure(
                ToolErrorKind.UNREACHABLE,
                f"{self.product} at {self.base_url} did not answer {method} {path} in time "
                f"({type(exc).__name__})",
            ) from exc
        except httpx.TransportError as exc:
            raise ToolFailure(
                ToolErrorKind.UNREACHABLE,
                f"{self.product} at {self.base_url} unreachable: {type(exc).__name__}: "
                f"{redact_text(str(exc))[:300]}",
            ) from exc
        if response.is_redirect:
            raise ToolFailure(
                ToolErrorKind.INVALID,
                f"{self.product} {method} {path} redirected to "
                f"{response.headers.get('location', '?')}: check the target's url",
            )
        if not response.is_success:
            raise status_failure(response, self.product, self.message)
        if raw:
            return response
        if not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            try:
                return response.json()
            except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
                raise ToolFailure(
                    ToolErrorKind.FAILED,
                    f"{self.product} {method} {path} answered invalid JSON: {exc}",
                ) from exc
        return response.text

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)

    async def aclose(self) -> None:
        await self.client.aclose()
