"""The shared outbound HTTP client and the request plumbing every adapter uses.

`build_http_client` makes the one pooled `httpx.AsyncClient` (created in the lifespan).
`HttpAdapter` sends one upstream request: URL joining, the bearer header, timing logs, and the
translation of every HTTP outcome into a typed `UpstreamError` (app/clients/errors.py).
`TaskAdapter` adds the create-then-poll shape shared by the Sora, Veo and Seedance aggregators.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from app.clients.base import (
    GenerationRequest,
    MediaKind,
    TaskStatus,
    UpstreamCredentials,
    UpstreamStatus,
    UpstreamSubmission,
)
from app.clients.errors import (
    MAX_SNIPPET_CHARS,
    UpstreamAuthError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
    parse_retry_after,
    sanitize_reason,
)
from app.clients.normalize import (
    compact_raw,
    extract_task_id,
    find_task_id,
    normalize_status,
    reason_from_body,
)
from app.clients.retry import (
    DEFAULT_POLL_RETRY,
    DEFAULT_SUBMIT_RETRY,
    RetryPolicy,
    call_with_retry,
    is_poll_retryable,
    is_submit_retryable,
)
from app.core.config import Settings

logger = logging.getLogger("app.clients")

SIMULATOR_BASE_URL = "http://simulator.internal"
USER_AGENT = "genapi/0.1"
DEFAULT_CONNECT_TIMEOUT = 10.0

_SNIPPET_SOURCE_CHARS = 4096
_HTML_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
# Header values httpx can send as-is; anything else would make it raise with the value in the
# message, so such a key is refused before any request is built.
_HEADER_SAFE_RE = re.compile(r"^[\x21-\x7e]+$")


def simulator_base_url() -> str:
    """The base URL under which the in-process simulator is mounted on the shared client."""
    return SIMULATOR_BASE_URL


# Connection pools behind the shared client (see `ShardedTransport`).
POOL_SHARDS = 4


class ShardedTransport(httpx.AsyncBaseTransport):
    """Several connection pools behind one transport, requests dealt out in turn.

    httpcore re-examines its whole pool (every queued request against every connection) each
    time a request starts or ends, so one pool serving ~50 concurrent polls spent about two
    thirds of the worker's CPU on that bookkeeping. With K pools each sees about a K-th of the
    requests and connections: K² less scanning. Every shard keeps the full limits, so a burst
    that lands on one shard is never queued while another sits idle; the total stays bounded
    by the concurrency that makes the requests.
    """

    def __init__(self, shards: int, limits: httpx.Limits) -> None:
        if shards < 1:
            raise ValueError("at least one shard")
        self._pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(shards)]
        self._turn = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._turn = (self._turn + 1) % len(self._pools)
        return await self._pools[self._turn].handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def build_http_client(
    settings: Settings,
    *,
    simulator_app: Any = None,
    mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    event_hooks: Mapping[str, list[Any]] | None = None,
) -> httpx.AsyncClient:
    """The one pooled client for every upstream call.

    `simulator_app` (an ASGI app) is served in-process at `simulator_base_url()`; `mounts` adds
    other transports by URL pattern. Real upstreams go through the default pooled transport.
    """
    read = settings.request_timeout
    timeout = httpx.Timeout(read, connect=min(DEFAULT_CONNECT_TIMEOUT, read), pool=read)
    limits = httpx.Limits(
        # Per pool shard: the worker's concurrency plus room for downloads and webhooks.
        max_connections=settings.max_concurrent_tasks + 16,
        max_keepalive_connections=settings.max_concurrent_tasks + 16,
        keepalive_expiry=30.0,
    )
    transports: dict[str, httpx.AsyncBaseTransport] = dict(mounts or {})
    if simulator_app is not None:
        transports[SIMULATOR_BASE_URL] = httpx.ASGITransport(app=simulator_app)
    return httpx.AsyncClient(
        timeout=timeout,
        transport=ShardedTransport(POOL_SHARDS, limits),
        mounts=transports or None,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        event_hooks=dict(event_hooks) if event_hooks else None,
    )


# One multipart part: (field name, (filename or None, content, content type or None)). A None
# filename makes it a plain form field; httpx then always sends multipart/form-data.
MultipartPart = tuple[str, tuple[str | None, bytes | str, str | None]]


def form_part(name: str, value: Any) -> MultipartPart:
    """A plain multipart text field; booleans as `true`/`false` like JSON."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return name, (None, text, None)


def file_part(name: str, file: tuple[str, bytes, str]) -> MultipartPart:
    filename, content, content_type = file
    return name, (filename, content, content_type)


