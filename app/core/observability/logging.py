"""Logging set-up: one JSON object per line in production, readable lines in development.

Every record carries the context of the work it belongs to: the HTTP request id (bound by the
metrics middleware for each request, from a sane `X-Request-ID` or a fresh uuid4) and whatever
`log_context(...)` binds (the worker binds `task_id`). Context lives in contextvars, so it
follows `await`s and the tasks a request starts, and never leaks between requests.

Settings (environment or `.env`, read by `ObservabilitySettings`):
- LOG_FORMAT: `json`, `text` or `auto` (default: JSON when ENV=production, text otherwise).
- LOG_LEVEL: DEBUG, INFO (default), WARNING, ERROR.

`setup_logging()` configures the root logger (the CLI calls it first); `uvicorn_log_config()` is
the `log_config` for `uvicorn.run`, so uvicorn's own lines (and those of every worker process it
starts) get the same format; its access lines carry method, path, status and client as fields.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import traceback
import uuid
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.clients.errors import scrub

LogFormat = Literal["auto", "json", "text"]
DEFAULT_METRICS_ALLOWLIST = "127.0.0.1/32,::1/128"
REQUEST_ID_HEADER = b"x-request-id"
# Same rule as the request-log middleware: a caller's id only when short and harmless.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:\-]{0,35}")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(context)s: %(message)s"

IPNetwork = IPv4Network | IPv6Network


class ObservabilitySettings(BaseSettings):
    """Logging and metrics settings (kept apart from `Settings`; same environment and `.env`)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    env: str = "development"
    log_format: LogFormat = "auto"
    log_level: str = "INFO"
    metrics_enabled: bool = True
    metrics_allowlist: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=lambda: _networks(DEFAULT_METRICS_ALLOWLIST)
    )
    metrics_token: SecretStr | None = None

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> object:
        if isinstance(value, str):
            level = value.strip().upper()
            if level not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
                raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
            return level
        return value

    @field_validator("metrics_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        if isinstance(value, str):
            return _networks(value)
        return value

    @field_validator("metrics_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @property
    def resolved_log_format(self) -> Literal["json", "text"]:
        if self.log_format == "auto":
            return "json" if self.env.strip().lower() == "production" else "text"
        return self.log_format

    @property
    def level_number(self) -> int:
        return int(logging.getLevelName(self.log_level))


def _networks(value: str) -> list[IPNetwork]:
    # strict=False: "10.0.0.1/8" means the network that address is in, not an error.
    return [ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]


@lru_cache
def get_observability_settings() -> ObservabilitySettings:
    return ObservabilitySettings()


# --- context ---------------------------------------------------------------------------------

_request_id: ContextVar[str | None] = ContextVar("genapi_request_id", default=None)
_fields: ContextVar[Mapping[str, Any] | None] = ContextVar("genapi_log_fields", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def request_id_from_headers(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's `X-Request-ID` when it is sane, else a new uuid4."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return str(uuid.uuid4())


@contextlib.contextmanager
def request_context(request_id: str) -> Iterator[str]:
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields to every record logged inside the block (e.g. `task_id=task.id`)."""
    token = _fields.set({**(_fields.get() or {}), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def context_fields() -> dict[str, Any]:
    request_id = _request_id.get()
    fields: dict[str, Any] = {} if request_id is None else {"request_id": request_id}
    fields.update(_fields.get() or {})
    return fields


class ContextFilter(logging.Filter):
    """Copies the current context onto each record (as `record.context_fields`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context_fields"):
            record.context_fields = context_fields()
        return True


# --- formatters ------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "context_fields", "context", "color_message", "taskName"}
)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks included, newlines escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        fields = getattr(record, "context_fields", None)
        if fields is None:
            fields = context_fields()
        payload.update(fields)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            payload.update(_access_fields(record.args))
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_") and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = scrub("".join(traceback.format_exception(*record.exc_info)))
        elif record.exc_text:
            payload["exception"] = scrub(record.exc_text)
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, default=_json_default, ensure_ascii=False)


def _access_fields(args: tuple[Any, ...]) -> dict[str, Any]:
    # uvicorn's access record: (client address, method, path with query, HTTP version, status).
    if len(args) != 5:
        return {}
    client, method, path, version, status = args
    return {
        "client": client,
        "method": method,
        "path": str(path).split("?", 1)[0],
        "http_version": version,
        "status": status,
    }


class TextFormatter(logging.Formatter):
    """Readable lines for development: `time LEVEL logger [request_id=… task_id=…]: message`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "context_fields", None)
        if fields is None:
            fields = context_fields()
        # A uuid4 request id is long: its first 8 characters are enough to follow one request.
        shown = {
            k: (v[:8] if k == "request_id" and isinstance(v, str) and len(v) == 36 else v)
            for k, v in fields.items()
        }
        record.context = (
            " [" + " ".join(f"{k}={v}" for k, v in shown.items()) + "]" if shown else ""
        )
        return super().format(record)


def build_formatter(log_format: Literal["json", "text"]) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


# --- set-up ----------------------------------------------------------------------------------

_HANDLER_NAME = "genapi"


def setup_logging(
    level: int | None = None,
    *,
    log_format: Literal["json", "text"] | None = None,
    stream: Any = None,
    settings: ObservabilitySettings | None = None,
) -> logging.Handler:
    """Route every logger through one handler on stderr in the configured format.

    Idempotent: a second call replaces the handler instead of adding one. `level` overrides
    LOG_LEVEL (commands that should stay quiet pass WARNING); `log_format` overrides LOG_FORMAT.
    """
    settings = settings or get_observability_settings()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(build_formatter(log_format or settings.resolved_log_format))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        # Ours from an earlier call, or the plain one `logging.basicConfig` adds (subclasses,
        # such as pytest's capture handlers, are left alone).
        if existing.get_name() == _HANDLER_NAME or type(existing) is logging.StreamHandler:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level if level is not None else settings.level_number)
    # uvicorn installs its own handlers unless given our config; send its records to ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv_logger = logging.getLogger(name)
        uv_logger.handlers.clear()
        uv_logger.propagate = True
    return handler


def uvicorn_log_config(
    level: int | None = None, settings: ObservabilitySettings | None = None
) -> dict[str, Any]:
    """`log_config` for `uvicorn.run`: uvicorn applies it in every process it starts."""
    settings = settings or get_observability_settings()
    formatter = (
        "app.core.observability.logging.JsonFormatter"
        if settings.resolved_log_format == "json"
        else "app.core.observability.logging.TextFormatter"
    )
    level_name = logging.getLevelName(level if level is not None else settings.level_number)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "app.core.observability.logging.ContextFilter"}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["context"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level_name},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level_name, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level_name, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level_name, "propagate": True},
        },
    }
