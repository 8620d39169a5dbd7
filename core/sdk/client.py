"""Partner clients of the super entry (httpx, sync and async).

Every request is signed afresh on every attempt (new timestamp and nonce); every POST, PUT, PATCH
and DELETE carries an ``Idempotency-Key`` (generated unless given) that stays the same across
retries, so retrying is safe: the bank does the work at most once. Retried: connection errors,
``409 idempotency_in_progress``, ``429`` (after ``Retry-After``) and ``502/503/504``; never a
replayed answer.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import random
import secrets
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from core.sdk.errors import SceneOSAPIError, error_for
from core.sdk.signing import (
    AUTHORIZATION_HEADER,
    END_USER_HEADER,
    IDEMPOTENCY_HEADER,
    IDEMPOTENT_REPLAYED_HEADER,
    authorization_header,
    sign,
)

REQUEST_ID_HEADER = "X-Request-ID"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
USER_AGENT = "sceneos-partner-sdk/0.1"


class SceneOSAuth(httpx.Auth):
    """httpx authentication that signs each request as it is sent."""

    requires_request_body = True

    def __init__(self, key_id: str, secret: str, *, clock: Callable[[], float] | None = None) -> None:
        self.key_id = key_id
        self._secret = secret
        # Seconds since the epoch; tests pass the server's simulated clock.
        self._clock = clock or time.time

    def __repr__(self) -> str:  # never show the secret
        return f"SceneOSAuth(key_id={self.key_id!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
        timestamp = int(self._clock())
        nonce = secrets.token_urlsafe(24)
        signature = sign(self._secret, key_id=self.key_id, timestamp=timestamp, nonce=nonce, method=request.method,
                         raw_path=raw_path, raw_query=raw_query, body=request.content)
        request.headers[AUTHORIZATION_HEADER] = authorization_header(self.key_id, timestamp, nonce, signature)
        yield request


@dataclass(frozen=True)
class APIResponse:
    """A successful answer."""

    status_code: int
    data: Any
    headers: httpx.Headers
    request_id: str | None
    replayed: bool  # the bank answered from its idempotency record
    raw: httpx.Response


@dataclass
class RetryPolicy:
    max_retries: int = 2
    backoff_base_seconds: float = 0.2
    backoff_max_seconds: float = 5.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before retrying ``attempt`` (0-based), or None not to retry."""
        if attempt >= self.max_retries:
            return None
        if response is not None:
            if response.headers.get(IDEMPOTENT_REPLAYED_HEADER) == "true":
                return None
            retryable = response.status_code in RETRYABLE_STATUS or (
                response.status_code == 409 and _problem(response).get("code") == "idempotency_in_progress"
            )
            if not retryable:
                return None
            after = response.headers.get("retry-after")
            if after is not None:
                try:
                    return min(max(float(after), 0.0), self.backoff_max_seconds)
                except ValueError:
                    pass
        backoff = min(self.backoff_max_seconds, self.backoff_base_seconds * 2**attempt)
        return backoff * random.uniform(0.5, 1.0)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"code": "http_error", "title": response.reason_phrase, "status": response.status_code}
    return body if isinstance(body, dict) else {"code": "http_error", "status": response.status_code}


def _result(response: httpx.Response) -> APIResponse:
    if response.status_code >= 400:
        raise error_for(response.status_code, _problem(response), dict(response.headers))
    data: Any = None
    if response.content:
        data = response.json() if "json" in response.headers.get("content-type", "") else response.text
    return APIResponse(
        status_code=response.status_code,
        data=data,
        headers=response.headers,
        request_id=response.headers.get(REQUEST_ID_HEADER),
        replayed=response.headers.get(IDEMPOTENT_REPLAYED_HEADER) == "true",
        raw=response,
    )


def _prepare(
    method: str,
    json: Any,
    headers: Mapping[str, str] | None,
    idempotency_key: str | None,
    user_id: str | None,
) -> tuple[bytes | None, dict[str, str]]:
    method = method.upper()
    out = dict(headers or {})
    content = None
    if json is not None:
        content = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        out.setdefault("Content-Type", "application/json")
    if method in MUTATING:
        out.setdefault(IDEMPOTENCY_HEADER, idempotency_key or str(uuid.uuid4()))
    if user_id is not None:
        out[END_USER_HEADER] = user_id
    return content, out


class _Base:
    def __init__(self, key_id: str, secret: str, clock: Callable[[], float] | None, max_retries: int) -> None:
        self.auth = SceneOSAuth(key_id, secret, clock=clock)
        self.retry = RetryPolicy(max_retries=max_retries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.auth.key_id!r})"


class PartnerClient(_Base):
    """Synchronous partner client. ``client.post("/v1/party/customers", json={...})``."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        clock: Callable[[], float] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(key_id, secret, clock, max_retries)
        self.http = httpx.Client(base_url=base_url, auth=self.auth, timeout=timeout, transport=transport,
                                 headers={"User-Agent": USER_AGENT})

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        user_id: str | None = None,
    ) -> APIResponse:
        content, sent_headers = _prepare(method, json, headers, idempotency_key, user_id)
        attempt = 0
        while True:
            try:
                response = self.http.request(method, path, content=content, params=params, headers=sent_headers)
            except httpx.TransportError:
                wait = self.retry.delay(attempt, None)
                if wait is None:
                    raise
            else:
                wait = self.retry.delay(attempt, response)
                if wait is None:
                    return _result(response)
            time.sleep(wait)
            attempt += 1

    def get(self, path: str, **kwargs: Any) -> APIResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> APIResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> APIResponse:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> APIResponse:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PartnerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPartnerClient(_Base):
    """Asynchronous partner client: the same calls, awaited."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        clock: Callable[[], float] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(key_id, secret, clock, max_retries)
        self.http = httpx.AsyncClient(base_url=base_url, auth=self.auth, timeout=timeout, transport=transport,
                                      headers={"User-Agent": USER_AGENT})

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        user_id: str | None = None,
    ) -> APIResponse:
        content, sent_headers = _prepare(method, json, headers, idempotency_key, user_id)
        attempt = 0
        while True:
            try:
                response = await self.http.request(method, path, content=content, params=params, headers=sent_headers)
            except httpx.TransportError:
                wait = self.retry.delay(attempt, None)
                if wait is None:
                    raise
            else:
                wait = self.retry.delay(attempt, response)
                if wait is None:
                    return _result(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def get(self, path: str, **kwargs: Any) -> APIResponse:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> APIResponse:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> APIResponse:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> APIResponse:
        return await self.request("DELETE", path, **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncPartnerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["APIResponse", "AsyncPartnerClient", "PartnerClient", "RetryPolicy", "SceneOSAPIError", "SceneOSAuth"]
