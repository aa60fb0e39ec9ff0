"""Structured logs: one JSON object per line with the request id, readable text in development,
and settings read from the environment."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.core.observability.logging import (
    ContextFilter,
    JsonFormatter,
    ObservabilitySettings,
    TextFormatter,
    current_request_id,
    get_observability_settings,
    log_context,
    request_context,
    setup_logging,
    uvicorn_log_config,
)
from app.middleware.metrics import MetricsMiddleware
from tests.core.observability.helpers import logging_restored, serve

logger = logging.getLogger("tests.observability")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


def capture(log_format: str, level: int = logging.INFO) -> io.StringIO:
    buffer = io.StringIO()
    setup_logging(level, log_format=log_format, stream=buffer)  # type: ignore[arg-type]
    return buffer


def json_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    # Every line must parse on its own: that is the whole contract.
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def logging_app() -> Any:
    async def work(request: Request) -> JSONResponse:
        logger.info("working on %s", request.path_params["name"], extra={"items": 3})
        await asyncio.sleep(0.01)  # other requests interleave here
        with log_context(task_id=f"task-{request.path_params['name']}"):
            logger.warning("inside a task")
        return JSONResponse({"request_id": current_request_id()})

    async def crash(request: Request) -> JSONResponse:
        try:
            raise ValueError("upstream said: Incorrect API key sk-abcdefghijklmnop")
        except ValueError:
            logger.exception("call failed with Bearer sk-zyxwvutsrqponmlk")
        return JSONResponse({})

    routes = [Route("/work/{name}", work), Route("/crash", crash)]
    return MetricsMiddleware(Starlette(routes=routes))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=logging_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_json_lines_carry_the_request_id_of_their_request(
    restore_logging: None, http: httpx.AsyncClient
) -> None:
    buffer = capture("json")
    responses = await asyncio.gather(
        http.get("/work/a", headers={"X-Request-ID": "req-a"}),
        http.get("/work/b", headers={"X-Request-ID": "req-b"}),
        http.get("/work/c"),
    )
    generated = responses[2].json()["request_id"]
    lines = [line for line in json_lines(buffer) if line["logger"] == "tests.observability"]
    assert len(lines) == 6
    by_message = {(line["message"], line["request_id"]): line for line in lines}
    for name, request_id in (("a", "req-a"), ("b", "req-b"), ("c", generated)):
        started = by_message[(f"working on {name}", request_id)]
        assert started["level"] == "INFO"
        assert started["items"] == 3
        assert "task_id" not in started
        inside = by_message[("inside a task", request_id)]
        assert inside["task_id"] == f"task-{name}"
        assert inside["level"] == "WARNING"
        assert inside["ts"].endswith("+00:00")


async def test_tracebacks_stay_on_one_line_without_secrets(
    restore_logging: None, http: httpx.AsyncClient
) -> None:
    buffer = capture("json")
    assert (await http.get("/crash")).status_code == 200
    raw = buffer.getvalue()
    (line,) = [entry for entry in json_lines(buffer) if entry["logger"] == "tests.observability"]
    assert "ValueError" in line["exception"]
    assert "Traceback" in line["exception"]
    assert "sk-abcdefghijklmnop" not in raw
    assert "sk-zyxwvutsrqponmlk" not in raw
    assert line["message"] == "call failed with Bearer ***"


async def test_text_lines_are_readable_and_show_a_short_request_id(
    restore_logging: None, http: httpx.AsyncClient
) -> None:
    buffer = capture("text")
    response = await http.get("/work/t")
    request_id = response.json()["request_id"]
    text = buffer.getvalue()
    assert f"INFO    tests.observability [request_id={request_id[:8]}]: working on t" in text
    assert f"[request_id={request_id[:8]} task_id=task-t]: inside a task" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


async def test_uvicorn_access_lines_are_structured_and_carry_the_request_id(
    restore_logging: None,
) -> None:
    buffer = capture("json")
    async with (
        serve(logging_app(), access_log=True, log_level="info") as base_url,
        httpx.AsyncClient(base_url=base_url) as client,
    ):
        response = await client.get("/work/z?secret=1", headers={"X-Request-ID": "acc-1"})
    assert response.status_code == 200
    access = [line for line in json_lines(buffer) if line["logger"] == "uvicorn.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "acc-1"
    assert access[0]["method"] == "GET"
    assert access[0]["path"] == "/work/z"
    assert access[0]["status"] == 200


def test_context_is_empty_outside_requests_and_nests_inside() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)
    assert set(json.loads(formatter.format(record))) == {"ts", "level", "logger", "message"}
    with request_context("outer"), log_context(task_id="t1"):
        with log_context(attempt=2):
            nested = logging.LogRecord("x", logging.INFO, __file__, 1, "nested", None, None)
            ContextFilter().filter(nested)
        after = logging.LogRecord("x", logging.INFO, __file__, 1, "after", None, None)
        ContextFilter().filter(after)
    assert json.loads(formatter.format(nested))["attempt"] == 2
    assert json.loads(formatter.format(nested))["task_id"] == "t1"
    assert "attempt" not in json.loads(formatter.format(after))
    assert json.loads(formatter.format(after))["request_id"] == "outer"
    assert current_request_id() is None


def test_setup_is_idempotent(restore_logging: None) -> None:
    root = logging.getLogger()
    setup_logging(logging.INFO, log_format="json", stream=io.StringIO())
    setup_logging(logging.DEBUG, log_format="text", stream=io.StringIO())
    ours = [h for h in root.handlers if h.get_name() == "genapi"]
    assert len(ours) == 1
    assert isinstance(ours[0].formatter, TextFormatter)
    assert root.level == logging.DEBUG


def test_uvicorn_log_config_applies_the_chosen_format(restore_logging: None) -> None:
    settings = ObservabilitySettings(_env_file=None, env="production")
    config = uvicorn_log_config(settings=settings)
    logging.config.dictConfig(config)
    root = logging.getLogger()
    assert any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    assert logging.getLogger("uvicorn.access").propagate is True
    assert not logging.getLogger("uvicorn.access").handlers


@pytest.mark.parametrize(
    ("env", "log_format", "expected"),
    [
        ({"ENV": "production"}, None, "json"),
        ({"ENV": "development"}, None, "text"),
        ({"ENV": "test"}, None, "text"),
        ({"ENV": "development"}, "JSON", "json"),
        ({"ENV": "production"}, "text", "text"),
    ],
)
def test_the_format_follows_env_unless_log_format_is_set(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], log_format: str | None, expected: str
) -> None:
    monkeypatch.chdir("/")  # no .env from the working copy
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if log_format is None:
        monkeypatch.delenv("LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("LOG_FORMAT", log_format)
    get_observability_settings.cache_clear()
    try:
        assert get_observability_settings().resolved_log_format == expected
    finally:
        get_observability_settings.cache_clear()


def test_settings_reject_nonsense_and_parse_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(ValidationError, match="LOG_LEVEL"):
        ObservabilitySettings()
    monkeypatch.setenv("LOG_LEVEL", "warning")
    monkeypatch.setenv("METRICS_ALLOWLIST", "10.0.0.0/8, 2001:db8::/32,192.168.1.9")
    monkeypatch.setenv("METRICS_TOKEN", "   ")
    settings = ObservabilitySettings()
    assert settings.level_number == logging.WARNING
    assert [str(n) for n in settings.metrics_allowlist] == [
        "10.0.0.0/8",
        "2001:db8::/32",
        "192.168.1.9/32",
    ]
    assert settings.metrics_token is None
    monkeypatch.setenv("METRICS_ALLOWLIST", "not-a-network")
    with pytest.raises(ValidationError):
        ObservabilitySettings()
