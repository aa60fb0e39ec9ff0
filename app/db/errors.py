"""Telling "the database cannot take this request now" apart from other database errors.

A request that cannot get a connection (the server refuses it, is starting or shutting down, has
no slot left, or our pool has none free within its timeout) is worth retrying in a moment, so the
API answers 503 with `Retry-After` for it instead of a 500 (see `app.core.errors`). Anything else
(a constraint violation, a bad query, a lost transaction) stays an internal error.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

# SQLSTATEs of a connection that could not be made or was cut: class 08 (connection exception),
# 53300 too_many_connections (the server's max_connections or a role/database limit), 57P01
# admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or in recovery).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08",)
_UNAVAILABLE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})
# Drivers whose frames mark a low-level error (refused, reset, timed out, unknown host) as one
# of talking to the database rather than, say, to the upstream API.
_DRIVER_MODULES = ("asyncpg", "sqlalchemy", "aiosqlite", "psycopg")
# Messages of driver errors that carry no SQLSTATE (e.g. asyncpg's "connection is closed").
_UNAVAILABLE_MESSAGES = (
    "connection refused",
    "connect call failed",
    "could not connect",
    "connection is closed",
    "connection was closed",
    "server closed the connection",
    "too many clients",
    "too many connections",
)
_MAX_CHAIN = 8


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the DBAPI error SQLAlchemy wrapped, and their causes (asyncpg's own exception is
    the cause of SQLAlchemy's adapted one)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending.extend(
            [
                orig if isinstance(orig, BaseException) else None,
                current.__cause__,
                current.__context__,
            ]
        )


def _raised_by_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith(_DRIVER_MODULES):
            return True
        tb = tb.tb_next
    return False


def _sqlstate(exc: BaseException) -> str | None:
    for attribute in ("sqlstate", "pgcode"):
        value = getattr(exc, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


def is_database_unavailable(exc: BaseException) -> bool:
    """True when `exc` means no database connection could be had for this request."""
    for error in _chain(exc):
        if isinstance(error, sa_exc.TimeoutError):
            return True  # QueuePool: every connection busy for pool_timeout seconds
        sqlstate = _sqlstate(error)
        if sqlstate is not None and (
            sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASSES)
        ):
            return True
        if isinstance(error, sa_exc.DBAPIError):
            if error.connection_invalidated:
                return True
            if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
                message = str(error.orig if error.orig is not None else error).lower()
                if any(text in message for text in _UNAVAILABLE_MESSAGES):
                    return True
        # asyncpg lets socket errors of a connect through unwrapped: a refused connection is a
        # bare ConnectionRefusedError. Only when a driver raised it is it about the database.
        low_level = isinstance(error, ConnectionError | TimeoutError | socket.gaierror)
        if low_level and _raised_by_driver(error):
            return True
    return False
