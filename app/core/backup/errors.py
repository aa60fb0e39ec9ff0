"""Errors of the backup subsystem. They carry a message meant for an operator's terminal."""

from __future__ import annotations


class BackupError(Exception):
    """A backup, verification or restore could not be done; the message says why."""


class BackupKeyError(BackupError):
    """The file was encrypted under a key that is not in STORAGE_MASTER_KEY."""


class BackupCorrupt(BackupError):
    """The file is not a backup, was truncated, or was modified after it was written."""


class BackupToolMissing(BackupError):
    """pg_dump / pg_restore is not installed."""


class RestoreRefused(BackupError):
    """The target database holds data and `--force` was not given."""
