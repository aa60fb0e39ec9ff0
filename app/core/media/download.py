"""Fetch generation results into local temp files: streamed, hashed, size-capped, SSRF-checked.

`download_to_temp` never holds the body in memory: chunks go to disk in ~1 MiB batches (written
and hashed in a worker thread) while sha256 and size are computed on the way. The first bytes
decide the type (`inspect.sniff_content_type`); the upstream's Content-Type is ignored.

SSRF policy: only http(s); the host is resolved and refused when any address is private,
loopback, link-local, multicast, reserved or otherwise not global, unless the host is trusted
(the configured upstream) or allowed by `MEDIA_DOWNLOAD_ALLOWED_HOSTS`. Exempt hosts skip DNS
entirely. The connection is then pinned to the address that was checked (Host header and TLS
SNI keep the name), so a second DNS answer cannot point it elsewhere (DNS rebinding). Redirects
are followed by hand and every hop is checked again; request headers (e.g. Authorization) are
only sent to the original origin.

Transient failures (connect errors, timeouts, 5xx, 408, 429 with Retry-After, truncated bodies)
are retried with jittered exponential backoff. When a retry follows a partial body and the
server gave a strong validator, the download resumes with `Range` + `If-Range`.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import email.utils
import hashlib
import ipaddress
import random
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from app.core.media.errors import (
    MediaDownloadError,
    MediaError,
    MediaExpired,
    MediaForbiddenHost,
    MediaTooLarge,
    MediaTypeRejected,
)
from app.core.media.inspect import SNIFF_BYTES, extension_for, sniff_content_type

if TYPE_CHECKING:
    from app.core.config import Settings

__all__ = [
    "CheckedURL",
    "DownloadPolicy",
    "DownloadedFile",
    "HostResolutionError",
    "MediaDownloadError",
    "MediaError",
    "MediaExpired",
    "MediaForbiddenHost",
    "MediaTooLarge",
    "MediaTypeRejected",
    "RetryConfig",
    "check_url_allowed",
    "download_to_temp",
    "is_forbidden_address",
    "normalize_host",
    "parse_retry_after",
    "redact_url",
    "retry_wait_seconds",
    "write_base64_to_temp",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: `(host, port) -> addresses`; the default asks the event loop's getaddrinfo.
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Two batches at most in memory (one being written, one filling): 8 MiB per download.
_WRITE_BATCH_BYTES = 4 * 1024 * 1024
_B64_CHUNK_CHARS = 256 * 1024  # a multiple of 4
_B64_WHITESPACE = re.compile(r"\s+")
_B64_URLSAFE = str.maketrans("-_", "+/")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class HostResolutionError(MediaDownloadError):
    """DNS gave no answer for the host (possibly temporary)."""

    code = "host_unresolvable"
    message = "The host could not be resolved"
    transient = True


# ----------------------------------------------------------------------------- SSRF policy


def normalize_host(value: str) -> str:
    """Lower-case host without brackets, trailing dot or port; accepts a full URL too."""
    host = value.strip()
    if "://" in host:
        host = httpx.URL(host).host
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".").lower()


@dataclass(frozen=True)
class DownloadPolicy:
    """Which hosts may be fetched from although they resolve to non-public addresses.

    Both sets exempt a host from the address check (and from DNS): `trusted_hosts` is for the
    configured upstream, `allowed_hosts` for `MEDIA_DOWNLOAD_ALLOWED_HOSTS`. An entry
    ``*.example.com`` matches every subdomain of example.com.
    """

    allowed_hosts: AbstractSet[str] = frozenset()
    trusted_hosts: AbstractSet[str] = frozenset()
    max_redirects: int = MAX_REDIRECTS
    #: Custom DNS (tests, split-horizon setups); None uses `loop.getaddrinfo`.
    resolver: Resolver | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_hosts", _normalized_set(self.allowed_hosts))
        object.__setattr__(self, "trusted_hosts", _normalized_set(self.trusted_hosts))

    @classmethod
    def from_settings(cls, settings: Settings, trusted_hosts: Iterable[str] = ()) -> DownloadPolicy:
        return cls(
            allowed_hosts=frozenset(settings.media_download_allowed_hosts),
            trusted_hosts=frozenset(trusted_hosts),
        )

    def is_exempt(self, host: str) -> bool:
        host = normalize_host(host)
        for entry in (*self.trusted_hosts, *self.allowed_hosts):
            if host == entry or (entry.startswith("*.") and host.endswith(entry[1:])):
                return True
        return False


def _normalized_set(hosts: Iterable[str]) -> frozenset[str]:
    if isinstance(hosts, str):
        raise TypeError("pass a set of host names, not a single string")
    return frozenset(normalize_host(host) for host in hosts if host.strip())


def is_forbidden_address(address: IPAddress) -> bool:
    """True for any address a download must not reach: everything that is not global unicast,
    including IPv4 embedded in IPv6 (mapped, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if address.ipv4_mapped is not None:
            embedded.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.append(address.teredo[1])
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(is_forbidden_address(inner) for inner in embedded):
            return True
        if address.is_site_local:
            return True
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the policy, with the addresses that were checked (empty when the host
    is exempt and was not resolved)."""

    url: httpx.URL
    host: str
    addresses: tuple[str, ...] = ()

    def request_target(self, attempt: int = 0) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
        """`(url, extra headers, extensions)` that connect to a checked address, not to
        whatever DNS answers next. `attempt` rotates through the addresses."""
        if not self.addresses:
            return self.url, {}, {}
        address = self.addresses[attempt % len(self.addresses)]
        target = self.url.copy_with(host=address.split("%", 1)[0])
        headers = {"Host": self.url.netloc.decode("ascii")}
        extensions: dict[str, Any] = {}
        if self.url.scheme == "https":
            extensions["sni_hostname"] = self.url.raw_host.decode("ascii")
        return target, headers, extensions


async def check_url_allowed(url: str | httpx.URL, policy: DownloadPolicy) -> CheckedURL:
    """Check `url` against `policy`; raises `MediaForbiddenHost` (refused) or
    `HostResolutionError` (DNS failed, maybe temporarily)."""
    try:
        return await _check_url(url, policy)
    except OSError:
        raise HostResolutionError(f"Could not resolve the host of {redact_url(url)}") from None


async def _check_url(url: str | httpx.URL, policy: DownloadPolicy) -> CheckedURL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise MediaForbiddenHost("The URL is not valid") from None
    if parsed.scheme not in ("http", "https"):
        raise MediaForbiddenHost("Only http and https URLs are allowed")
    host = normalize_host(parsed.raw_host.decode("ascii", "replace"))
    if not host:
        raise MediaForbiddenHost("The URL has no host")
    if not _HOSTNAME.match(host) and _ip_or_none(host) is None:
        raise MediaForbiddenHost("The URL's host is not a valid host name")
    if policy.is_exempt(host):
        return CheckedURL(parsed, host)
    literal = _ip_or_none(host)
    if literal is not None:
        if is_forbidden_address(literal):
            raise MediaForbiddenHost(
                f"The host {host} is a private, loopback or reserved address",
                details={"host": host},
            )
        return CheckedURL(parsed, host, (str(literal),))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    resolver = policy.resolver or _getaddrinfo
    answers = await resolver(host, port)
    addresses = [_ip_or_none(answer) for answer in answers]
    if not addresses or any(address is None for address in addresses):
        raise OSError(f"no usable address for {host}")
    if any(address is not None and is_forbidden_address(address) for address in addresses):
        raise MediaForbiddenHost(
            f"The host {host} resolves to a private, loopback or reserved address",
            details={"host": host},
        )
    # IPv4 first: pinning loses happy-eyeballs, and IPv6 is the more often unroutable family.
    ordered = sorted({str(a) for a in addresses if a is not None}, key=lambda a: ":" in a)
    return CheckedURL(parsed, host, tuple(ordered))


async def _getaddrinfo(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _ip_or_none(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def redact_url(url: str | httpx.URL) -> str:
    """`scheme://host[:port]` only: paths and queries of result URLs may carry signatures."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    netloc = parsed.netloc.decode("ascii", "replace")
    return f"{parsed.scheme}://{netloc}" if netloc else f"{parsed.scheme}:"


# ----------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryConfig:
    """Retry schedule: `attempts` in total, waits doubling from `wait_initial` up to `wait_max`
    with jitter (half fixed, half random); a Retry-After is honoured up to `retry_after_cap`."""

    attempts: int = 4
    wait_initial: float = 0.5
    wait_max: float = 10.0
    retry_after_cap: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def retry_wait_seconds(
    config: RetryConfig, attempt_number: int, retry_after: float | None
) -> float:
    """Seconds to wait before attempt `attempt_number + 1`."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), config.retry_after_cap)
    base = min(config.wait_max, config.wait_initial * 2 ** max(0, attempt_number - 1))
    return base / 2 + random.uniform(0, base / 2)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _tenacity_wait(config: RetryConfig) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = exc.retry_after if isinstance(exc, _Transient) else None
        return retry_wait_seconds(config, state.attempt_number, retry_after)

    return wait


# ----------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    size: int
    sha256: str
    sniffed_type: str

    @property
    def extension(self) -> str:
        return extension_for(self.sniffed_type)


class _Sink:
    """The temp file being written, with its running hash, size and sniffed type."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.validator: str | None = None
        self._file: IO[bytes] | None = None
        # At most one batch is being written (and hashed) in a worker thread while the next one
        # arrives from the network.
        self._write: asyncio.Future[None] | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.size = 0
        self.content_type: str | None = None
        self._hasher = hashlib.sha256()
        self._head = bytearray()
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def reset(self) -> None:
        """Forget everything received so far (the next response starts from byte 0)."""
        await self._drain()
        if self._file is not None:
            handle, self._file = self._file, None
            await asyncio.to_thread(handle.close)
        self._reset_state()
        self.validator = None

    def remember_validator(self, headers: httpx.Headers) -> None:
        etag = headers.get("etag")
        if headers.get("accept-ranges", "").strip().lower() == "none":
            self.validator = None
        elif etag and not etag.startswith("W/"):
            self.validator = etag
        else:
            self.validator = headers.get("last-modified")

    async def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.size + len(chunk) > self.max_bytes:
            raise MediaTooLarge(
                f"The media is larger than the limit of {self.max_bytes} bytes",
                max_bytes=self.max_bytes,
            )
        if self.content_type is None:
            self._head += chunk[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self._sniff()
        self.size += len(chunk)
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= _WRITE_BATCH_BYTES:
            await self._flush()

    def _sniff(self) -> None:
        content_type = sniff_content_type(bytes(self._head))
        if content_type is None:
            raise MediaTypeRejected(
                "The content is not an accepted media type (mp4, mov, webm, png, jpeg, webp)"
            )
        self.content_type = content_type

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending, self._pending_size = self._pending, [], 0
        await self._drain()
        if self._file is None:
            self._file = await asyncio.to_thread(_open_for_write, self.path)
        self._write = asyncio.ensure_future(
            asyncio.to_thread(_write_batch, self._file, self._hasher, b"".join(batch))
        )

    async def _drain(self) -> None:
        if self._write is not None:
            write, self._write = self._write, None
            await write

    async def finish(self) -> DownloadedFile:
        if self.size == 0:
            raise MediaDownloadError("The upstream returned an empty body")
        if self.content_type is None:
            self._sniff()
        assert self.content_type is not None
        if self._file is None:
            # All of it fit in one batch (most images): open, write, hash and close in a
            # single trip to a worker thread instead of three.
            batch, self._pending, self._pending_size = self._pending, [], 0
            await asyncio.to_thread(_write_whole, self.path, self._hasher, b"".join(batch))
            return DownloadedFile(self.path, self.size, self._hasher.hexdigest(), self.content_type)
        await self._flush()
        await self._drain()
        assert self._file is not None
        handle, self._file = self._file, None
        await asyncio.to_thread(handle.close)
        return DownloadedFile(self.path, self.size, self._hasher.hexdigest(), self.content_type)

    def discard(self) -> None:
        # Synchronous: also runs on cancellation, where awaiting is not reliable. A write still
        # running in its thread fails harmlessly on the closed file; its outcome is collected
        # so it is not reported as an unretrieved exception.
        if self._write is not None:
            write, self._write = self._write, None
            write.add_done_callback(_collect_outcome)
        if self._file is not None:
            handle, self._file = self._file, None
            with contextlib.suppress(OSError, ValueError):
                handle.close()
        _remove_quietly(self.path)


def _collect_outcome(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _open_for_write(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def _write_whole(path: Path, hasher: Any, data: bytes) -> None:
    hasher.update(data)
    with _open_for_write(path) as handle:
        handle.write(data)


def _write_batch(handle: IO[bytes], hasher: Any, data: bytes) -> None:
    # hashlib and file writes release the GIL, so this runs beside the event loop. One call of
    # each per batch (joined by the loop first), not per network chunk: each call re-acquires
    # the GIL from the loop's thread, and that ping-pong cost more than the hashing itself.
    hasher.update(data)
    handle.write(data)


# ----------------------------------------------------------------------------- HTTP download


async def download_to_temp(
    client: httpx.AsyncClient,
    url: str,
    *,
    dest: Path,
    max_bytes: int,
    headers: dict[str, str] | None = None,
    policy: DownloadPolicy,
    retry: RetryConfig | None = None,
    total_timeout: float | None = None,
) -> DownloadedFile:
    """Stream `url` into the file `dest` and describe what arrived.

    Raises `MediaForbiddenHost` (policy), `MediaExpired` (404/410), `MediaTooLarge` (over
    `max_bytes`, early when Content-Length says so), `MediaTypeRejected` (magic bytes), and
    `MediaDownloadError` for anything else, including transient errors that outlived the retries
    and `total_timeout`. `dest` is removed on every failure, cancellation included.
    """
    config = retry or RetryConfig()
    sink = _Sink(Path(dest), max_bytes)
    origin = httpx.URL(url) if _parses(url) else None
    attempts = 0
    try:
        if origin is None:
            raise MediaForbiddenHost("The URL is not valid")
        async with asyncio.timeout(total_timeout):
            retrying = AsyncRetrying(
                stop=stop_after_attempt(max(1, config.attempts)),
                wait=_tenacity_wait(config),
                retry=retry_if_exception_type(_Transient),
                sleep=config.sleep,
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    await _attempt(client, origin, headers or {}, policy, sink, attempts)
            return await sink.finish()
    except _Transient as exc:
        sink.discard()
        raise MediaDownloadError(
            f"Downloading from {redact_url(url)} failed after {attempts} attempt(s): {exc.reason}",
            details={"attempts": attempts},
            transient=True,
        ) from None
    except TimeoutError:
        sink.discard()
        raise MediaDownloadError(
            f"Downloading from {redact_url(url)} did not finish within {total_timeout} seconds",
            transient=True,
        ) from None
    except OSError as exc:
        # Only local file operations get here (network errors are httpx errors): disk full,
        # permissions. Worth retrying once space is freed.
        sink.discard()
        raise _write_failed(exc) from None
    except BaseException:
        sink.discard()
        raise


def _write_failed(exc: OSError) -> MediaDownloadError:
    return MediaDownloadError(
        f"Could not write the media to local storage: {exc.strerror or type(exc).__name__}",
        code="media_write_failed",
        transient=True,
    )


def _parses(url: str) -> bool:
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return False
    return True


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


async def _attempt(
    client: httpx.AsyncClient,
    origin: httpx.URL,
    headers: dict[str, str],
    policy: DownloadPolicy,
    sink: _Sink,
    attempt_number: int,
) -> None:
    if sink.size and not sink.validator:
        await sink.reset()
    resume_from = sink.size
    current = origin
    for _hop in range(policy.max_redirects + 1):
        try:
            checked = await _check_url(current, policy)
        except OSError:
            raise _Transient(f"could not resolve {current.host}") from None
        target, pinned_headers, extensions = checked.request_target(attempt_number - 1)
        request_headers = {"Accept-Encoding": "identity"}
        if _same_origin(current, origin):
            request_headers.update(headers)
        request_headers.update(pinned_headers)
        if resume_from and sink.validator:
            request_headers["Range"] = f"bytes={resume_from}-"
            request_headers["If-Range"] = sink.validator
        try:
            async with client.stream(
                "GET",
                target,
                headers=request_headers,
                extensions=extensions,
                follow_redirects=False,
            ) as response:
                if response.status_code in _REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise MediaDownloadError("The upstream sent a redirect without Location")
                    try:
                        current = current.join(location)
                    except httpx.InvalidURL:
                        raise MediaForbiddenHost("The redirect target is not a valid URL") from None
                    continue
                await _consume(response, sink, resume_from)
                return
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            raise MediaDownloadError(f"The request could not be made: {_describe(exc)}") from None
        except httpx.TransportError as exc:
            # Timeouts, connection failures, proxies, and bodies cut short (RemoteProtocolError).
            raise _Transient(_describe(exc)) from None
        except httpx.DecodingError:
            raise MediaDownloadError("The upstream sent a body that could not be decoded") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise MediaDownloadError(f"The download failed: {type(exc).__name__}") from None
    raise MediaDownloadError(f"Too many redirects (more than {policy.max_redirects})")


async def _consume(response: httpx.Response, sink: _Sink, resume_from: int) -> None:
    status = response.status_code
    expected: int | None
    stops_short = False
    if status in (404, 410):
        raise MediaExpired(
            f"The upstream result URL has expired (HTTP {status})", details={"status": status}
        )
    if status in (408, 429) or status >= 500:
        raise _Transient(
            f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    if status == 206 and resume_from:
        content_range = _parse_content_range(response.headers.get("content-range"))
        if content_range is None or content_range[0] != resume_from:
            await sink.reset()
            raise _Transient("the upstream did not resume at the requested offset")
        start, end, total = content_range
        if total is not None and total > sink.max_bytes:
            raise MediaTooLarge(
                f"The media is larger than the limit of {sink.max_bytes} bytes",
                max_bytes=sink.max_bytes,
            )
        expected = end - start + 1
        # A server may answer an open range with less than the rest; the next attempt resumes.
        stops_short = total is not None and end + 1 < total
    elif status == 200:
        if resume_from:
            # The entity changed or ranges are not supported: start over from byte 0.
            await sink.reset()
        expected = _identity_content_length(response)
        if expected is not None and expected > sink.max_bytes:
            raise MediaTooLarge(
                f"The media is {expected} bytes, over the limit of {sink.max_bytes}",
                max_bytes=sink.max_bytes,
            )
        sink.remember_validator(response.headers)
    elif status in (401, 403):
        raise MediaDownloadError(
            f"The upstream refused access (HTTP {status}); the URL may have expired",
            details={"status": status},
        )
    else:
        raise MediaDownloadError(
            f"Unexpected HTTP {status} from the upstream", details={"status": status}
        )

    received = 0
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        await sink.feed(chunk)
    if expected is not None and received < expected:
        raise _Transient(f"truncated body ({received} of {expected} bytes)")
    if stops_short:
        raise _Transient("the upstream sent only part of the remaining range")


def _identity_content_length(response: httpx.Response) -> int | None:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    value = response.headers.get("content-length", "").strip()
    if encoding not in ("", "identity") or not value.isdigit():
        return None
    return int(value)


def _parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    match = _CONTENT_RANGE.match(value or "")
    if match is None:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def _describe(exc: httpx.HTTPError) -> str:
    # The exception text of transport errors names no URL or header; keep it short anyway.
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name


# ----------------------------------------------------------------------------- base64


async def write_base64_to_temp(b64: str, dest: Path, max_bytes: int) -> DownloadedFile:
    """Decode base64 (or a ``data:...;base64,`` URI) into `dest` in chunks, with the same size
    and type checks as downloads. Whitespace, URL-safe alphabet and missing padding are accepted.
    `dest` is removed on failure."""
    path = Path(dest)
    try:
        return await asyncio.to_thread(_write_base64_sync, b64, path, max_bytes)
    except OSError as exc:
        _remove_quietly(path)
        raise _write_failed(exc) from None
    except BaseException:
        # Synchronous unlink: this also runs on cancellation.
        _remove_quietly(path)
        raise


def _remove_quietly(path: Path) -> None:
    # Cleanup must never replace the error being reported.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _invalid_base64(reason: str) -> MediaDownloadError:
    return MediaDownloadError(f"Invalid base64 media: {reason}", code="media_invalid_base64")


def _write_base64_sync(data: str, dest: Path, max_bytes: int) -> DownloadedFile:
    start = 0
    if data[:5].lower() == "data:":
        comma = data.find(",")
        if comma < 0:
            raise _invalid_base64("malformed data URI")
        if not data[5:comma].strip().lower().endswith(";base64"):
            raise _invalid_base64("the data URI is not base64-encoded")
        start = comma + 1
    # Refuse early when even generous allowance for line breaks cannot bring it under the cap.
    estimate = (len(data) - start) * 3 // 4
    if estimate > max_bytes + max_bytes // 32 + 3:
        raise MediaTooLarge(
            f"The media is larger than the limit of {max_bytes} bytes", max_bytes=max_bytes
        )

    hasher = hashlib.sha256()
    head = bytearray()
    size = 0
    content_type: str | None = None
    carry = ""
    padded = False
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as handle:

        def emit(chunk: bytes) -> None:
            nonlocal size, content_type
            if size + len(chunk) > max_bytes:
                raise MediaTooLarge(
                    f"The media is larger than the limit of {max_bytes} bytes",
                    max_bytes=max_bytes,
                )
            if content_type is None:
                head.extend(chunk[: SNIFF_BYTES - len(head)])
                if len(head) >= SNIFF_BYTES:
                    content_type = _sniff_or_reject(bytes(head))
            size += len(chunk)
            hasher.update(chunk)
            handle.write(chunk)

        def decode(text: str) -> bytes:
            try:
                return binascii.a2b_base64(text, strict_mode=True)
            except (binascii.Error, ValueError):
                raise _invalid_base64("not valid base64") from None

        for offset in range(start, len(data), _B64_CHUNK_CHARS):
            piece = data[offset : offset + _B64_CHUNK_CHARS]
            if _B64_WHITESPACE.search(piece):
                piece = _B64_WHITESPACE.sub("", piece)
            if "-" in piece or "_" in piece:
                piece = piece.translate(_B64_URLSAFE)
            if carry:
                piece = carry + piece
            usable = len(piece) - len(piece) % 4
            carry = piece[usable:]
            if not usable:
                continue
            if padded:
                raise _invalid_base64("data after padding")
            padded = piece[usable - 1] == "="
            emit(decode(piece[:usable]))
        if carry:
            if padded:
                raise _invalid_base64("data after padding")
            if len(carry) == 1:
                raise _invalid_base64("truncated input")
            emit(decode(carry + "=" * (-len(carry) % 4)))

    if size == 0:
        raise _invalid_base64("no data")
    if content_type is None:
        content_type = _sniff_or_reject(bytes(head))
    return DownloadedFile(dest, size, hasher.hexdigest(), content_type)


def _sniff_or_reject(head: bytes) -> str:
    content_type = sniff_content_type(head)
    if content_type is None:
        raise MediaTypeRejected(
            "The content is not an accepted media type (mp4, mov, webm, png, jpeg, webp)"
        )
    return content_type
