"""`download_to_temp` over real HTTP against the misbehaving test server."""

# Assertions read small local files directly; blocking the loop for that is harmless here.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
import tracemalloc
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

import app.core.media.download as download_module
from app.core.media.download import (
    _WRITE_BATCH_BYTES,
    DownloadPolicy,
    RetryConfig,
    download_to_temp,
)
from app.core.media.errors import (
    MediaDownloadError,
    MediaError,
    MediaExpired,
    MediaForbiddenHost,
    MediaTooLarge,
    MediaTypeRejected,
)
from tests.core.media.conftest import (
    CONTENT_TYPES,
    FAST_RETRY,
    MediaServer,
    Samples,
    big_body_sha256,
)

TRUSTED = DownloadPolicy(trusted_hosts={"127.0.0.1"})
MAX = 10 * 1024 * 1024


def token() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "tmp" / "download.part"


@pytest.mark.parametrize("name", sorted(CONTENT_TYPES))
async def test_downloads_each_accepted_type_with_hash_and_size(
    http: httpx.AsyncClient, media_server: MediaServer, samples: Samples, dest: Path, name: str
) -> None:
    result = await download_to_temp(
        http, f"{media_server.url}/media/{name}", dest=dest, max_bytes=MAX, policy=TRUSTED
    )
    served = samples[name]
    assert result.path == dest
    assert result.size == len(served)
    assert result.sniffed_type == CONTENT_TYPES[name]
    assert dest.read_bytes() == served
    assert result.sha256 == hashlib.sha256(served).hexdigest()
    assert result.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()


