"""Media stored in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, R2, Garage, …).

`S3MediaStorage` implements the `MediaStorage` protocol with boto3. boto3 is synchronous, so
every call runs in a worker thread (`asyncio.to_thread`); the event loop never blocks on the
network. Nothing is buffered whole in memory:

- `put_file` hands the finished temp file to boto3's transfer manager, which streams it from disk
  (one PUT below the multipart threshold, a multipart upload of fixed-size parts above it). An
  object becomes visible only when its upload completes, so readers never see a partial file.
- `open_range` sends one GetObject with a `Range` header and yields the streaming body chunk by
  chunk.

Downloads in progress still land on local disk first (`DATA_DIR/tmp`), exactly as with the local
backend. Errors never carry the secret key, request headers or presigned query strings: they
name the operation and the store's error code only.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore import exceptions as boto_errors
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.media.errors import MediaError, MediaNotFound
from app.core.media.storage import DEFAULT_CHUNK_SIZE, validate_key
from app.core.secrets import ConfigurationError

if TYPE_CHECKING:
    from app.core.config import Settings

logger = logging.getLogger(__name__)

MIB = 1024**2
#: S3 refuses multipart parts below 5 MiB (except the last one).
MIN_PART_SIZE = 5 * MIB
DEFAULT_MULTIPART_THRESHOLD = 16 * MIB
DEFAULT_PART_SIZE = 16 * MIB
#: SigV4 presigned URLs cannot live longer than 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
#: A presigned URL is a bearer credential for the object: short-lived by default. A client that
#: comes back later (a player seeking after a pause) asks the API again and gets a fresh one.
DEFAULT_PRESIGN_SECONDS = 300
TEMP_DIR_NAME = "tmp"

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
# Error codes the store answers for a key (or object) that does not exist. HEAD has no body, so
# a missing object there is only "404".
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_TRANSIENT_CODES = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
    }
)


_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def _new_client(**kwargs: Any) -> Any:
    """An S3 client from one shared boto3 session: the session caches the parsed service model,
    which costs a good part of a second per session. Credentials are given per client. Creating
    clients from one session is not thread-safe, hence the lock."""
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


class S3Settings(BaseSettings):
    """The object-store settings (same `.env` and environment as `Settings`).

    They live here rather than in `Settings` so the media backend stays self-contained; every one
    is documented in the README's configuration table.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    media_backend: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    #: None means AWS itself; set it for MinIO, Ceph, R2, … (e.g. http://minio:9000).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    #: Both None: boto3's default chain (environment, shared config, instance/task role).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    #: Key prefix inside the bucket, e.g. "genapi/media" (so one bucket can hold several things).
    s3_prefix: str = ""
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    #: Serve downloads by redirecting to presigned GET URLs instead of proxying the bytes
    #: (`app.core.media.delivery`).
    s3_presign: bool = False
    s3_presign_expires_seconds: int = Field(
        default=DEFAULT_PRESIGN_SECONDS, ge=1, le=MAX_PRESIGN_SECONDS
    )
    s3_multipart_threshold_bytes: int = Field(default=DEFAULT_MULTIPART_THRESHOLD, ge=MIN_PART_SIZE)
    s3_multipart_part_bytes: int = Field(default=DEFAULT_PART_SIZE, ge=MIN_PART_SIZE)
    s3_max_concurrency: int = Field(default=4, ge=1, le=64)


class S3StorageError(MediaError, OSError):
    """The object store failed a request (unreachable, refused, throttled, misconfigured).

    Also an `OSError`, because callers already treat an `OSError` as "the media store could not
    do it" (e.g. deleting an orphan file is logged and skipped)."""

    status_code = 503
    code = "media_store_error"
    message = "The media store could not complete the request"


def _error_code(exc: ClientError) -> str:
    error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    code = str(error.get("Code") or "")
    if not code:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(status or "unknown")
    return code


def _is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and _error_code(exc) in _NOT_FOUND_CODES


def _store_error(exc: BaseException, operation: str) -> S3StorageError:
    """A clean error for `exc`: the operation and the store's error code, nothing of the request
    itself (its headers carry the signature, presigned URLs their query) and no storage key (the
    error may reach a client)."""
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
        exc = exc.__context__
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        transient = code in _TRANSIENT_CODES
    else:
        code = type(exc).__name__
        # Connection refused/reset, timeouts and bodies cut short: worth trying again later.
        transient = isinstance(
            exc,
            boto_errors.ConnectionError
            | boto_errors.HTTPClientError
            | boto_errors.ResponseStreamingError
            | boto_errors.IncompleteReadError,
        )
    details = {"operation": operation, "store_code": code}
    return S3StorageError(
        f"media store request {operation} failed ({code})", details=details, transient=transient
    )


def content_type_for(key: str) -> str:
    """The Content-Type stored with an object, so presigned downloads carry the right one."""
    suffix = Path(key).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip().strip("/")
    if not prefix:
        return ""
    if any(part in {"", ".", ".."} for part in prefix.split("/")):
        raise ConfigurationError("S3_PREFIX must be a plain path such as 'genapi/media'")
    return prefix + "/"


