"""Buffered, batched writer of request-log entries (placeholder until implemented)."""

from __future__ import annotations

from typing import Any

from app.core.config import Settings
from app.core.encryption import Encryptor
from app.db.session import Database


class RequestLogWriter:
    def __init__(self, database: Database, encryptor: Encryptor, settings: Settings) -> None:
        self.database = database
        self.encryptor = encryptor
        self.settings = settings

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def submit(self, entry: Any) -> None:
        return None