def as_int(value: Any) -> Any:
    """`"10"`/`10.0` -> 10 (upstreams expect a number); anything else is left for them to judge."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                return value
            return int(number) if number.is_integer() else value
    return value


def as_bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off", ""):
        return False
    if isinstance(value, int) and not isinstance(value, bool):
        return bool(value)
    return value


def join_url(base_url: str, path: str) -> str:
    """`base_url` with or without a trailing slash or a path prefix, plus an absolute `path`."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def quote_id(upstream_id: str) -> str:
    """Task ids may hold ':' or '/': encode everything so the id stays one path segment."""
    return quote(upstream_id, safe="")


def transport_error(exc: Exception, *, upstream: str) -> UpstreamError:
    """Map an httpx exception. Only connect failures prove the request never left."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return UpstreamUnavailable(
            f"could not reach the upstream in time ({name})",
            upstream=upstream,
            reached_upstream=False,
        )
    if isinstance(exc, httpx.ConnectError):
        return UpstreamUnavailable(
            f"could not connect to the upstream ({name})", upstream=upstream, reached_upstream=False
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL | httpx.LocalProtocolError):
        # Never str(exc) here: a local protocol error may quote a header value.
        return UpstreamUnavailable(
            f"the upstream base URL or request is invalid ({name})",
            upstream=upstream,
            reached_upstream=False,
            retryable=False,
        )
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamUnavailable(
            f"the upstream did not answer in time ({name})", upstream=upstream
        )
    return UpstreamUnavailable(f"the connection to the upstream failed ({name})", upstream=upstream)


def _looks_like_html(response: httpx.Response, text: str) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    head = text[:512].lstrip()[:15].lower()
    return "html" in content_type or head.startswith(("<!doctype", "<html", "<head", "<body"))


def _snippet(response: httpx.Response, secret: str) -> str:
    # Bodies can be megabytes of base64; a snippet never needs more than the head.
    text = response.text[:_SNIPPET_SOURCE_CHARS]
    if _looks_like_html(response, text):
        match = _HTML_TITLE_RE.search(text)
        text = match.group(1) if match else _TAG_RE.sub(" ", text)
    return sanitize_reason(text, secret, limit=MAX_SNIPPET_CHARS)


def response_error(response: httpx.Response, *, upstream: str, secret: str) -> UpstreamError:
    """The typed error for a non-2xx answer (reason text sanitised, key scrubbed)."""
    status = response.status_code
    snippet = _snippet(response, secret)
    reason: str | None = None
    if not _looks_like_html(response, response.text):
        try:
            reason = reason_from_body(response.json(), secret=secret)
        except (json.JSONDecodeError, UnicodeDecodeError):
            reason = snippet or None
    common: dict[str, Any] = {"upstream": upstream, "status_code": status, "body_snippet": snippet}
    if status in (401, 403):
        return UpstreamAuthError(reason and f"credentials rejected: {reason}", **common)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return UpstreamRateLimited(reason, retry_after=retry_after, **common)
    if status == 408:
        return UpstreamUnavailable(reason or "the upstream timed out the request", **common)
    if 400 <= status < 500:
        fallback = f"the upstream rejected the request (HTTP {status})"
        return UpstreamRejected(reason or fallback, **common)
    if status >= 500:
        detail = reason or (f"error page: {snippet}" if snippet else None)
        return UpstreamUnavailable(detail, **common)
    return UpstreamMalformed(f"unexpected HTTP {status} from the upstream", **common)


class HttpAdapter:
    """Shared plumbing of every adapter. Subclasses set `name` and implement the protocol.

    Constructor (all adapters): `HttpAdapter(http, *, poll_retry=None, submit_retry=None,
    timeout=None)`: the shared client, the retry policies (defaults in app/clients/retry.py)
    and an optional per-adapter timeout overriding the client's.
    """

    name: str = "upstream"
    supports_cancel: bool = False
    synchronous: bool = False

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        poll_retry: RetryPolicy | None = None,
        submit_retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        self.http = http
        self.poll_retry = poll_retry or DEFAULT_POLL_RETRY
        self.submit_retry = submit_retry or DEFAULT_SUBMIT_RETRY
        self.timeout: httpx.Timeout | None = (
            httpx.Timeout(timeout) if isinstance(timeout, int | float) else timeout
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # ---------------------------------------------------------------------------------------
    # Authentication

    def checked_key(self, credentials: UpstreamCredentials) -> str:
        """The API key, refused before any request is built when it cannot go in a header."""
        secret = credentials.api_key
        if not secret or not _HEADER_SAFE_RE.match(secret):
            raise UpstreamAuthError(
                "the API key is empty or contains characters that cannot be sent",
                upstream=self.name,
                reached_upstream=False,
            )
        return secret

    def auth_headers(self, credentials: UpstreamCredentials) -> dict[str, str]:
        """Headers that authenticate one API call: `Authorization: Bearer <key>` by default.

        Official provider adapters override this (Gemini: `x-goog-api-key`; Kling: a JWT
        minted from the key pair).
        """
        return {"Authorization": f"Bearer {self.checked_key(credentials)}"}

    def download_headers(self, credentials: UpstreamCredentials) -> dict[str, str]:
        """Headers the media downloader sends with a `requires_auth` result (and only to that
        result URL's origin): the same credentials as an API call."""
        return self.auth_headers(credentials)

    # ---------------------------------------------------------------------------------------
    # One request

    async def request(
        self,
        method: str,
        path: str,
        credentials: UpstreamCredentials,
        *,
        json_body: Mapping[str, Any] | None = None,
        multipart: list[MultipartPart] | None = None,
        request_timeout: httpx.Timeout | None = None,
        allow_empty: bool = False,
    ) -> Any:
        """Send once; return the decoded JSON body or raise a typed `UpstreamError`."""
        secret = credentials.api_key
        url = join_url(credentials.base_url, path)
        headers = {**self.auth_headers(credentials), "Accept": "application/json"}
        effective_timeout = request_timeout or self.timeout
        kwargs: dict[str, Any] = {"headers": headers}
        if effective_timeout is not None:
            kwargs["timeout"] = effective_timeout
        if json_body is not None:
            kwargs["json"] = dict(json_body)
        if multipart is not None:
            kwargs["files"] = multipart
        log_path = _log_path(url)
        logger.debug(
            "%s %s %s sending (json keys=%s, multipart parts=%s)",
            self.name,
            method,
            log_path,
            sorted(json_body) if json_body is not None else None,
            [part[0] for part in multipart] if multipart is not None else None,
        )
        started = time.perf_counter()
        try:
            response = await self.http.request(method, url, **kwargs)
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            elapsed = (time.perf_counter() - started) * 1000
            error = transport_error(exc, upstream=self.name)
            logger.warning(
                "%s %s %s failed after %.0f ms: %s", self.name, method, log_path, elapsed, error
            )
            raise error from None
        elapsed = (time.perf_counter() - started) * 1000
        # Polls run every few seconds for every task: keep them out of the INFO stream.
        logger.log(
            logging.DEBUG if method == "GET" and response.is_success else logging.INFO,
            "%s %s %s -> %d in %.0f ms",
            self.name,
            method,
            log_path,
            response.status_code,
            elapsed,
        )
        if not response.is_success:
            error = response_error(response, upstream=self.name, secret=secret)
            logger.warning("%s %s %s: %r", self.name, method, log_path, error)
            raise error
        if not response.content.strip():
            if allow_empty:
                return None
            raise UpstreamMalformed(
                "the upstream returned an empty body",
                upstream=self.name,
                status_code=response.status_code,
            )
        if _looks_like_html(response, response.text):
            raise UpstreamMalformed(
                "the upstream returned an HTML page instead of JSON",
                upstream=self.name,
                status_code=response.status_code,
                body_snippet=_snippet(response, secret),
            )
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UpstreamMalformed(
                "the upstream returned a body that is not JSON",
                upstream=self.name,
                status_code=response.status_code,
                body_snippet=_snippet(response, secret),
            ) from None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s %s body: %s", self.name, method, log_path, _snippet(response, secret)
            )
        return payload

    # ---------------------------------------------------------------------------------------
    # Retry wrappers

    async def send_create(
        self, method: str, path: str, credentials: UpstreamCredentials, **kwargs: Any
    ) -> Any:
        """A create: retried only if it provably never reached the upstream."""
        return await call_with_retry(
            lambda: self.request(method, path, credentials, **kwargs),
            policy=self.submit_retry,
            retry_if=is_submit_retryable,
            description=f"{self.name} {method} {path}",
        )

    async def send_idempotent(
        self, method: str, path: str, credentials: UpstreamCredentials, **kwargs: Any
    ) -> Any:
        """A read or cancel: every transient failure is retried."""
        return await call_with_retry(
            lambda: self.request(method, path, credentials, **kwargs),
            policy=self.poll_retry,
            retry_if=is_poll_retryable,
            description=f"{self.name} {method} {_log_path(path)}",
        )

    async def poll_path(
        self,
        path: str,
        credentials: UpstreamCredentials,
        *,
        kind: MediaKind,
        previous: TaskStatus | None,
        require_results: bool = True,
    ) -> UpstreamStatus:
        """GET `path` and normalise it; an unreadable answer is retried like a transport error."""

        async def once() -> UpstreamStatus:
            payload = await self.request("GET", path, credentials)
            try:
                return normalize_status(
                    payload,
                    kind=kind,
                    previous=previous,
                    require_results=require_results,
                    secret=credentials.api_key,
                )
            except UpstreamError as exc:
                exc.upstream = exc.upstream or self.name
                raise

        return await call_with_retry(
            once,
            policy=self.poll_retry,
            retry_if=is_poll_retryable,
            description=f"{self.name} GET {_log_path(path)}",
        )

    def task_id_from(self, payload: Any, credentials: UpstreamCredentials) -> str:
        """The created task's id; an error envelope raises `UpstreamRejected` (never retried)."""
        try:
            return extract_task_id(payload, secret=credentials.api_key)
        except UpstreamError as exc:
            exc.upstream = exc.upstream or self.name
            raise

    def optional_task_id_from(self, payload: Any, credentials: UpstreamCredentials) -> str | None:
        """Like `task_id_from` for synchronous answers, which usually carry no id."""
        try:
            return find_task_id(payload, secret=credentials.api_key)
        except UpstreamError as exc:
            exc.upstream = exc.upstream or self.name
            raise


