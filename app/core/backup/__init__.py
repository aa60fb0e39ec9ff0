"""Encrypted backups of the database and its media, with verify, restore and a scheduler.

See `service` for the file layout, `crypto` for the encryption, `scheduler` for the in-service
schedule with leader election.
"""

from app.core.backup.crypto import BackupKey, BackupKeyring
from app.core.backup.errors import (
    BackupCorrupt,
    BackupError,
    BackupKeyError,
    BackupToolMissing,
    RestoreRefused,
)
from app.core.backup.progress import NullProgress, Progress
from app.core.backup.scheduler import BackupScheduler
from app.core.backup.service import (
    BackupInfo,
    BackupLayout,
    BackupResult,
    RestoreResult,
    RetentionResult,
    VerifyReport,
    apply_retention,
    create_backup,
    keyring_for,
    list_backups,
    newest_backup_time,
    prune_backups,
    restore_backup,
    verify_backup,
)

__all__ = [
    "BackupCorrupt",
    "BackupError",
    "BackupInfo",
    "BackupKey",
    "BackupKeyError",
    "BackupKeyring",
    "BackupLayout",
    "BackupResult",
    "BackupScheduler",
    "BackupToolMissing",
    "NullProgress",
    "Progress",
    "RestoreRefused",
    "RestoreResult",
    "RetentionResult",
    "VerifyReport",
    "apply_retention",
    "create_backup",
    "keyring_for",
    "list_backups",
    "newest_backup_time",
    "prune_backups",
    "restore_backup",
    "verify_backup",
]
