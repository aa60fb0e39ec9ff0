"""Behaviour every adapter shares, over real HTTP against the scripted fake upstream:
retries of polls, no retries of creates once sent, typed errors, id encoding, base URLs, and
the API key never showing up in logs or errors."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from app.clients.base import TaskStatus, UpstreamCredentials
from app.clients.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from app.clients.retry import RetryPolicy
from tests.clients.fakes import (
    API_KEY,
    FAST_RETRY,
    FakeUpstream,
    FlakyConnectTransport,
    Reply,
    closed_port_url,
)
from tests.clients.specs import ALL_SPECS, VIDEO_SPECS, AdapterSpec

VIDEO_IDS = [s.name for s in VIDEO_SPECS]
ALL_IDS = [s.name for s in ALL_SPECS]
HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
)

TRANSIENT_REPLIES: dict[str, Reply] = {
    "429-retry-after-seconds": Reply(
        status=429, json={"error": "slow down"}, headers={"Retry-After": "0"}
    ),
    "429-retry-after-date": Reply(
        status=429,
        json={"error": "slow down"},
        headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
    ),
    "429-no-retry-after": Reply(status=429, json={"message": "rate limited"}),
    "500-json": Reply(status=500, json={"error": {"message": "internal"}}),
    "502-html": Reply(status=502, body=HTML_PAGE, content_type="text/html"),
    "503-text": Reply(status=503, body="upstream overloaded"),
    "200-html": Reply(status=200, body=HTML_PAGE, content_type="text/html"),
    "200-malformed-json": Reply(
        status=200, body='{"status": "processing", ', content_type="application/json"
    ),
    "200-json-array": Reply(status=200, json=[1, 2, 3]),
    "200-empty": Reply(status=200, body=b"", content_type="application/json"),
    "read-timeout": Reply(status=200, json={"status": "processing"}, delay=1.5),
}


async def _submit(spec: AdapterSpec, adapter: Any, fake: FakeUpstream, credentials: Any) -> str:
    fake.script("POST", spec.create_path, Reply(json=spec.create_reply("task-1")))
    submission = await adapter.submit(spec.request, credentials)
    return submission.upstream_id or "task-1"


# ------------------------------------------------------------------------------------- polls


@pytest.mark.parametrize("failure", list(TRANSIENT_REPLIES), ids=list(TRANSIENT_REPLIES))
@pytest.mark.parametrize("spec", VIDEO_SPECS, ids=VIDEO_IDS)
async def test_poll_recovers_from_transient_failure(
    spec: AdapterSpec,
    failure: str,
    fake: FakeUpstream,
    http_client: httpx.AsyncClient,
    credentials: UpstreamCredentials,
) -> None:
    adapter = spec.adapter(http_client, timeout=0.5)
    path = spec.status_path("task-1")
    fake.script("GET", path, TRANSIENT_REPLIES[failure], Reply(json=spec.done_reply("task-1")))

    status = await adapter.poll("task-1", credentials)

    assert status.status is TaskStatus.COMPLETED
    assert status.results
    assert len(fake.hits("GET", path)) == 2


@pytest.mark.parametrize("spec", VIDEO_SPECS, ids=VIDEO_IDS)
async def test_poll_gives_up_after_max_attempts(
    spec: AdapterSpec, fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: Any
) -> None:
    adapter = spec.adapter(http_client)
    path = spec.status_path("task-1")
    fake.script("GET", path, Reply(status=503, body="down"))

    with pytest.raises(UpstreamUnavailable) as info:
        await adapter.poll("task-1", credentials)

    assert info.value.status_code == 503
    assert info.value.retryable is True
    assert len(fake.hits("GET", path)) == FAST_RETRY.max_attempts


@pytest.mark.parametrize("spec", VIDEO_SPECS, ids=VIDEO_IDS)
async def test_poll_rate_limit_exhausted_carries_retry_after(
    spec: AdapterSpec, fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: Any
) -> None:
    adapter = spec.adapter(
        http_client, poll_retry=RetryPolicy(max_attempts=2, max_retry_after=0.01)
    )
    path = spec.status_path("task-1")
    fake.script("GET", path, Reply(status=429, json={}, headers={"Retry-After": "7"}))

    with pytest.raises(UpstreamRateLimited) as info:
        await adapter.poll("task-1", credentials)

    assert info.value.retry_after == 7.0
    assert len(fake.hits("GET", path)) == 2


@pytest.mark.parametrize(
    ("reply", "error_type"),
    [
        (Reply(status=404, json={"error": {"message": "task not found"}}), UpstreamRejected),
        (Reply(status=400, json={"detail": "bad id"}), UpstreamRejected),
        (Reply(status=403, json={"error": "forbidden"}), UpstreamAuthError),
    ],
    ids=["404", "400", "403"],
)
@pytest.mark.parametrize("spec", VIDEO_SPECS, ids=VIDEO_IDS)
async def test_poll_does_not_retry_permanent_errors(
    spec: AdapterSpec,
    reply: Reply,
    error_type: type[UpstreamError],
    fake: FakeUpstream,
    http_client: httpx.AsyncClient,
    credentials: Any,
) -> None:
    adapter = spec.adapter(http_client)
    path = spec.status_path("task-1")
    fake.script("GET", path, reply)

    with pytest.raises(error_type) as info:
        await adapter.poll("task-1", credentials)

    assert info.value.retryable is False
    assert info.value.status_code == reply.status
    assert len(fake.hits("GET", path)) == 1


@pytest.mark.parametrize("spec", VIDEO_SPECS, ids=VIDEO_IDS)
async def test_poll_encodes_ids_with_colon_and_slash(
    spec: AdapterSpec, fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: Any
) -> None:
    adapter = spec.adapter(http_client)
    task_id = "veo3:abc/def ?#%x"
    encoded = "veo3%3Aabc%2Fdef%20%3F%23%25x"
    fake.script("GET", f"{spec.status_prefix}/{encoded}", Reply(json=spec.done_reply(task_id)))

    status = await adapter.poll(task_id, credentials)

    assert status.status is TaskStatus.COMPLETED
    assert [r.raw_path for r in fake.requests] == [f"{spec.status_prefix}/{encoded}"]


# ------------------------------------------------------------------------------------- creates

CREATE_FAILURES: dict[str, tuple[Reply, type[UpstreamError]]] = {
    "500": (Reply(status=500, json={"error": "boom"}), UpstreamUnavailable),
    "502-html": (Reply(status=502, body=HTML_PAGE, content_type="text/html"), UpstreamUnavailable),
    "429": (Reply(status=429, json={}, headers={"Retry-After": "0"}), UpstreamRateLimited),
    "read-timeout": (Reply(json={"task_id": "late"}, delay=1.5), UpstreamUnavailable),
    "200-html": (Reply(status=200, body=HTML_PAGE, content_type="text/html"), UpstreamMalformed),
    "200-not-json": (Reply(status=200, body="OK"), UpstreamMalformed),
}


@pytest.mark.parametrize("failure", list(CREATE_FAILURES), ids=list(CREATE_FAILURES))
@pytest.mark.parametrize("spec", ALL_SPECS, ids=ALL_IDS)
async def test_create_is_not_retried_once_sent(
    spec: AdapterSpec,
    failure: str,
    fake: FakeUpstream,
    http_client: httpx.AsyncClient,
    credentials: Any,
) -> None:
    reply, error_type = CREATE_FAILURES[failure]
    adapter = spec.adapter(http_client, timeout=0.5)
    fake.script("POST", spec.create_path, reply, Reply(json=spec.create_reply("second")))

    with pytest.raises(error_type) as info:
        await adapter.submit(spec.request, credentials)

    assert info.value.reached_upstream is True
    assert len(fake.hits("POST", spec.create_path)) == 1


@pytest.mark.parametrize("spec", ALL_SPECS, ids=ALL_IDS)
async def test_create_rejection_carries_upstream_reason(
    spec: AdapterSpec, fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: Any
) -> None:
    adapter = spec.adapter(http_client)
    reason = "prompt violates policy (key {key})"
    fake.script("POST", spec.create_path, Reply(status=400, json={"error": {"message": reason}}))

    with pytest.raises(UpstreamRejected) as info:
        await adapter.submit(spec.request, credentials)

    assert "prompt violates policy" in info.value.message
    assert API_KEY not in info.value.message
    assert info.value.status_code == 400
    assert info.value.retryable is False
    assert len(fake.hits("POST", spec.create_path)) == 1


@pytest.mark.parametrize("spec", VIDEO_SPECS, ids=VIDEO_IDS)
async def test_create_error_envelope_is_rejected(
    spec: AdapterSpec, fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: Any
) -> None:
    adapter = spec.adapter(http_client)
    fake.script(
        "POST",
        spec.create_path,
        Reply(json={"code": "insufficient_quota", "message": "quota exhausted", "data": None}),
    )

    with pytest.raises(UpstreamRejected) as info:
        await adapter.submit(spec.request, credentials)

    assert info.value.message == "quota exhausted"
    assert info.value.upstream == spec.name


@pytest.mark.parametrize("spec", ALL_SPECS, ids=ALL_IDS)
async def test_create_is_retried_when_connection_never_opened(
    spec: AdapterSpec, fake: FakeUpstream, credentials: Any
) -> None:
    transport = FlakyConnectTransport(failures=1)
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
        adapter = spec.adapter(client)
        fake.script("POST", spec.create_path, Reply(json=spec.create_reply("task-9")))

        submission = await adapter.submit(spec.request, credentials)

    assert transport.attempts == 2
    assert len(fake.hits("POST", spec.create_path)) == 1
    assert submission.status is not None
    if spec.status_prefix is not None:
        assert submission.upstream_id == "task-9"


@pytest.mark.parametrize("spec", ALL_SPECS, ids=ALL_IDS)
async def test_create_to_closed_port_gives_up_unreached(
    spec: AdapterSpec, http_client: httpx.AsyncClient
) -> None:
    adapter = spec.adapter(http_client)
    credentials = UpstreamCredentials(base_url=closed_port_url(), api_key=API_KEY)

    with pytest.raises(UpstreamUnavailable) as info:
        await adapter.submit(spec.request, credentials)

    assert info.value.reached_upstream is False
    assert info.value.retryable is True


# ------------------------------------------------------------------------------------- auth, URLs


@pytest.mark.parametrize("spec", ALL_SPECS, ids=ALL_IDS)
async def test_bad_key_is_auth_error_without_the_key(
    spec: AdapterSpec, fake: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    adapter = spec.adapter(http_client)
    wrong = "wrong-key-0123456789abcdef"
    credentials = UpstreamCredentials(base_url=fake.url, api_key=wrong)
    fake.script("POST", spec.create_path, Reply(json=spec.create_reply("x")))

    with pytest.raises(UpstreamAuthError) as info:
        await adapter.submit(spec.request, credentials)

    error = info.value
    assert error.status_code == 401
    assert error.retryable is False
    for text in (str(error), repr(error), error.message, error.body_snippet or ""):
        assert wrong not in text
    # The fake echoed the key; the reason survives with the key cut out.
    assert "Incorrect API key provided" in error.message
    assert len(fake.hits("POST", spec.create_path)) == 1


@pytest.mark.parametrize("spec", ALL_SPECS, ids=ALL_IDS)
async def test_every_request_sends_the_bearer_key(
    spec: AdapterSpec, fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: Any
) -> None:
    adapter = spec.adapter(http_client)
    fake.script("POST", spec.create_path, Reply(json=spec.create_reply("task-1")))
    await adapter.submit(spec.request, credentials)
    if spec.status_prefix is not None:
        fake.script("GET", spec.status_path("task-1"), Reply(json=spec.done_reply("task-1")))
        await adapter.poll("task-1", credentials)

    assert fake.requests
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in fake.requests)


@pytest.mark.parametrize("suffix", ["/prefix", "/prefix/", "/deep/er/prefix/"])
@pytest.mark.parametrize("spec", ALL_SPECS, ids=ALL_IDS)
async def test_base_url_with_path_prefix_and_trailing_slash(
    spec: AdapterSpec, suffix: str, fake: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    adapter = spec.adapter(http_client)
    prefix = suffix.rstrip("/")
    credentials = UpstreamCredentials(base_url=fake.url + suffix, api_key=API_KEY)
    fake.script("POST", prefix + spec.create_path, Reply(json=spec.create_reply("t/1")))

    submission = await adapter.submit(spec.request, credentials)

    assert len(fake.hits("POST", prefix + spec.create_path)) == 1
    if spec.status_prefix is not None:
        assert submission.upstream_id == "t/1"
        fake.script("GET", prefix + spec.status_path("t/1"), Reply(json=spec.done_reply("t/1")))
        status = await adapter.poll("t/1", credentials)
        assert status.status is TaskStatus.COMPLETED


@pytest.mark.parametrize("key", ["", "key with space", "key\nnewline", "kéy"])
async def test_unsendable_key_is_refused_before_sending(
    key: str, fake: FakeUpstream, http_client: httpx.AsyncClient
) -> None:
    spec = VIDEO_SPECS[0]
    adapter = spec.adapter(http_client)
    credentials = UpstreamCredentials(base_url=fake.url, api_key=key)

    with pytest.raises(UpstreamAuthError) as info:
        await adapter.submit(spec.request, credentials)

    assert info.value.reached_upstream is False
    if key:
        assert key not in str(info.value)
        assert key not in repr(info.value)
    assert fake.requests == []


# ------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("spec", ALL_SPECS, ids=ALL_IDS)
async def test_key_never_in_logs_or_errors(
    spec: AdapterSpec,
    fake: FakeUpstream,
    http_client: httpx.AsyncClient,
    credentials: UpstreamCredentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A whole cycle (submit, polls through faults, failures echoing the key) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    adapter = spec.adapter(http_client)
    errors: list[BaseException] = []
    echo = {"error": {"message": "bad request for key {key} (Bearer {key})"}, "key": "{key}"}

    fake.script("POST", spec.create_path, Reply(json=spec.create_reply("task-1")))
    await adapter.submit(spec.request, credentials)
    if spec.status_prefix is not None:
        path = spec.status_path("task-1")
        fake.script(
            "GET",
            path,
            Reply(status=429, json=echo, headers={"Retry-After": "0"}),
            Reply(status=500, body="failure for {key}"),
            Reply(json={"status": "processing", "progress": "50%", "note": "{key}"}),
        )
        await adapter.poll("task-1", credentials)
        fake.script("GET", path, Reply(json={"status": "failed", "fail_reason": "denied {key}"}))
        failed = await adapter.poll("task-1", credentials)
        assert failed.status is TaskStatus.FAILED
        assert failed.error is not None
        assert API_KEY not in failed.error.message
        fake.script(
            "GET", path, Reply(status=200, body="<html>{key}</html>", content_type="text/html")
        )
        with pytest.raises(UpstreamError) as poll_info:
            await adapter.poll("task-1", credentials)
        errors.append(poll_info.value)
        await adapter.cancel("task-1", credentials)
    for reply in (
        Reply(status=400, json=echo),
        Reply(status=500, body="error page for {key}"),
        Reply(status=422, body="not json {key}"),
    ):
        fake.script("POST", spec.create_path, reply)
        with pytest.raises(UpstreamError) as info:
            await adapter.submit(spec.request, credentials)
        errors.append(info.value)
    bad = UpstreamCredentials(base_url=fake.url, api_key=API_KEY + "-wrong")
    with pytest.raises(UpstreamAuthError) as auth_info:
        await adapter.submit(spec.request, bad)
    errors.append(auth_info.value)

    assert len(fake.requests) >= 5
    assert caplog.records, "the adapter logged nothing"
    assert API_KEY not in caplog.text
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in repr(record.args)
    for error in errors:
        assert isinstance(error, UpstreamError)
        for text in (str(error), repr(error), error.message, error.body_snippet or ""):
            assert API_KEY not in text
    logged_paths = " ".join(r.getMessage() for r in caplog.records)
    assert spec.create_path in logged_paths


# ------------------------------------------------------------------------------------- cancel

AGGREGATOR_SPECS = [s for s in VIDEO_SPECS if s.name != "openai_sora"]


@pytest.mark.parametrize("spec", AGGREGATOR_SPECS, ids=[s.name for s in AGGREGATOR_SPECS])
async def test_aggregator_cancel_via_delete_is_opt_in(
    spec: AdapterSpec, fake: FakeUpstream, http_client: httpx.AsyncClient, credentials: Any
) -> None:
    default = spec.adapter(http_client)
    opted_in = spec.adapter(http_client, cancel_via_delete=True)
    path = spec.status_path("t:1/2")
    fake.script("DELETE", path, Reply(status=503, body="busy"), Reply(status=204))
    fake.script("DELETE", spec.status_path("gone"), Reply(status=404, json={"error": "nf"}))
    fake.script("DELETE", spec.status_path("denied"), Reply(status=400, json={"error": "done"}))

    await default.cancel("t:1/2", credentials)
    assert default.supports_cancel is False
    assert fake.requests == []

    await opted_in.cancel("t:1/2", credentials)
    await opted_in.cancel("gone", credentials)
    with pytest.raises(UpstreamRejected):
        await opted_in.cancel("denied", credentials)

    assert opted_in.supports_cancel is True
    assert len(fake.hits("DELETE", path)) == 2