class TaskAdapter(HttpAdapter):
    """Create with one POST, then poll `status_path(id)`: the aggregator video families.

    The reference documents no cancel endpoint for these aggregators, so by default `cancel` is
    a no-op (`supports_cancel` False). `cancel_via_delete=True` sends `DELETE status_path(id)`
    instead, for aggregators (and the built-in simulator) that offer it.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        cancel_via_delete: bool = False,
        poll_retry: RetryPolicy | None = None,
        submit_retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        super().__init__(http, poll_retry=poll_retry, submit_retry=submit_retry, timeout=timeout)
        self.supports_cancel = cancel_via_delete

    def create_path(self, request: GenerationRequest) -> str:
        raise NotImplementedError

    def create_body(self, request: GenerationRequest) -> dict[str, Any]:
        raise NotImplementedError

    def status_path(self, upstream_id: str) -> str:
        raise NotImplementedError

    async def submit(
        self, request: GenerationRequest, credentials: UpstreamCredentials
    ) -> UpstreamSubmission:
        payload = await self.send_create(
            "POST",
            self.create_path(request),
            credentials,
            json_body=self.create_body(request),
        )
        upstream_id = self.task_id_from(payload, credentials)
        return UpstreamSubmission(
            upstream_id=upstream_id,
            status=submission_status(payload, kind=request.kind, secret=credentials.api_key),
            raw=compact_raw(payload) if isinstance(payload, Mapping) else None,
        )

    async def poll(
        self,
        upstream_id: str,
        credentials: UpstreamCredentials,
        *,
        kind: MediaKind = "video",
        previous: TaskStatus | None = None,
    ) -> UpstreamStatus:
        return await self.poll_path(
            self.status_path(upstream_id), credentials, kind=kind, previous=previous
        )

    async def cancel(self, upstream_id: str, credentials: UpstreamCredentials) -> None:
        """A no-op unless `cancel_via_delete`; then a task already gone (404/405) is fine."""
        if not self.supports_cancel:
            return None
        try:
            await self.send_idempotent(
                "DELETE", self.status_path(upstream_id), credentials, allow_empty=True
            )
        except UpstreamRejected as exc:
            if exc.status_code not in (404, 405):
                raise
        return None


def submission_status(payload: Any, *, kind: MediaKind, secret: str) -> UpstreamStatus:
    """The status a create answer implies: usually `queued`.

    A create answering "success" means "accepted", not "finished": without a result it is
    queued, never the `no_result` failure a poll would report.
    """
    status = normalize_status(payload, kind=kind, require_results=False, secret=secret)
    if status.status is TaskStatus.COMPLETED and not status.results:
        return UpstreamStatus(
            status=TaskStatus.QUEUED,
            upstream_status=status.upstream_status,
            submitted_at=status.submitted_at,
            raw=status.raw,
        )
    return status


def _log_path(url: str) -> str:
    try:
        return httpx.URL(url).raw_path.decode("ascii", "replace").split("?", 1)[0]
    except (httpx.InvalidURL, UnicodeError):
        return "<invalid url>"
