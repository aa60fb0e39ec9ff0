"""Which adapter and which credentials serve a task.

Today one upstream: `API_BASE_URL`/`API_KEY`, or the built-in simulator when neither is set.
A per-request key (`X-API-Key`, "bring your own key") is kept encrypted on the task and used for
its calls instead of the configured key.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from app.clients.base import UpstreamAdapter, UpstreamCredentials
from app.clients.http import simulator_base_url
from app.clients.registry import get_adapter
from app.clients.retry import NO_RETRY
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.models import GenerationTask

SIMULATOR_KEY = "sk-simulator"


class UpstreamRouter:
    def __init__(self, settings: Settings, http: httpx.AsyncClient, encryptor: Encryptor) -> None:
        self.settings = settings
        self.http = http
        self.encryptor = encryptor
        self._adapters: dict[str, UpstreamAdapter] = {}
        self._patient: dict[str, UpstreamAdapter] = {}

    @property
    def base_url(self) -> str:
        if self.settings.uses_simulator:
            return simulator_base_url()
        return self.settings.upstream_base_url

    @property
    def trusted_hosts(self) -> set[str]:
        """Hosts media may be fetched from even when they resolve to private addresses."""
        host = urlsplit(self.base_url).hostname
        return {host} if host else set()

    def adapter(self, name: str) -> UpstreamAdapter:
        """The adapter the worker submits and polls with: one attempt per call. The worker
        reschedules failures in the database instead of sleeping in one of its bounded slots,
        and honours Retry-After there."""
        if name not in self._adapters:
            self._adapters[name] = get_adapter(
                name, self.http, poll_retry=NO_RETRY, submit_retry=NO_RETRY
            )
        return self._adapters[name]

    def patient_adapter(self, name: str) -> UpstreamAdapter:
        """With the adapters' own retries: for one-off calls nobody reschedules (cancels)."""
        if name not in self._patient:
            self._patient[name] = get_adapter(name, self.http)
        return self._patient[name]

    def credentials(self, task: GenerationTask) -> UpstreamCredentials:
        key = None
        if task.upstream_key_encrypted:
            key = self.encryptor.decrypt_text(task.upstream_key_encrypted)
        if not key:
            key = self.settings.api_key or (SIMULATOR_KEY if self.settings.uses_simulator else "")
        return UpstreamCredentials(base_url=self.base_url, api_key=key)