async def test_upstream_content_type_is_ignored(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    url = f"{media_server.url}/media/image.png?as=video/mp4"
    result = await download_to_temp(http, url, dest=dest, max_bytes=MAX, policy=TRUSTED)
    assert result.sniffed_type == "image/png"
    assert result.extension == ".png"


async def test_chunked_response_without_content_length(
    http: httpx.AsyncClient, media_server: MediaServer, samples: Samples, dest: Path
) -> None:
    result = await download_to_temp(
        http, f"{media_server.url}/chunked/video.mp4", dest=dest, max_bytes=MAX, policy=TRUSTED
    )
    assert dest.read_bytes() == samples["video.mp4"]
    assert result.sha256 == hashlib.sha256(samples["video.mp4"]).hexdigest()


async def test_truncated_body_is_retried_from_scratch_without_validator(
    http: httpx.AsyncClient, media_server: MediaServer, samples: Samples, dest: Path
) -> None:
    t = token()
    url = f"{media_server.url}/truncated/{t}?fails=1"
    result = await download_to_temp(
        http, url, dest=dest, max_bytes=MAX, policy=TRUSTED, retry=FAST_RETRY
    )
    assert dest.read_bytes() == samples["video.mp4"]
    assert result.size == len(samples["video.mp4"])
    seen = media_server.seen(t)
    assert len(seen) == 2
    assert "range" not in seen[1].headers  # no validator: nothing to resume against


async def test_always_truncated_body_fails_and_removes_partial_file(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    t = token()
    with pytest.raises(MediaDownloadError) as info:
        await download_to_temp(
            http,
            f"{media_server.url}/truncated/{t}",
            dest=dest,
            max_bytes=MAX,
            policy=TRUSTED,
            retry=FAST_RETRY,
        )
    assert info.value.transient is True
    assert "3 attempt" in info.value.message
    assert len(media_server.seen(t)) == 3
    assert not dest.exists()


async def test_truncated_body_resumes_with_range_and_if_range(
    http: httpx.AsyncClient, media_server: MediaServer, samples: Samples, dest: Path
) -> None:
    t = token()
    result = await download_to_temp(
        http,
        f"{media_server.url}/resumable/{t}",
        dest=dest,
        max_bytes=MAX,
        policy=TRUSTED,
        retry=FAST_RETRY,
    )
    served = samples["video.mp4"]
    assert dest.read_bytes() == served
    assert result.sha256 == hashlib.sha256(served).hexdigest()
    seen = media_server.seen(t)
    assert len(seen) == 2
    assert seen[1].headers["range"] == "bytes=1000-"
    assert seen[1].headers["if-range"] == '"resumable-v1"'


async def test_short_range_answer_is_resumed_again(
    http: httpx.AsyncClient, media_server: MediaServer, samples: Samples, dest: Path
) -> None:
    t = token()
    result = await download_to_temp(
        http,
        f"{media_server.url}/resumable/{t}?short=1",
        dest=dest,
        max_bytes=MAX,
        policy=TRUSTED,
        retry=FAST_RETRY,
    )
    assert dest.read_bytes() == samples["video.mp4"]
    assert result.sha256 == hashlib.sha256(samples["video.mp4"]).hexdigest()
    assert [r.headers.get("range") for r in media_server.seen(t)] == [
        None,
        "bytes=1000-",
        "bytes=1500-",
    ]


@pytest.mark.parametrize("status", [404, 410])
async def test_gone_url_is_expired_without_retry(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path, status: int
) -> None:
    before = len(media_server.seen(f"/status/{status}"))
    with pytest.raises(MediaExpired) as info:
        await download_to_temp(
            http,
            f"{media_server.url}/status/{status}",
            dest=dest,
            max_bytes=MAX,
            policy=TRUSTED,
            retry=FAST_RETRY,
        )
    assert "expired" in info.value.message
    assert info.value.code == "media_expired"
    assert len(media_server.seen(f"/status/{status}")) == before + 1
    assert not dest.exists()


async def test_server_error_then_success_is_retried(
    http: httpx.AsyncClient, media_server: MediaServer, samples: Samples, dest: Path
) -> None:
    t = token()
    result = await download_to_temp(
        http,
        f"{media_server.url}/flaky/{t}?status=500&fails=1",
        dest=dest,
        max_bytes=MAX,
        policy=TRUSTED,
        retry=FAST_RETRY,
    )
    assert result.size == len(samples["video.mp4"])
    assert len(media_server.seen(t)) == 2


async def test_persistent_server_error_gives_up_after_attempts(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    t = token()
    with pytest.raises(MediaDownloadError) as info:
        await download_to_temp(
            http,
            f"{media_server.url}/flaky/{t}?status=503&fails=99",
            dest=dest,
            max_bytes=MAX,
            policy=TRUSTED,
            retry=FAST_RETRY,
        )
    assert info.value.transient is True
    assert "HTTP 503" in info.value.message
    assert len(media_server.seen(t)) == 3


@pytest.mark.parametrize(("retry_after", "expected_wait"), [("7", 7.0), ("120", 30.0)])
async def test_429_honours_retry_after_capped(
    http: httpx.AsyncClient,
    media_server: MediaServer,
    dest: Path,
    retry_after: str,
    expected_wait: float,
) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    retry = RetryConfig(attempts=3, retry_after_cap=30.0, sleep=record)
    t = token()
    result = await download_to_temp(
        http,
        f"{media_server.url}/flaky/{t}?status=429&fails=1&retry_after={retry_after}",
        dest=dest,
        max_bytes=MAX,
        policy=TRUSTED,
        retry=retry,
    )
    assert result.sniffed_type == "video/mp4"
    assert waits == [expected_wait]


async def test_backoff_without_retry_after_is_jittered_and_growing(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    retry = RetryConfig(attempts=4, wait_initial=1.0, wait_max=3.0, sleep=record)
    with pytest.raises(MediaDownloadError):
        await download_to_temp(
            http,
            f"{media_server.url}/flaky/{token()}?status=502&fails=99",
            dest=dest,
            max_bytes=MAX,
            policy=TRUSTED,
            retry=retry,
        )
    assert len(waits) == 3
    assert 0.5 <= waits[0] <= 1.0
    assert 1.0 <= waits[1] <= 2.0
    assert 1.5 <= waits[2] <= 3.0  # capped at wait_max


async def test_html_body_is_rejected_and_removed(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    with pytest.raises(MediaTypeRejected):
        await download_to_temp(
            http, f"{media_server.url}/html", dest=dest, max_bytes=MAX, policy=TRUSTED
        )
    assert not dest.exists()


async def test_oversize_by_content_length_aborts_before_the_body(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    with pytest.raises(MediaTooLarge) as info:
        await download_to_temp(
            http,
            f"{media_server.url}/big/{5 * 1024 * 1024}",
            dest=dest,
            max_bytes=1024 * 1024,
            policy=TRUSTED,
        )
    assert info.value.max_bytes == 1024 * 1024
    assert "5242880" in info.value.message  # decided from Content-Length
    assert not dest.exists()


async def test_oversize_chunked_body_aborts_mid_stream(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    with pytest.raises(MediaTooLarge):
        await download_to_temp(
            http,
            f"{media_server.url}/big/{5 * 1024 * 1024}?chunked=1",
            dest=dest,
            max_bytes=1024 * 1024,
            policy=TRUSTED,
        )
    assert not dest.exists()


async def test_exact_limit_is_accepted(
    http: httpx.AsyncClient, media_server: MediaServer, samples: Samples, dest: Path
) -> None:
    size = len(samples["image.png"])
    result = await download_to_temp(
        http, f"{media_server.url}/media/image.png", dest=dest, max_bytes=size, policy=TRUSTED
    )
    assert result.size == size
    with pytest.raises(MediaTooLarge):
        await download_to_temp(
            http,
            f"{media_server.url}/chunked/image.png",
            dest=dest,
            max_bytes=size - 1,
            policy=TRUSTED,
        )


async def test_forbidden_status_is_permanent(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    with pytest.raises(MediaDownloadError) as info:
        await download_to_temp(
            http,
            f"{media_server.url}/status/403",
            dest=dest,
            max_bytes=MAX,
            policy=TRUSTED,
            retry=FAST_RETRY,
        )
    assert not isinstance(info.value, MediaExpired)
    assert info.value.transient is False
    assert "403" in info.value.message
    assert len(media_server.seen("/status/403")) >= 1


@pytest.mark.parametrize("path", ["/status/500", "/status/404", "/status/403", "/html"])
async def test_error_messages_carry_no_secrets(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path, path: str
) -> None:
    secret_header = "Bearer sk-live-SECRETHEADER"
    url = f"{media_server.url}{path}?X-Amz-Signature=SECRETQUERY"
    with pytest.raises(MediaError) as info:
        await download_to_temp(
            http,
            url,
            dest=dest,
            max_bytes=MAX,
            headers={"Authorization": secret_header},
            policy=TRUSTED,
            retry=FAST_RETRY,
        )
    rendered = f"{info.value} {info.value.message} {info.value.details!r}"
    assert "SECRET" not in rendered
    assert media_server.seen(path)[-1].headers["authorization"] == secret_header


async def test_headers_go_to_the_origin_only_not_across_redirects(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    t = token()
    target = f"{media_server.url}/media/video.mp4?t={t}"
    url = f"{media_server.localhost_url}/redirect?to={quote(target, safe='')}&t={t}"
    policy = DownloadPolicy(trusted_hosts={"127.0.0.1", "localhost"})
    await download_to_temp(
        http,
        url,
        dest=dest,
        max_bytes=MAX,
        headers={"Authorization": "Bearer upstream-key"},
        policy=policy,
    )
    hops = [r for r in media_server.requests if r.query.get("t") == t]
    assert [r.path for r in hops] == ["/redirect", "/media/video.mp4"]
    assert hops[0].headers["authorization"] == "Bearer upstream-key"
    assert "authorization" not in hops[1].headers


async def test_same_origin_redirect_keeps_headers(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    t = token()
    url = f"{media_server.url}/redirect?to={quote(f'/media/video.mp4?t={t}', safe='')}&t={t}"
    await download_to_temp(
        http, url, dest=dest, max_bytes=MAX, headers={"X-Key": "k"}, policy=TRUSTED
    )
    hops = [r for r in media_server.requests if r.query.get("t") == t]
    assert len(hops) == 2
    assert all(hop.headers.get("x-key") == "k" for hop in hops)


async def test_redirect_loop_stops_after_five_hops(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    before = len(media_server.seen("/loop/"))
    with pytest.raises(MediaDownloadError, match="Too many redirects"):
        await download_to_temp(
            http, f"{media_server.url}/loop/0", dest=dest, max_bytes=MAX, policy=TRUSTED
        )
    assert len(media_server.seen("/loop/")) - before == 6  # the original request + 5 hops


async def test_untrusted_loopback_url_is_refused_before_any_request(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    t = token()
    url = f"{media_server.url}/media/video.mp4?t={t}"
    with pytest.raises(MediaForbiddenHost):
        await download_to_temp(http, url, dest=dest, max_bytes=MAX, policy=DownloadPolicy())
    assert [r for r in media_server.requests if r.query.get("t") == t] == []
    # The same URL is fine once its host is allowed (MEDIA_DOWNLOAD_ALLOWED_HOSTS).
    allowed = DownloadPolicy(allowed_hosts={"127.0.0.1"})
    result = await download_to_temp(http, url, dest=dest, max_bytes=MAX, policy=allowed)
    assert result.sniffed_type == "video/mp4"


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/media/video.mp4?t={t}",
        "http://10.0.0.1/x?t={t}",
        "http://169.254.169.254/latest/meta-data/?t={t}",
        "http://[::1]:{port}/media/video.mp4?t={t}",
        "http://[::ffff:127.0.0.1]:{port}/media/video.mp4?t={t}",
        "ftp://example.com/file.mp4?t={t}",
        "file:///etc/passwd?t={t}",
    ],
)
async def test_redirect_to_a_forbidden_target_is_refused(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path, target: str
) -> None:
    # The server is trusted as "localhost" only, so its 127.0.0.1 address counts as private.
    t = token()
    location = target.format(port=media_server.port, t=t)
    url = f"{media_server.localhost_url}/redirect?to={quote(location, safe='')}"
    policy = DownloadPolicy(trusted_hosts={"localhost"})
    with pytest.raises(MediaForbiddenHost):
        await download_to_temp(http, url, dest=dest, max_bytes=MAX, policy=policy, retry=FAST_RETRY)
    assert [r for r in media_server.requests if r.query.get("t") == t] == []
    assert not dest.exists()


async def test_connection_refused_is_transient_and_retried(
    http: httpx.AsyncClient, dest: Path
) -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    with pytest.raises(MediaDownloadError) as info:
        await download_to_temp(
            http,
            f"http://127.0.0.1:{port}/x.mp4",
            dest=dest,
            max_bytes=MAX,
            policy=TRUSTED,
            retry=FAST_RETRY,
        )
    assert info.value.transient is True
    assert "ConnectError" in info.value.message
    assert "3 attempt" in info.value.message


async def test_read_timeout_is_transient(media_server: MediaServer, dest: Path) -> None:
    async with httpx.AsyncClient(timeout=0.2, trust_env=False) as client:
        with pytest.raises(MediaDownloadError) as info:
            await download_to_temp(
                client,
                f"{media_server.url}/stall",
                dest=dest,
                max_bytes=MAX,
                policy=TRUSTED,
                retry=RetryConfig(attempts=2, wait_initial=0.001, wait_max=0.001),
            )
    assert info.value.transient is True
    assert "ReadTimeout" in info.value.message


async def test_total_timeout_bounds_a_stuck_download(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(MediaDownloadError, match="did not finish within"):
        await download_to_temp(
            http,
            f"{media_server.url}/drip",
            dest=dest,
            max_bytes=MAX,
            policy=TRUSTED,
            total_timeout=0.5,
        )
    assert time.monotonic() - started < 4  # the client's own 5 s read timeout did not decide
    assert not dest.exists()


async def test_cancellation_removes_the_partial_file(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    task = asyncio.create_task(
        download_to_temp(http, f"{media_server.url}/drip", dest=dest, max_bytes=MAX, policy=TRUSTED)
    )
    deadline = time.monotonic() + 5
    while not (dest.exists() and dest.stat().st_size > 0):
        assert time.monotonic() < deadline, "the download never started writing"
        assert not task.done()
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not dest.exists()


async def test_large_body_streams_with_bounded_memory(
    http: httpx.AsyncClient, media_server: MediaServer, dest: Path
) -> None:
    size = 50 * 1024 * 1024
    expected_sha = big_body_sha256(size)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = await download_to_temp(
            http, f"{media_server.url}/big/{size}", dest=dest, max_bytes=size, policy=TRUSTED
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == size
    assert dest.stat().st_size == size
    assert result.sha256 == expected_sha
    # Bounded by the write batches (one filling, one joined and being written), not the body.
    assert peak < 3 * _WRITE_BATCH_BYTES + 1024 * 1024, f"peak traced memory {peak} bytes"


async def test_unresolvable_trusted_host_is_served_through_an_httpx_mount(
    samples: Samples, dest: Path
) -> None:
    # How the lead wires the in-process simulator: an unresolvable host behind an httpx mount.
    async def video(_: object) -> Response:
        return Response(samples["video.mp4"], media_type="video/mp4")

    simulator = Starlette(routes=[Route("/files/video.mp4", video)])
    transport = httpx.ASGITransport(app=simulator)
    async with httpx.AsyncClient(mounts={"http://simulator.internal": transport}) as client:
        result = await download_to_temp(
            client,
            "http://simulator.internal/files/video.mp4",
            dest=dest,
            max_bytes=MAX,
            policy=DownloadPolicy(trusted_hosts={"simulator.internal"}),
        )
    assert result.sha256 == hashlib.sha256(samples["video.mp4"]).hexdigest()


async def test_connection_is_pinned_to_the_checked_address(
    http: httpx.AsyncClient,
    media_server: MediaServer,
    dest: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A non-exempt host is connected to at the address that was checked, with its own name
    in the Host header: the name below does not exist in DNS at all."""
    resolved: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    policy = DownloadPolicy(resolver=resolver)
    t = token()
    url = f"http://media.invalid:{media_server.port}/media/video.mp4?t={t}"
    with pytest.raises(MediaForbiddenHost):
        await download_to_temp(http, url, dest=dest, max_bytes=MAX, policy=policy)

    # Let loopback through the address check (only here) to observe where the request goes.
    real_check = download_module.is_forbidden_address
    monkeypatch.setattr(
        download_module,
        "is_forbidden_address",
        lambda address: str(address) != "127.0.0.1" and real_check(address),
    )
    result = await download_to_temp(http, url, dest=dest, max_bytes=MAX, policy=policy)
    assert result.sniffed_type == "video/mp4"
    assert resolved == ["media.invalid", "media.invalid"]
    seen = [r for r in media_server.requests if r.query.get("t") == t]
    assert len(seen) == 1
    assert seen[0].headers["host"] == f"media.invalid:{media_server.port}"


async def test_invalid_url_is_refused(http: httpx.AsyncClient, dest: Path) -> None:
    with pytest.raises(MediaForbiddenHost):
        await download_to_temp(http, "http://[oops/", dest=dest, max_bytes=MAX, policy=TRUSTED)


async def test_local_write_failure_is_a_transient_media_error(
    http: httpx.AsyncClient, media_server: MediaServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    with pytest.raises(MediaDownloadError) as info:
        await download_to_temp(
            http,
            f"{media_server.url}/media/video.mp4",
            dest=blocker / "x.part",
            max_bytes=MAX,
            policy=TRUSTED,
        )
    assert info.value.code == "media_write_failed"
    assert info.value.transient is True
