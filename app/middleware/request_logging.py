"""Records every `/api/` request into api_request_logs, off the request path.

Pure ASGI: `receive` and `send` are wrapped and every message passes straight through, so
streaming responses and SSE are untouched. Only the first `REQUEST_LOG_MAX_BODY_BYTES` of a
JSON/form/text body are kept (multipart uploads are summarised as field names and sizes);
decoding, redaction and encryption happen later in the writer (`app.core.request_log.writer`).
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect as sa_inspect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.request_log.entry import BodyCapture, RequestLogEntry
from app.core.request_log.multipart import MultipartSummary

API_PREFIX = ("/api/", "/v1/")
REQUEST_ID_HEADER = b"x-request-id"
# Accept a caller's id only when it is short and harmless (it ends up in logs and headers).
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:\-]{0,35}")
DEFAULT_MAX_BODY_BYTES = 4096


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_textual(media_type: str) -> bool:
    return (
        media_type == "application/json"
        or media_type.endswith("+json")
        or (media_type.startswith("text/") and media_type != "text/event-stream")
    )


def request_body_capturable(media_type: str) -> bool:
    return _is_textual(media_type) or media_type == "application/x-www-form-urlencoded"


def response_body_capturable(media_type: str) -> bool:
    return _is_textual(media_type)


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return str(uuid.uuid4())


def _principal_user_id(principal: Any) -> str | None:
    """The caller's user id, without touching the database.

    By now the request's session is closed (and rolled back after an error, which expires the
    user object), so `principal.user.id` could try to reload: read the identity key instead.
    """
    user = getattr(principal, "user", None)
    if user is None:
        return None
    state = sa_inspect(user, raiseerr=False)
    identity = getattr(state, "identity", None)
    if identity:
        return str(identity[0])
    return None


class RequestLoggingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return

        started_at = datetime.now(UTC)
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        # Make sure the state dict exists *before* the app runs, so the principal that
        # `get_principal` stores on `request.state` lands in the dict we read afterwards.
        state: dict[str, Any] = scope.setdefault("state", {})
        # Reuse an id an outer middleware already gave the request (structured logs, metrics).
        request_id = state.get("request_id") or _request_id(headers)
        state["request_id"] = request_id
        app_state = getattr(scope.get("app"), "state", None)
        settings = getattr(app_state, "settings", None)
        limit = int(getattr(settings, "request_log_max_body_bytes", DEFAULT_MAX_BODY_BYTES))

        request_content_type: str | None = None
        for name, value in headers:
            if name == b"content-type":
                request_content_type = value.decode("latin-1")
                break
        request_media = _media_type(request_content_type)
        request_capture = BodyCapture(limit if request_body_capturable(request_media) else 0)
        multipart = (
            MultipartSummary.for_content_type(request_content_type or "")
            if request_media == "multipart/form-data"
            else None
        )

        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                request_capture.feed(chunk)
                if multipart is not None:
                    multipart.feed(chunk)
            return message

        status_code = 0
        response_content_type: str | None = None
        response_capture = BodyCapture(0)
        request_id_header = request_id.encode("ascii")

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code, response_content_type, response_capture
            if message["type"] == "http.response.start":
                status_code = message["status"]
                raw_headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER
                ]
                raw_headers.append((REQUEST_ID_HEADER, request_id_header))
                message["headers"] = raw_headers
                for name, value in raw_headers:
                    if name.lower() == b"content-type":
                        response_content_type = value.decode("latin-1")
                        break
                media = _media_type(response_content_type)
                response_capture = BodyCapture(limit if response_body_capturable(media) else 0)
            elif message["type"] == "http.response.body":
                response_capture.feed(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException:
            # The server turns this into a 500 (or the client went away mid-stream); record
            # what we know and let it propagate.
            if status_code == 0:
                status_code = 500
            raise
        finally:
            entry = RequestLogEntry(
                request_id=request_id,
                started_at=started_at,
                method=scope.get("method", ""),
                path=scope["path"],
                query_string=scope.get("query_string", b""),
                status_code=status_code,
                duration_ms=(time.perf_counter() - started) * 1000.0,
                client_ip=(scope.get("client") or (None,))[0],
                request_headers=headers,
                request_content_type=request_content_type,
                request_body=request_capture.data() if request_capture.limit else None,
                request_body_truncated=request_capture.truncated,
                request_bytes=request_capture.total,
                request_summary=multipart.result() if multipart is not None else None,
                response_content_type=response_content_type,
                response_body=response_capture.data() if response_capture.limit else None,
                response_body_truncated=response_capture.truncated,
                response_bytes=response_capture.total,
            )
            principal = state.get("principal")
            if principal is not None:
                entry.user_id = _principal_user_id(principal)
                entry.session_id = getattr(principal, "session_id", None)
                entry.api_key_id = getattr(principal, "api_key_id", None)
            writer = getattr(app_state, "request_log_writer", None)
            if writer is not None:
                writer.submit(entry)
