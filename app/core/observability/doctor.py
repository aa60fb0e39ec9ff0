"""`genapi doctor`: checks a deployment and says what to fix.

Each check returns `Check`s (ok / warn / fail, what was found, how to fix it). Nothing here
changes state beyond one temporary file written to and deleted from the media store; the
development secrets file is looked for, never created.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.clients.errors import scrub
from app.clients.http import USER_AGENT, join_url
from app.core.config import PLACEHOLDER_SECRETS, Settings
from app.core.observability.logging import ObservabilitySettings
from app.core.secrets import (
    DEV_SECRETS_FILE,
    MIN_JWT_SECRET_LENGTH,
    ConfigurationError,
    validate_master_key,
)
from app.db.migrate import alembic_config, current_revision, head_revision
from app.db.session import create_engine

Level = Literal["ok", "warn", "fail"]

GIB = 1024**3
MIB = 1024**2
DISK_FAIL_BYTES = 200 * MIB
DISK_WARN_BYTES = 2 * GIB
DISK_WARN_FRACTION = 0.05
DEFAULT_TIMEOUT = 10.0
MIN_METRICS_TOKEN_LENGTH = 16
# Cheap authenticated GETs, tried in order until one tells whether the key is accepted.
KEY_PROBE_PATHS = ("/v1/models", "/v1/videos")


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def _warn(name: str, detail: str, fix: str | None = None) -> Check:
    return Check(name, "warn", detail, fix)


def _fail(name: str, detail: str, fix: str | None = None) -> Check:
    return Check(name, "fail", detail, fix)


def _reason(exc: BaseException) -> str:
    """The first line of an error, without credentials (database URLs, bearer tokens)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return scrub(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def display_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


# --- settings ------------------------------------------------------------------------------------


def _is_placeholder(value: str | None) -> bool:
    return value is None or value.strip().lower() in PLACEHOLDER_SECRETS


def check_secrets(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    production = settings.is_production
    missing = [
        name
        for name, value in (
            ("JWT_SECRET_KEY", settings.jwt_secret_key),
            ("STORAGE_MASTER_KEY", settings.storage_master_key),
        )
        if _is_placeholder(value)
    ]
    if missing and production:
        checks.append(
            _fail(
                "secrets",
                f"{' and '.join(missing)} missing or a placeholder; the service refuses to start",
                "set them to random values (see the README's configuration table)",
            )
        )
    elif missing:
        dev_file = settings.data_dir / DEV_SECRETS_FILE
        where = (
            f"taken from {dev_file}"
            if dev_file.exists()
            else f"generated into {dev_file} on first start"
        )
        checks.append(
            _warn(
                "secrets",
                f"{' and '.join(missing)} not set: development secrets {where}",
                "fine for trying; for a deployment set JWT_SECRET_KEY and STORAGE_MASTER_KEY "
                "(and ENV=production), and keep STORAGE_MASTER_KEY backed up",
            )
        )
    if not _is_placeholder(settings.jwt_secret_key):
        length = len(settings.jwt_secret_key or "")
        if length < MIN_JWT_SECRET_LENGTH:
            make = _fail if production else _warn
            checks.append(
                make(
                    "secrets",
                    f"JWT_SECRET_KEY is {length} characters (at least {MIN_JWT_SECRET_LENGTH})",
                    'generate one: python -c "import secrets; print(secrets.token_urlsafe(48))"',
                )
            )
    if not _is_placeholder(settings.storage_master_key):
        try:
            validate_master_key(settings.storage_master_key or "")
        except ConfigurationError as exc:
            checks.append(_fail("secrets", "STORAGE_MASTER_KEY is not valid", str(exc)))
        else:
            keys = [k for k in (settings.storage_master_key or "").split(",") if k.strip()]
            if len(keys) > 1:
                checks.append(
                    _ok(
                        "secrets",
                        f"{len(keys)} storage keys: the first encrypts, older ones only decrypt",
                    )
                )
    if not checks:
        checks.append(_ok("secrets", "JWT_SECRET_KEY and STORAGE_MASTER_KEY are set and valid"))
    return checks


def check_settings(settings: Settings, observability: ObservabilitySettings | None) -> list[Check]:
    checks = check_secrets(settings)
    production = settings.is_production
    if not production:
        checks.append(
            _warn(
                "environment",
                f"ENV={settings.env}: development secrets allowed, readable logs",
                "set ENV=production for a deployment",
            )
        )
    else:
        problems: list[Check] = []
        if not settings.cookie_secure:
            problems.append(
                _fail(
                    "cookies",
                    "COOKIE_SECURE is off: browsers send the session cookie over plain HTTP",
                    "serve over HTTPS (a TLS proxy in front) and set COOKIE_SECURE=true",
                )
            )
        insecure = [
            o
            for o in settings.cors_origins
            if o.startswith("http://") and "localhost" not in o and "127.0.0.1" not in o
        ]
        if insecure:
            problems.append(
                _warn(
                    "cors",
                    f"CORS_ORIGINS allows plain-HTTP origins: {', '.join(insecure)}",
                    "list only https:// origins",
                )
            )
        if settings.bcrypt_rounds < 10:
            problems.append(
                _warn(
                    "passwords",
                    f"BCRYPT_ROUNDS={settings.bcrypt_rounds} is weak for production",
                    "use 12 (the default)",
                )
            )
        if not settings.backup_enabled:
            problems.append(
                _warn(
                    "backups",
                    "scheduled backups are off (BACKUP_ENABLED=false)",
                    "set BACKUP_ENABLED=true, or back up the database and media yourself",
                )
            )
        checks.extend(problems or [_ok("environment", "ENV=production with secure cookies")])
    if observability is not None:
        token = observability.metrics_token
        if token is not None and len(token.get_secret_value()) < MIN_METRICS_TOKEN_LENGTH:
            checks.append(
                _warn(
                    "metrics",
                    f"METRICS_TOKEN is shorter than {MIN_METRICS_TOKEN_LENGTH} characters",
                    'generate one: python -c "import secrets; print(secrets.token_urlsafe(32))"',
                )
            )
        wide = [n for n in observability.metrics_allowlist if n.prefixlen == 0]
        if wide:
            checks.append(
                _warn(
                    "metrics",
                    f"METRICS_ALLOWLIST admits every address ({', '.join(map(str, wide))})",
                    "list the Prometheus server's addresses, or use METRICS_TOKEN",
                )
            )
    return checks


# --- database ------------------------------------------------------------------------------------


async def check_database(settings: Settings, wait_seconds: float = DEFAULT_TIMEOUT) -> list[Check]:
    url = settings.resolved_database_url
    shown = display_url(url)
    missing = _missing_sqlite_file(url)
    if missing is not None:
        # Connecting would create an empty file: report instead of touching anything.
        parent = _nearest_existing(missing.parent)
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return [
                _warn(
                    "database",
                    f"SQLite file {missing} does not exist yet",
                    "run `genapi migrate` (`genapi serve` also creates it)",
                )
            ]
        return [
            _fail(
                "database",
                f"SQLite file {missing} cannot be created: {parent} is not writable",
                "point DATA_DIR or DATABASE_URL at a writable directory",
            )
        ]
    try:
        engine = create_engine(url)
    except Exception as exc:
        return [
            _fail(
                "database",
                f"DATABASE_URL {shown} is not usable: {_reason(exc)}",
                "use postgresql+asyncpg://user:password@host/db or sqlite+aiosqlite:///path",
            )
        ]
    try:
        try:
            async with asyncio.timeout(wait_seconds), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            return [
                _fail(
                    "database",
                    f"cannot connect to {shown}: {_reason(exc)}",
                    "check DATABASE_URL, that the server runs and accepts this user, or for "
                    "SQLite that the directory exists and is writable",
                )
            ]
        checks = [_ok("database", f"connected to {shown}")]
        try:
            async with asyncio.timeout(wait_seconds):
                current = await current_revision(engine)
        except Exception as exc:
            checks.append(_fail("migrations", f"cannot read the schema version: {_reason(exc)}"))
            return checks
        checks.append(check_revision(current, head_revision()))
        return checks
    finally:
        await engine.dispose()


def _missing_sqlite_file(url: str) -> Path | None:
    try:
        parsed = make_url(url)
    except Exception:
        return None
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    return None if path.exists() else path


def check_revision(current: str | None, head: str | None) -> Check:
    if current == head:
        return _ok("migrations", f"schema at the latest revision ({head})")
    if current is None:
        return _warn(
            "migrations",
            "the database is empty (no schema yet)",
            "run `genapi migrate` (`genapi serve` also does it on start)",
        )
    try:
        known = ScriptDirectory.from_config(alembic_config("")).get_revision(current)
    except CommandError:
        known = None
    if known is None:
        return _fail(
            "migrations",
            f"the database is at revision {current}, unknown to this version (head {head})",
            "a newer genapi migrated this database: run that version, or restore a backup",
        )
    return _fail(
        "migrations",
        f"the database is at {current}, this version expects {head}",
        "run `genapi migrate` (`genapi serve` does it on start; `genapi worker` does not)",
    )


# --- upstream ------------------------------------------------------------------------------------


async def check_upstream(
    settings: Settings,
    wait_seconds: float = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Check]:
    if settings.uses_simulator:
        return [
            _warn(
                "upstream",
                "no API_KEY/API_BASE_URL: the built-in simulator answers every generation",
                "set API_BASE_URL and API_KEY for real generations",
            )
        ]
    base = settings.upstream_base_url
    key = settings.api_key or ""
    async with httpx.AsyncClient(
        timeout=wait_seconds,
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    ) as http:
        try:
            await http.get(base)
        except httpx.InvalidURL as exc:
            return [_fail("upstream", f"API_BASE_URL {base!r} is invalid: {_reason(exc)}")]
        except httpx.HTTPError as exc:
            return [
                _fail(
                    "upstream",
                    f"cannot reach {base}: {_reason(exc)}",
                    "check API_BASE_URL, DNS, firewall and any HTTPS proxy settings",
                )
            ]
        checks = [_ok("upstream", f"{base} answers")]
        if not key:
            checks.append(
                _warn(
                    "upstream key",
                    "API_KEY is not set: only callers sending their own key (X-API-Key) can "
                    "generate",
                    "set API_KEY",
                )
            )
            return checks
        checks.append(await _probe_key(http, base, key))
        return checks


async def _probe_key(http: httpx.AsyncClient, base: str, key: str) -> Check:
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    last_status: int | None = None
    for path in KEY_PROBE_PATHS:
        url = join_url(base, path)
        try:
            response = await http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            return _warn("upstream key", f"GET {path} failed: {_reason(exc)}; key not verified")
        last_status = response.status_code
        if response.is_success:
            return _ok("upstream key", f"API_KEY accepted (GET {path} -> {last_status})")
        if last_status in (401, 403):
            return _fail(
                "upstream key",
                f"the upstream rejected API_KEY (GET {path} -> HTTP {last_status})",
                "check API_KEY (no quotes or spaces) and that it has access to the models",
            )
        if last_status == 429:
            return _warn("upstream key", f"rate limited on GET {path}; key not verified")
        if last_status >= 500:
            return _warn(
                "upstream key",
                f"GET {path} -> HTTP {last_status}: the upstream has trouble; key not verified",
            )
    return _warn(
        "upstream key",
        f"no cheap endpoint to verify the key (last HTTP {last_status}); it is checked on the "
        "first generation",
    )


# --- media and disk ------------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


async def check_media(settings: Settings) -> Check:
    from app.core.media.storage import LocalMediaStorage, create_media_storage

    backend = str(getattr(settings, "media_backend", "local") or "local").lower()
    media_dir = settings.media_dir
    if backend == "local":
        if media_dir.exists() and not media_dir.is_dir():
            return _fail(
                "media store",
                f"{media_dir} exists but is not a directory",
                "move that file away or point DATA_DIR elsewhere",
            )
        if not media_dir.exists():
            parent = _nearest_existing(media_dir)
            if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
                return _ok("media store", f"{media_dir} will be created on first start")
            return _fail(
                "media store",
                f"{media_dir} does not exist and {parent} is not writable",
                f"create {media_dir} and make it writable by the service's user",
            )
    key = f"doctor-{uuid.uuid4().hex}.tmp"
    payload = b"genapi doctor write test\n"
    try:
        storage = create_media_storage(settings)
        temp = storage.new_temp_path(".doctor")
        await asyncio.to_thread(temp.write_bytes, payload)
        await storage.put_file(temp, key)
        try:
            if await storage.size(key) != len(payload):
                return _fail("media store", "a test file came back with the wrong size")
        finally:
            await storage.delete(key)
        if await storage.exists(key):
            return _fail("media store", "a test file could not be deleted")
    except Exception as exc:
        where = media_dir if backend == "local" else f"the {backend} media store"
        return _fail(
            "media store",
            f"cannot write to {where}: {_reason(exc)}",
            "make the media directory writable by the service's user"
            if backend == "local"
            else "check the media store's bucket, endpoint and credentials",
        )
    where = str(storage.root) if isinstance(storage, LocalMediaStorage) else f"{backend} store"
    return _ok("media store", f"wrote, read and deleted a test file in {where}")


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.0f} B"  # pragma: no cover


def check_disk(settings: Settings) -> list[Check]:
    places = {"data": settings.data_dir, "media": settings.media_dir}
    if settings.backup_enabled or settings.backup_dir is not None:
        places["backups"] = settings.resolved_backup_dir
    seen: dict[int, list[str]] = {}
    usage: dict[int, tuple[Path, Any]] = {}
    for label, path in places.items():
        existing = _nearest_existing(path)
        try:
            device = existing.stat().st_dev
            if device not in usage:
                usage[device] = (existing, shutil.disk_usage(existing))
        except OSError as exc:
            return [_warn("disk", f"cannot read free space at {existing}: {_reason(exc)}")]
        seen.setdefault(device, []).append(label)
    checks = []
    for device, (path, du) in usage.items():
        labels = "/".join(seen[device])
        detail = f"{_size(du.free)} free of {_size(du.total)} at {path} ({labels})"
        if du.free < DISK_FAIL_BYTES:
            checks.append(_fail("disk", detail, "free space: results and backups cannot fit"))
        elif du.free < DISK_WARN_BYTES or du.free < du.total * DISK_WARN_FRACTION:
            checks.append(_warn("disk", detail, "free space or grow the volume soon"))
        else:
            checks.append(_ok("disk", detail))
    return checks


def check_backups(settings: Settings) -> list[Check]:
    if not settings.backup_enabled:
        return []
    backup_dir = settings.resolved_backup_dir
    target = backup_dir if backup_dir.exists() else _nearest_existing(backup_dir)
    if not target.is_dir() or not os.access(target, os.W_OK | os.X_OK):
        return [
            _fail(
                "backups",
                f"BACKUP_DIR {backup_dir} is not a writable directory",
                "create it and make it writable by the service's user",
            )
        ]
    try:
        from app.core.backup.service import newest_backup_time
    except ImportError:  # pragma: no cover
        return [_ok("backups", f"BACKUP_DIR {backup_dir} is writable")]
    try:
        newest = newest_backup_time(backup_dir)
    except Exception as exc:
        return [_warn("backups", f"cannot list {backup_dir}: {_reason(exc)}")]
    if newest is None:
        return [_warn("backups", f"no backup in {backup_dir} yet", "run `genapi backup`")]
    age_hours = (time.time() - newest.timestamp()) / 3600
    if age_hours > settings.backup_interval_hours * 2:
        return [
            _warn(
                "backups",
                f"the newest backup is {age_hours:.0f} h old "
                f"(interval {settings.backup_interval_hours:g} h)",
                "check the service log for backup failures, or run `genapi backup`",
            )
        ]
    return [_ok("backups", f"newest backup {age_hours:.1f} h old in {backup_dir}")]


# --- all together --------------------------------------------------------------------------------


async def run_checks(
    settings: Settings,
    observability: ObservabilitySettings | None = None,
    *,
    network: bool = True,
    wait_seconds: float = DEFAULT_TIMEOUT,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
) -> list[Check]:
    checks = check_settings(settings, observability)
    steps: list[Callable[[], Awaitable[Sequence[Check] | Check]]] = [
        lambda: check_database(settings, wait_seconds),
        lambda: check_media(settings),
    ]
    if network:
        steps.append(lambda: check_upstream(settings, wait_seconds, upstream_transport))
    for step in steps:
        try:
            result = await step()
        except Exception as exc:  # one broken check must not hide the others
            result = _fail("doctor", f"a check crashed: {_reason(exc)}")
        checks.extend([result] if isinstance(result, Check) else result)
    checks.extend(check_disk(settings))
    checks.extend(check_backups(settings))
    return checks
