"""Task events across processes on PostgreSQL: NOTIFY out, LISTEN in.

Every process of a fleet (API processes and `genapi worker`s) runs one `PgEventRelay` with its
own asyncpg connection (not from the SQLAlchemy pool: a LISTEN connection must stay checked out
for the life of the process). It is the bus's forwarder: each event published here is queued,
then sent with `pg_notify` (batched, one statement per batch) on that connection; every
notification from another process is handed to the bus's `deliver`, so the SSE streams of this
process see changes made by workers elsewhere within milliseconds.

Events are published after their transaction committed, and the NOTIFY is sent in autocommit
afterwards, so a listener never hears of a change it cannot read yet. The payload is a small
JSON object (origin, user id, task id, type and the public summary: status, progress,
updated_at, …), far below PostgreSQL's 8000-byte limit. The origin, unique per relay, lets a
relay skip the echo of its own events (LISTEN also hears its own NOTIFYs).

Delivery is best effort, by design: the SSE streams still re-read the database now and then.
While the connection is down events wait in a bounded outbox (oldest dropped when full) and the
relay reconnects with exponential backoff; events sent by others meanwhile are missed and come
back through that database recheck. SQLite has no relay: one host, the recheck covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
from collections import deque
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app.core.tasks.events import TaskEvent, TaskEventBus

logger = logging.getLogger(__name__)

CHANNEL = "genapi_task_events"
# PostgreSQL refuses payloads of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7900
# The fields kept when an event would not fit (the title is the only unbounded one).
ESSENTIAL_FIELDS = ("id", "object", "model", "status", "progress", "error_code", "updated_at")
OUTBOX_SIZE = 10_000
SEND_BATCH = 500
CONNECT_TIMEOUT = 10.0
HEALTH_CHECK_SECONDS = 15.0
MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STOP_FLUSH_SECONDS = 2.0
APPLICATION_NAME = "genapi task events"
NOTIFY_SQL = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"
# SQLAlchemy-only URL options that asyncpg.connect would not understand.
_DIALECT_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func")


def asyncpg_connect_args(database_url: str) -> tuple[str, dict[str, Any]]:
    """The asyncpg DSN (the SQLAlchemy URL without `+asyncpg`) and extra connect() kwargs."""
    url = make_url(database_url)
    query = dict(url.query)
    kwargs: dict[str, Any] = {}
    ssl = query.pop("ssl", None)
    if ssl is not None:
        kwargs["ssl"] = ssl if isinstance(ssl, str) else ssl[0]
    for option in _DIALECT_OPTIONS:
        query.pop(option, None)
    # Named in pg_stat_activity, so an operator counting connections knows what this one is.
    kwargs["server_settings"] = {"application_name": APPLICATION_NAME}
    dsn = url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
    return dsn, kwargs


def encode_event(event: TaskEvent, origin: str) -> str:
    """The NOTIFY payload of `event`, always under `MAX_PAYLOAD_BYTES`."""
    body: dict[str, Any] = {
        "o": origin,
        "u": event.user_id,
        "t": event.task_id,
        "y": event.type,
        "d": event.data,
    }
    text = json.dumps(body, separators=(",", ":"), default=str)
    if len(text.encode()) < MAX_PAYLOAD_BYTES:
        return text
    body["d"] = {k: v for k, v in event.data.items() if k in ESSENTIAL_FIELDS}
    text = json.dumps(body, separators=(",", ":"), default=str)
    if len(text.encode()) < MAX_PAYLOAD_BYTES:
        return text
    # Only reachable with absurd field values; the database recheck fills in the rest.
    body["d"] = {"id": event.task_id}
    return json.dumps(body, separators=(",", ":"), default=str)


def decode_event(payload: str) -> tuple[str, TaskEvent] | None:
    """(origin, event) from a payload; None when it is not one of ours."""
    try:
        body = json.loads(payload)
        origin, user_id, task_id, kind = body["o"], body["u"], body["t"], body["y"]
        data = body.get("d") or {}
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(v, str) for v in (origin, user_id, task_id, kind)):
        return None
    if not isinstance(data, dict):
        return None
    return origin, TaskEvent(user_id=user_id, task_id=task_id, type=kind, data=data)


class PgEventRelay:
    """Wire it around a bus::

        relay = PgEventRelay(settings.resolved_database_url, bus)
        await relay.start()   # returns at once; connects (and reconnects) in the background
        ...
        await relay.stop()    # sends what is queued (briefly), then disconnects

    Counters for metrics and tests: `sent`, `received` (delivered from other processes),
    `dropped` (outbox overflow), `connections` (successful connects; more than one means it
    reconnected), `connected`.
    """

    def __init__(
        self,
        database_url: str,
        bus: TaskEventBus,
        *,
        channel: str = CHANNEL,
        outbox_size: int = OUTBOX_SIZE,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        health_check_seconds: float = HEALTH_CHECK_SECONDS,
    ) -> None:
        self.dsn, self._connect_kwargs = asyncpg_connect_args(database_url)
        self.bus = bus
        self.channel = channel
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.health_check_seconds = health_check_seconds
        # Host and pid for a human reading pg_stat_activity or a payload; the random part keeps
        # two relays of one process (tests run two apps) apart.
        self.origin = f"{socket.gethostname()[:32]}:{os.getpid()}:{os.urandom(4).hex()}"
        self._own_prefix = json.dumps({"o": self.origin}, separators=(",", ":"))[:-1] + ","
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.connections = 0
        self._outbox: deque[str] = deque(maxlen=max(1, outbox_size))
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._connected = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def server_pid(self) -> int | None:
        """The backend pid of the LISTEN connection (tests terminate it)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else conn.get_server_pid()

    @property
    def pending(self) -> int:
        return len(self._outbox)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stop = asyncio.Event()
        self.bus.set_forwarder(self._enqueue)
        self._task = asyncio.create_task(self._run(), name="task-events-relay")

    async def stop(self) -> None:
        self.bus.set_forwarder(None)
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        self._wake.set()
        # Let the sender drain the outbox (the worker's last events) if it is connected.
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), timeout=STOP_FLUSH_SECONDS)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_connected(self, within: float) -> bool:
        """True once connected, False if that did not happen `within` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=within)
        return self.connected

    # -- out ---------------------------------------------------------------------------------

    def _enqueue(self, event: TaskEvent) -> None:
        try:
            payload = encode_event(event, self.origin)
        except (TypeError, ValueError):
            logger.warning(
                "task event %s of %s not relayed: unencodable", event.type, event.task_id
            )
            return
        if len(self._outbox) == self._outbox.maxlen:
            self.dropped += 1  # the deque drops the oldest itself
        self._outbox.append(payload)
        self._wake.set()

    async def _pump(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Send queued events until the connection is lost (raises) or a stop was asked and
        the outbox is empty (returns)."""
        while True:
            if lost.is_set() or conn.is_closed():
                raise ConnectionError("the LISTEN connection was closed")
            if not self._outbox:
                if self._stop.is_set():
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.health_check_seconds)
                except TimeoutError:
                    # An idle connection can die silently (a half-open TCP connection): ask.
                    await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)
                continue
            count = min(SEND_BATCH, len(self._outbox))
            batch = [self._outbox.popleft() for _ in range(count)]
            try:
                await conn.execute(NOTIFY_SQL, self.channel, batch, timeout=CONNECT_TIMEOUT)
            except BaseException:
                # Back to the front, in order, for the next connection (older ones first out
                # if the outbox overflows meanwhile).
                self._outbox.extendleft(reversed(batch))
                raise
            self.sent += count

    # -- in ----------------------------------------------------------------------------------

    def _on_notification(
        self, _conn: asyncpg.Connection, _pid: int, _channel: str, payload: str
    ) -> None:
        if payload.startswith(self._own_prefix) or not self.bus.subscriber_count():
            return
        decoded = decode_event(payload)
        if decoded is None:
            logger.debug("ignored a malformed task event notification")
            return
        origin, event = decoded
        if origin == self.origin or not self.bus.has_subscribers(event.user_id, event.task_id):
            return
        self.received += 1
        self.bus.deliver(event)

    # -- the connection ----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.min_backoff
        failures = 0
        while not self._stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.dsn, timeout=CONNECT_TIMEOUT, **self._connect_kwargs
                )
                lost = asyncio.Event()

                def on_lost(_conn: Any, lost: asyncio.Event = lost) -> None:
                    lost.set()
                    self._wake.set()

                conn.add_termination_listener(on_lost)
                await conn.add_listener(self.channel, self._on_notification)
                self._conn = conn
                self.connections += 1
                self._connected.set()
                if failures:
                    logger.info("task events relay reconnected after %d failure(s)", failures)
                delay, failures = self.min_backoff, 0
                await self._pump(conn, lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                # One warning per outage, not one per retry.
                log = logger.warning if failures == 1 else logger.debug
                log("task events relay: connection failed or lost (%s); retrying", _reason(exc))
            finally:
                self._connected.clear()
                self._conn = None
                if conn is not None:
                    await _close_quietly(conn)
            if self._stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay * random.uniform(0.8, 1.2))
            delay = min(self.max_backoff, delay * 2)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _close_quietly(conn: asyncpg.Connection) -> None:
    if conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.close(), timeout=2.0)
    except (Exception, asyncio.CancelledError):
        conn.terminate()
