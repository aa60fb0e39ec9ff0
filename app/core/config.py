"""Service settings, read from the environment and `.env` (pydantic-settings).

Every setting is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GIB = 1024**3

# Values that appear in example files and tutorials; never acceptable as real secrets.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "your-secret-key",
        "your_secret_key",
        "your-jwt-secret",
        "your-storage-master-key",
        "replace-me",
        "xxx",
    }
)

DEFAULT_API_BASE_URL = "https://api.gpt-best.com"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    env: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./data")
    database_url: str | None = None
    # PostgreSQL connection pool, per process: every API process and worker may open up to
    # pool_size + max_overflow connections (see the README's sizing rule). SQLite ignores them.
    database_pool_size: int = Field(default=20, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_pool_recycle_seconds: int = Field(default=1800, ge=1)

    # Upstream (aggregator) defaults. When neither is set the built-in simulator is used.
    api_base_url: str | None = None
    api_key: str | None = None

    jwt_secret_key: str | None = None
    storage_master_key: str | None = None
    jwt_expire_minutes: int = Field(default=60 * 24 * 30, ge=1)
    jwt_algorithm: Literal["HS256"] = "HS256"
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)

    cookie_secure: bool = False
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    admin_username: str | None = None
    default_storage_quota_bytes: int = Field(default=GIB, ge=0)

    backup_enabled: bool = False
    backup_interval_hours: float = Field(default=24.0, gt=0)
    backup_retention_days: int = Field(default=7, ge=1)
    backup_dir: Path | None = None

    request_log_max_body_bytes: int = Field(default=4096, ge=0)
    request_log_retention_days: int = Field(default=30, ge=1)
    request_log_flush_interval: float = Field(default=0.5, gt=0)
    request_log_batch_size: int = Field(default=200, ge=1)

    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=20, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)

    media_max_bytes: int = Field(default=2 * GIB, ge=1)
    media_download_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    upload_max_bytes: int = Field(default=20 * 1024**2, ge=1)
    # Any request body (JSON with data-URI images, multipart uploads): refused with 413 before
    # it fills memory or disk. Room for a few full-size reference images.
    request_max_bytes: int = Field(default=128 * 1024**2, ge=1024)

    simulator_task_seconds: float = Field(default=6.0, ge=0)
    polling_interval: float = Field(default=5.0, gt=0)
    task_deadline_minutes: float = Field(default=120.0, gt=0)
    task_lease_seconds: float = Field(default=30.0, ge=1)
    run_worker: bool = True
    webhook_max_attempts: int = Field(default=8, ge=1)
    max_concurrent_tasks: int = Field(default=50, ge=1)
    channel_failure_threshold: int = Field(default=3, ge=1)
    channel_cooldown_seconds: float = Field(default=30.0, gt=0)
    channel_cooldown_max_seconds: float = Field(default=600.0, gt=0)
    channel_probe_interval_seconds: float = Field(default=10.0, gt=0)
    request_timeout: float = Field(default=120.0, gt=0)

    @field_validator(
        "cors_origins", "media_download_allowed_hosts", "webhook_allowed_hosts", mode="before"
    )
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        # Credentials (cookies) are allowed cross-origin, so `*` would hand any site the session.
        if "*" in value:
            raise ValueError("CORS_ORIGINS must list explicit origins; '*' is not allowed")
        return value

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'genapi.db').resolve()}"

    @property
    def uses_simulator(self) -> bool:
        """True when no upstream is configured: the built-in simulator answers instead."""
        return not self.api_key and not self.api_base_url

    @property
    def upstream_base_url(self) -> str:
        return self.api_base_url or DEFAULT_API_BASE_URL

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def resolved_backup_dir(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"


@lru_cache
def get_settings() -> Settings:
    return Settings()
