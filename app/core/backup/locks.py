"""Locks for "only one of us does this": a file lock (one host) and a PostgreSQL advisory lock
(a fleet sharing one database).

Both are *session* locks: held as long as the process keeps the file descriptor or the database
connection open, and released by the operating system or the server when the process dies, so a
crashed leader never blocks the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.core.backup.errors import BackupError

logger = logging.getLogger(__name__)


def advisory_lock_id(name: str) -> int:
    """A stable signed 64-bit lock id for `name` (pg advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class LeaderLock(Protocol):
    async def try_acquire(self) -> bool:
        """Take the lock if free; True when this object holds it (now or already)."""
        ...

    async def still_held(self) -> bool:
        """False once the lock was lost (e.g. the database connection dropped)."""
        ...

    async def release(self) -> None: ...


class FileLock:
    """An exclusive `flock` on a file. Each instance opens its own descriptor, so two instances
    exclude each other even inside one process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire_sync(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        # For a human wondering who holds it; the lock itself is the flock, not the content.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release_sync(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    async def try_acquire(self) -> bool:
        return await asyncio.to_thread(self.try_acquire_sync)

    async def still_held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        self.release_sync()

    async def acquire(self, wait_seconds: float, poll_interval: float = 0.25) -> None:
        """Wait for the lock up to `wait_seconds` (polling, so cancellation stays prompt)."""
        deadline = time.monotonic() + wait_seconds
        while not await self.try_acquire():
            if time.monotonic() >= deadline:
                raise BackupError(
                    f"another backup operation holds {self.path}; try again when it is done"
                )
            await asyncio.sleep(poll_interval)


class PostgresAdvisoryLock:
    """`pg_try_advisory_lock` on a dedicated connection, held while this process leads.

    The connection is in autocommit, so holding the lock never keeps a transaction open.
    """

    def __init__(self, database_url: str, name: str) -> None:
        self.database_url = database_url
        # Used by the backup scheduler and the fleet runner alike: logs name the lock, not
        # "backup", so a housekeeping leader's trouble doesn't read as a backup problem.
        self.name = name
        self.lock_id = advisory_lock_id(name)
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None

    async def _connect(self) -> AsyncConnection:
        if self._engine is None:
            self._engine = create_async_engine(
                self.database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
        return await self._engine.connect()

    async def try_acquire(self) -> bool:
        if self._conn is not None:
            return await self.still_held()
        try:
            conn = await self._connect()
        except (SQLAlchemyError, OSError) as exc:
            logger.warning(
                "leader election (%s): cannot connect to the database: %s", self.name, exc
            )
            return False
        try:
            got = (
                await conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": self.lock_id})
            ).scalar_one()
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("leader election (%s) failed: %s", self.name, exc)
            await _close_quietly(conn)
            return False
        if not got:
            # Not the leader: don't sit on a connection while waiting for the next try.
            await _close_quietly(conn)
            return False
        self._conn = conn
        return True

    async def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            # The lock lives exactly as long as this session; a live session still holds it.
            await self._conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            logger.warning("leader (%s) lost its database connection; stepping down", self.name)
            conn, self._conn = self._conn, None
            await _close_quietly(conn)
            return False
        return True

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError, OSError):
                await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": self.lock_id})
            await _close_quietly(conn)
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


async def _close_quietly(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