class S3MediaStorage:
    """Media in `bucket` under `prefix`; the same keys as the local backend."""

    def __init__(
        self,
        bucket: str,
        *,
        temp_dir: Path,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: SecretStr | str | None = None,
        addressing_style: Literal["auto", "path", "virtual"] = "auto",
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 4,
        presign: bool = False,
        presign_expires: int = DEFAULT_PRESIGN_SECONDS,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
    ) -> None:
        if not bucket:
            raise ConfigurationError("S3_BUCKET is required when MEDIA_BACKEND=s3")
        secret = (
            secret_access_key.get_secret_value()
            if isinstance(secret_access_key, SecretStr)
            else secret_access_key
        ) or None
        access_key_id = access_key_id or None
        if (access_key_id is None) != (secret is None):
            raise ConfigurationError(
                "set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither (to use the "
                "default AWS credential chain)"
            )
        if part_size < MIN_PART_SIZE or multipart_threshold < MIN_PART_SIZE:
            raise ConfigurationError("S3 multipart threshold and part size must be >= 5 MiB")
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.presign = presign
        self.presign_expires = presign_expires
        self._temp_dir = Path(temp_dir).resolve()
        self._temp_dir.mkdir(parents=True, exist_ok=True)
        # The secret lives only inside the boto3 client, never on this object, so neither a
        # repr nor a traceback's locals of our frames can show it.
        client_credentials = {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret}
        del secret
        config = BotoConfig(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Room for every transfer thread plus concurrent ranged reads.
            max_pool_connections=max(10, max_concurrency * 4),
            tcp_keepalive=True,
            # botocore >= 1.36 adds CRC checksums (aws-chunked bodies) by default, which many
            # S3-compatible stores reject; send them only when an operation requires one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = _new_client(
            endpoint_url=endpoint_url, region_name=region, config=config, **client_credentials
        )
        client_credentials.clear()
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
            use_threads=True,
        )
        self.endpoint_url = endpoint_url

    @classmethod
    def from_settings(cls, settings: Settings, s3: S3Settings | None = None) -> S3MediaStorage:
        """The store described by the S3_* settings; temp files under `DATA_DIR/tmp`."""
        s3 = s3 or S3Settings()
        if not s3.s3_bucket:
            raise ConfigurationError("S3_BUCKET is required when MEDIA_BACKEND=s3")
        return cls(
            s3.s3_bucket,
            temp_dir=settings.data_dir / TEMP_DIR_NAME,
            prefix=s3.s3_prefix,
            endpoint_url=s3.s3_endpoint_url or None,
            region=s3.s3_region or None,
            access_key_id=s3.s3_access_key_id or None,
            secret_access_key=s3.s3_secret_access_key,
            addressing_style=s3.s3_addressing_style,
            multipart_threshold=s3.s3_multipart_threshold_bytes,
            part_size=s3.s3_multipart_part_bytes,
            max_concurrency=s3.s3_max_concurrency,
            presign=s3.s3_presign,
            presign_expires=s3.s3_presign_expires_seconds,
        )

    def __repr__(self) -> str:
        return f"S3MediaStorage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Release pooled connections (the object is unusable afterwards)."""
        self._client.close()

    def object_key(self, key: str) -> str:
        """The object name of `key` in the bucket (the prefix plus the validated key)."""
        return self.prefix + validate_key(key)

    # -- temp files ----------------------------------------------------------------------------

    @property
    def temp_dir(self) -> Path:
        return self._temp_dir

    def new_temp_path(self, suffix: str = "") -> Path:
        if suffix and not re.fullmatch(r"\.?[A-Za-z0-9._-]{1,20}", suffix):
            raise ValueError(f"invalid temp file suffix {suffix!r}")
        return self._temp_dir / f"{uuid.uuid4().hex}{suffix}"

    async def purge_temp(self, older_than_seconds: float) -> int:
        return await asyncio.to_thread(self._purge_temp_sync, older_than_seconds)

    def _purge_temp_sync(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in os.scandir(self._temp_dir):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    # -- writing -------------------------------------------------------------------------------

    async def put_file(self, src_path: Path, key: str) -> None:
        """Upload the finished file, then delete it (the local temp file is consumed). On
        failure the file stays where it is, for the caller to retry or discard."""
        src = Path(src_path)
        await self.upload_from(src, key)
        await asyncio.to_thread(src.unlink, missing_ok=True)

    async def upload_from(
        self, src_path: Path, key: str, *, progress: Callable[[int], None] | None = None
    ) -> None:
        """Upload `src_path` to `key` without consuming it (used by `genapi media migrate`).

        `progress` is called from transfer threads with the bytes sent since its last call."""
        object_key = self.object_key(key)
        await asyncio.to_thread(self._upload_sync, Path(src_path), object_key, key, progress)

    def _upload_sync(
        self, src: Path, object_key: str, key: str, progress: Callable[[int], None] | None
    ) -> None:
        try:
            # upload_file streams from disk: parts are read lazily, part by part, never whole.
            self._client.upload_file(
                str(src),
                self.bucket,
                object_key,
                ExtraArgs={"ContentType": content_type_for(key)},
                Config=self._transfer,
                Callback=progress,
            )
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise _store_error(exc, "PutObject") from None
        logger.debug("stored %s in bucket %s", object_key, self.bucket)

    async def delete(self, key: str) -> None:
        object_key = self.object_key(key)
        try:
            await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=object_key)
        except (ClientError, BotoCoreError) as exc:
            if _is_not_found(exc):
                return
            raise _store_error(exc, "DeleteObject") from None

    # -- reading -------------------------------------------------------------------------------

    async def open_range(
        self,
        key: str,
        start: int = 0,
        end_inclusive: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        if start < 0 or (end_inclusive is not None and end_inclusive < start) or chunk_size < 1:
            raise ValueError("invalid byte range")
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if start or end_inclusive is not None:
            last = "" if end_inclusive is None else str(end_inclusive)
            params["Range"] = f"bytes={start}-{last}"
        try:
            response = await asyncio.to_thread(self._client.get_object, **params)
        except (ClientError, BotoCoreError) as exc:
            if _is_not_found(exc):
                raise MediaNotFound() from None
            if isinstance(exc, ClientError) and _error_code(exc) == "InvalidRange":
                # Starting at or past the end: nothing to read, as with a local file.
                return
            raise _store_error(exc, "GetObject") from None
        body = response["Body"]
        try:
            while True:
                try:
                    data = await asyncio.to_thread(body.read, chunk_size)
                except (BotoCoreError, OSError) as exc:
                    raise _store_error(exc, "GetObject") from None
                if not data:
                    break
                yield data
        finally:
            # Synchronous on purpose (see LocalMediaStorage.open_range): also runs when the
            # generator is finalised after a client disconnect. Closing a partly read body drops
            # its connection instead of draining the rest of the object.
            body.close()

    async def download_to(
        self, key: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> None:
        """Fetch the whole object into the local file `dest` (parallel ranged GETs for large
        objects; boto3 writes to a temp name and renames, so `dest` is never partial)."""
        object_key = self.object_key(key)
        try:
            await asyncio.to_thread(
                self._client.download_file,
                self.bucket,
                object_key,
                str(dest),
                Config=self._transfer,
                Callback=progress,
            )
        except (ClientError, BotoCoreError) as exc:
            if _is_not_found(exc):
                raise MediaNotFound() from None
            raise _store_error(exc, "GetObject") from None

    async def _head(self, key: str) -> dict[str, Any] | None:
        object_key = self.object_key(key)
        try:
            result: dict[str, Any] = await asyncio.to_thread(
                self._client.head_object, Bucket=self.bucket, Key=object_key
            )
        except (ClientError, BotoCoreError) as exc:
            if _is_not_found(exc):
                return None
            raise _store_error(exc, "HeadObject") from None
        return result

    async def size(self, key: str) -> int:
        head = await self._head(key)
        if head is None:
            raise MediaNotFound()
        return int(head["ContentLength"])

    async def exists(self, key: str) -> bool:
        return await self._head(key) is not None

    # -- extras --------------------------------------------------------------------------------

    async def presigned_url(
        self,
        key: str,
        expires: int | None = None,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        disposition: Literal["inline", "attachment"] = "inline",
    ) -> str:
        """A GET URL for `key` valid `expires` seconds (default S3_PRESIGN_EXPIRES_SECONDS).

        The URL is a bearer credential: hand it only to the owner of the media, never log it.
        `filename`/`content_type` override the response headers the store sends."""
        seconds = self.presign_expires if expires is None else expires
        if not 1 <= seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError("presigned URLs must expire within 1 second to 7 days")
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if content_type:
            params["ResponseContentType"] = content_type
        if filename:
            # Imported here: http_range imports the storage protocol module, not this one.
            from app.core.media.http_range import content_disposition

            params["ResponseContentDisposition"] = content_disposition(disposition, filename)
        try:
            # Signing is local, but resolving credentials may query an instance role endpoint.
            url: str = await asyncio.to_thread(
                self._client.generate_presigned_url,
                "get_object",
                Params=params,
                ExpiresIn=seconds,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _store_error(exc, "PresignGetObject") from None
        return url

    async def check(self) -> None:
        """Raise `S3StorageError` unless the bucket exists and these credentials reach it (for
        start-up checks, `genapi doctor` and `genapi media migrate`)."""
        try:
            await asyncio.to_thread(self._client.head_bucket, Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            error = _store_error(exc, "HeadBucket")
            if isinstance(exc, ClientError) and _error_code(exc) in {"404", "NoSuchBucket"}:
                error.message = f"bucket {self.bucket!r} does not exist"
                error.args = (error.message,)
            raise error from None
