"""OpenAI-shaped errors for `/v1/*` only.

The rest of the API answers `{"error": {"code", "message", "details"}}` through the app-wide
handlers. Routes of this package use `OpenAIRoute`, which swaps in the handlers below for the
request it serves, so the same typed errors (`AppError`, validation errors, HTTP errors, even
an unexpected exception) become `{"error": {"message", "type", "code", "param"}}` here. The
swap happens around the whole route (dependencies included), so a dependency with `yield`
(the database session) still sees the exception and rolls back.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from app.core.errors import (
    DATABASE_RETRY_HEADERS,
    DATABASE_UNAVAILABLE_CODE,
    DATABASE_UNAVAILABLE_MESSAGE,
    AppError,
    log_database_unavailable,
)
from app.core.openai_compat import openai_param
from app.db.errors import is_database_unavailable
from app.models.schemas.openai import OpenAIErrorResponse

logger = logging.getLogger(__name__)

_TYPES = {
    401: "invalid_request_error",  # what OpenAI answers for a bad key
    403: "permission_error",
    429: "rate_limit_error",
}
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _error_type(status_code: int, code: str | None) -> str:
    if code == "quota_exceeded":
        return "insufficient_quota"
    if status_code >= 500:
        return "server_error"
    return _TYPES.get(status_code, "invalid_request_error")


def openai_error_response(
    status_code: int,
    message: str,
    *,
    code: str | None,
    param: str | None = None,
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    # OpenAI reports invalid parameters as 400; the SDK has no special class for 422.
    status_code = 400 if status_code == 422 else status_code
    body = {
        "error": {
            "message": message,
            "type": error_type or _error_type(status_code, code),
            "code": code,
            "param": param,
        }
    }
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    param = getattr(exc, "param", None)
    if param is None:
        details = exc.details
        first = details[0] if isinstance(details, list) and details else details
        if isinstance(first, dict):
            param = openai_param(first.get("field"))
    return openai_error_response(
        exc.status_code,
        exc.message,
        code=exc.code,
        param=param,
        error_type=getattr(exc, "error_type", None),
        headers=exc.headers,
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first: dict[str, Any] = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ())]
    # Drop "body"/"query"/"path": the client knows the field by its own name.
    param = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else None)
    reason = str(first.get("msg", "invalid value"))
    message = f"Invalid '{param}': {reason}" if param else reason
    return openai_error_response(400, message, code="invalid_value", param=param)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return openai_error_response(
        exc.status_code, message, code=code, headers=getattr(exc, "headers", None)
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_database_unavailable(exc):
        # No connection to be had (refused, too many clients, pool timeout): worth a retry.
        log_database_unavailable(request, exc)
        return openai_error_response(
            503,
            DATABASE_UNAVAILABLE_MESSAGE,
            code=DATABASE_UNAVAILABLE_CODE,
            headers=DATABASE_RETRY_HEADERS,
        )
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return openai_error_response(500, "Internal server error", code="internal_error")


OPENAI_EXCEPTION_HANDLERS: dict[Any, Any] = {
    AppError: _app_error,
    RequestValidationError: _validation_error,
    StarletteHTTPException: _http_error,
    Exception: _unexpected,
}


def openai_error_doc(description: str) -> dict[str, Any]:
    """One OpenAPI `responses` entry with OpenAI's error body."""
    return {"model": OpenAIErrorResponse, "description": description}


OPENAI_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: openai_error_doc("Invalid request (`param` names it)"),
    401: openai_error_doc("Missing or invalid API key"),
    404: openai_error_doc("Not found (or another user's)"),
}
# What a create (video, image generation or edit) can answer besides the above.
OPENAI_CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: openai_error_doc("Idempotency-Key already used with a different request"),
    413: openai_error_doc("A reference image is too large, or the storage quota is full"),
    415: openai_error_doc("Unsupported request body or reference image type"),
}


class OpenAIRoute(APIRoute):
    """An APIRoute whose errors are rendered in OpenAI's shape."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # In place (outer middleware may read what the route writes into the scope), and put
        # back afterwards: only this route's request sees these handlers. The route's app reads
        # them when it starts, around the dependencies' exit stacks.
        key = "starlette.exception_handlers"
        previous = scope.get(key)
        scope[key] = (OPENAI_EXCEPTION_HANDLERS, {})
        try:
            await super().handle(scope, receive, send)
        finally:
            if previous is None:
                scope.pop(key, None)
            else:
                scope[key] = previous
