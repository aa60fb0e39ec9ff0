"""Metric helpers: outcome labels, the client hooks against the real simulator over HTTP, and
several processes summed through PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.clients.base import GenerationRequest, TaskStatus, UpstreamCredentials
from app.clients.errors import (
    UpstreamAuthError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from app.clients.sora import SoraAdapter
from app.core.observability import metrics as obs_metrics
from app.core.observability.logging import request_context
from app.core.observability.metrics import Snapshot, render, upstream_outcome
from app.core.observability.upstream import classify, upstream_event_hooks
from app.simulator import SimulatorConfig, create_simulator_app
from tests.core.observability.helpers import parse_samples, serve, value

SIM_KEY = "sk-simulator-test-key"
CALLS = "genapi_upstream_calls_total"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "ok"),
        (204, "ok"),
        (302, "ok"),
        (400, "rejected"),
        (404, "rejected"),
        (401, "auth_failed"),
        (403, "auth_failed"),
        (408, "unavailable"),
        (429, "rate_limited"),
        (500, "unavailable"),
        (503, "unavailable"),
    ],
)
def test_outcome_of_a_status(status: int, outcome: str) -> None:
    assert upstream_outcome(status_code=status) == outcome


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (UpstreamRejected("no"), "rejected"),
        (UpstreamAuthError(), "auth_failed"),
        (UpstreamRateLimited(), "rate_limited"),
        (UpstreamUnavailable(), "unavailable"),
        (UpstreamMalformed(), "malformed"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "unavailable"),
        (RuntimeError("?"), "error"),
    ],
)
def test_outcome_of_an_error(error: BaseException, outcome: str) -> None:
    assert upstream_outcome(error=error) == outcome


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v2/videos/generations", ("sora", "submit")),
        ("GET", "/v2/videos/generations/task%3A1", ("sora", "poll")),
        ("DELETE", "/v2/videos/generations/abc", ("sora", "cancel")),
        ("POST", "/proxy/prefix/v1/video/veo/text-to-video", ("veo", "submit")),
        ("GET", "/v1/video/veo/tasks/x", ("veo", "poll")),
        ("POST", "/v1/video/seedance/frames-to-video", ("seedance", "submit")),
        ("GET", "/v1/video/seedance/tasks/x", ("seedance", "poll")),
        ("POST", "/v1/images/edits", ("images", "submit")),
        ("POST", "/v1/videos", ("openai_sora", "submit")),
        ("GET", "/v1/videos/video_1", ("openai_sora", "poll")),
        ("GET", "/v1/videos/video_1/content", ("openai_sora", "download")),
        ("POST", "/v1/videos/video_1/remix", ("openai_sora", "submit")),
        ("GET", "/media/abc.mp4", ("media", "download")),
        ("POST", "/hooks/mine", ("webhook", "deliver")),
        ("PUT", "/anything", ("other", "put")),
    ],
)
def test_outgoing_requests_are_classified(
    method: str, path: str, expected: tuple[str, str]
) -> None:
    assert classify(method, path) == expected


def _counts() -> dict[Any, float]:
    body, _ = render(Snapshot(), metrics=obs_metrics.get_metrics())
    return parse_samples(body.decode())


async def test_client_hooks_count_a_real_adapter_talking_to_the_simulator() -> None:
    simulator = create_simulator_app(SimulatorConfig(api_key=SIM_KEY, task_seconds=30))
    before = _counts()
    async with (
        serve(simulator) as base_url,
        httpx.AsyncClient(event_hooks=upstream_event_hooks()) as http,
    ):
        adapter = SoraAdapter(http)
        good = UpstreamCredentials(base_url=base_url, api_key=SIM_KEY)
        request = GenerationRequest(kind="video", model="sora-2", prompt="a harbour at dawn")
        submission = await adapter.submit(request, good)
        assert submission.upstream_id
        status = await adapter.poll(submission.upstream_id, good)
        assert status.status in (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS)
        bad = UpstreamCredentials(base_url=base_url, api_key="sk-wrong-key-000")
        with pytest.raises(UpstreamAuthError):
            await adapter.poll(submission.upstream_id, bad)
    after = _counts()

    def delta(**labels: str) -> float:
        return (value(after, CALLS, **labels) or 0) - (value(before, CALLS, **labels) or 0)

    assert delta(adapter="sora", operation="submit", outcome="ok") == 1
    assert delta(adapter="sora", operation="poll", outcome="ok") == 1
    assert delta(adapter="sora", operation="poll", outcome="auth_failed") >= 1
    duration = "genapi_upstream_call_duration_seconds_count"
    submitted = (value(after, duration, adapter="sora", operation="submit") or 0) - (
        value(before, duration, adapter="sora", operation="submit") or 0
    )
    assert submitted == 1


async def test_client_hooks_send_the_current_request_id_upstream() -> None:
    seen: list[str | None] = []

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        seen.append(headers[b"x-request-id"].decode() if b"x-request-id" in headers else None)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with (
        serve(recorder) as base_url,
        httpx.AsyncClient(event_hooks=upstream_event_hooks()) as http,
    ):
        await http.post(f"{base_url}/hooks/a")
        with request_context("req-123"):
            await http.post(f"{base_url}/hooks/b")
            await http.post(f"{base_url}/hooks/c", headers={"X-Request-ID": "own"})
    assert seen == [None, "req-123", "own"]


RECORD_SCRIPT = """
import sys
from app.core.observability import metrics
metrics.record_upstream_call("veo", "poll", "ok", 0.5)
metrics.record_media_stored(int(sys.argv[1]))
metrics.record_http_request("GET", "/health", 200, 0.01)
"""

RENDER_SCRIPT = """
from app.core.observability import metrics
body, _ = metrics.render(metrics.Snapshot())
print(body.decode())
"""


def test_several_processes_are_summed_with_a_shared_multiprocess_directory(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    for nbytes in ("1000", "234"):
        subprocess.run(
            [sys.executable, "-c", RECORD_SCRIPT, nbytes], env=env, check=True, timeout=60
        )
    rendered = subprocess.run(
        [sys.executable, "-c", RENDER_SCRIPT],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    samples = parse_samples(rendered)
    assert value(samples, CALLS, adapter="veo", operation="poll", outcome="ok") == 2
    assert value(samples, "genapi_media_bytes_stored_total") == 1234
    assert (
        value(samples, "genapi_http_requests_total", method="GET", route="/health", status="200")
        == 2
    )
