"""`python -m bench.scale.child <genapi arguments>`: the `genapi` CLI with a capped SQLAlchemy
connection pool.

Why: each process's pool may grow to 30 connections (10 + 20 overflow, fixed in
`app/db/session.py`), so 2 API + 2 worker processes under load ask PostgreSQL for up to 120,
more than its default `max_connections` of 100, and requests fail with "too many clients".
A fleet needs a per-process budget. Until the service has settings for it, this wrapper applies
DATABASE_POOL_SIZE / DATABASE_MAX_OVERFLOW from the environment; once `Settings` has a
`database_pool_size` field it does nothing and the service sizes its pool itself.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _cap_pool() -> None:
    from app.core.config import Settings

    if "database_pool_size" in Settings.model_fields:
        return
    size = os.environ.get("DATABASE_POOL_SIZE")
    overflow = os.environ.get("DATABASE_MAX_OVERFLOW")
    if size is None and overflow is None:
        return
    from app.db import session

    original = session.create_async_engine

    def capped(url: Any, **kwargs: Any) -> Any:
        if "pool_size" in kwargs:  # PostgreSQL (SQLite engines take no pool arguments)
            if size is not None:
                kwargs["pool_size"] = int(size)
            if overflow is not None:
                kwargs["max_overflow"] = int(overflow)
        return original(url, **kwargs)

    session.create_async_engine = capped


def main() -> None:
    _cap_pool()
    from app.cli import main as genapi

    sys.argv = ["genapi", *sys.argv[1:]]
    genapi()


if __name__ == "__main__":
    main()
