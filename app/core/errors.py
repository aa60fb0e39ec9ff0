"""Typed application errors and the handlers that render every error as one JSON shape.

Every error response is `{"error": {"code", "message", "details"}}`; nothing else (and never a
stack trace) reaches a client.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.db.errors import is_database_unavailable

logger = logging.getLogger(__name__)


class AppError(Exception):
    """Base of every business error; subclasses fix the status and the machine-readable code."""

    status_code: int = 400
    code: str = "bad_request"
    message: str = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.details = details
        self.headers = headers
        super().__init__(self.message)


class BadRequest(AppError):
    pass


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"
    message = "Authentication required"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    message = "You are not allowed to do this"


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = "Not found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = "Conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    message = "Payload too large"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"
    message = "Unsupported media type"


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_error"
    message = "Request validation failed"


class TooManyRequests(AppError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after: int, **kwargs: Any) -> None:
        headers = {"Retry-After": str(max(1, retry_after))}
        super().__init__(message, headers=headers, **kwargs)
        self.retry_after = retry_after


class QuotaExceeded(AppError):
    status_code = 413
    code = "quota_exceeded"
    message = "Storage quota exceeded"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    message = "Service unavailable"


# A pool slot or a restarted server is usually back within seconds.
DATABASE_RETRY_AFTER_SECONDS = 2
DATABASE_UNAVAILABLE_CODE = "database_unavailable"
DATABASE_UNAVAILABLE_MESSAGE = "The database is busy or unreachable; retry shortly"
DATABASE_RETRY_HEADERS = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
# What a request that found no database connection raises (`app.db.errors` decides): SQLAlchemy
# errors, and the socket errors asyncpg lets through on connect.
DATABASE_ERROR_TYPES: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)


def log_database_unavailable(request: Request, exc: BaseException) -> None:
    # One line, no traceback: under overload every request would log one, and the cause is
    # outside this process. The exception's text names no credentials (SQLAlchemy hides them).
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    logger.warning(
        "database unavailable on %s %s: %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        reason[:300],
    )


class ErrorInfo(BaseModel):
    code: str = Field(description="Machine-readable reason, e.g. `validation_error`.")
    message: str = Field(description="What went wrong, for a person.")
    details: Any = Field(
        default=None, description="Extra data; for validation errors a list of failed fields."
    )


class ErrorBody(BaseModel):
    """The body of every error response outside `/v1` (which uses OpenAI's shape)."""

    error: ErrorInfo


_ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (e.g. a body that cannot be parsed)",
    401: "Missing, invalid, revoked or expired credentials",
    403: "Not allowed",
    404: "Not found (another user's object is not found either)",
    409: "Conflicts with the current state",
    413: "Too large (or over the storage quota)",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    422: "Invalid input; `details` lists each field",
    429: "Too many requests; retry after `Retry-After` seconds",
    503: "Temporarily unavailable (e.g. `database_unavailable`); retry after `Retry-After`",
}
_RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
}


def error_response_doc(status: int, description: str | None = None) -> dict[str, Any]:
    """One OpenAPI `responses` entry with the error body's schema."""
    doc: dict[str, Any] = {
        "model": ErrorBody,
        "description": description or _ERROR_DESCRIPTIONS.get(status, "Error"),
    }
    if status in (429, 503):
        doc["headers"] = _RETRY_AFTER
    return doc


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the `ErrorBody` schema:
    `APIRouter(responses=error_responses(401, 422))`, `responses=error_responses(404)`.
    Declaring 422 also replaces FastAPI's default `HTTPValidationError` body, which is not
    what this API sends."""
    return {code: error_response_doc(code) for code in codes}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details), status_code=status_code, headers=headers
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "validation_error",
    429: "rate_limited",
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        # Drop the "body"/"query" prefix so the field name reads as the client sent it.
        field = ".".join(loc[1:]) if len(loc) > 1 else ".".join(loc)
        item: dict[str, Any] = {"field": field, "location": loc[0] if loc else None}
        item["message"] = err.get("msg", "invalid value")
        item["type"] = err.get("type")
        details.append(item)
    return details


async def _app_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def _validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    fields = ", ".join(d["field"] for d in details if d["field"]) or "request"
    return error_response(422, "validation_error", f"Invalid value for: {fields}", details)


async def _http_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").capitalize()
    return error_response(exc.status_code, code, message, None, getattr(exc, "headers", None))


def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log_database_unavailable(request, exc)
    return error_response(
        503,
        DATABASE_UNAVAILABLE_CODE,
        DATABASE_UNAVAILABLE_MESSAGE,
        None,
        DATABASE_RETRY_HEADERS,
    )


async def _database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_unavailable(exc):
        # Not ours to answer: on to the catch-all (500, logged with its traceback).
        raise exc
    return _database_unavailable(request, exc)


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    if is_database_unavailable(exc):
        # Raised outside a route (a middleware): same answer as `_database_error_handler`.
        return _database_unavailable(request, exc)
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    for error_type in DATABASE_ERROR_TYPES:
        app.add_exception_handler(error_type, _database_error_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
