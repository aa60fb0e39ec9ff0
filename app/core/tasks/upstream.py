"""Which channel, adapter and credentials serve a task.

Channels (`app/core/channels`) are the upstreams an administrator configured, plus the default
channel: `API_BASE_URL`/`API_KEY`, or the built-in simulator when neither is set. A create is
planned over every healthy channel serving the model (see `app/core/channels/policy.py` for
the order and the failover rule); the channel that is sent the create owns the task
(`generation_tasks.channel_id`, None for the default channel), and its polls, cancels and
downloads always go there.

A per-request key (`X-API-Key`, "bring your own key") is the caller's key for `API_BASE_URL`:
such a task only ever goes to the default channel, with that key instead of the configured one.

Each process keeps a copy of the channel table, read again when older than
`ChannelPolicy.cache_seconds` (and at once after an admin change in this process); health
changes are written to the database and to the copy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from app.clients.base import UpstreamAdapter, UpstreamCredentials
from app.clients.errors import UpstreamError
from app.clients.http import simulator_base_url
from app.clients.registry import ADAPTERS, UnknownAdapterError, get_adapter
from app.clients.retry import NO_RETRY
from app.core.channels import health as channel_health
from app.core.channels.policy import (
    ChannelPolicy,
    counts_against_channel,
    describe,
    order_candidates,
)
from app.core.channels.view import ChannelView, Health, default_view, view_of
from app.core.config import Settings
from app.core.encryption import DecryptionError, Encryptor
from app.core.tasks.payload import TaskPayload
from app.db.base import utcnow
from app.db.session import Database
from app.models import Channel, GenerationTask

logger = logging.getLogger(__name__)

SIMULATOR_KEY = "sk-simulator"
# The parameter a remix carries its source task in (app/core/openai_compat.py): a remix must go
# to the upstream that holds the source video.
REMIX_SOURCE_PARAM = "remixed_from_video_id"
# A success is written to the channel row at most this often while it is healthy.
SUCCESS_WRITE_EVERY = timedelta(seconds=30)


class ChannelNotFound(LookupError):
    """A task's owning channel is gone (or not known to this process yet)."""


@dataclass(frozen=True)
class Route:
    """One way to send a task: the channel, its adapter, and the credentials to use."""

    channel: ChannelView
    adapter: UpstreamAdapter
    credentials: UpstreamCredentials
    upstream_model: str | None = None  # the channel's own name for the model, when mapped

    @property
    def channel_id(self) -> str | None:
        return self.channel.stored_id


@dataclass
class SubmitPlan:
    """Where to send a create, best first. No route: `retry_at` when every channel serving the
    model cools down until then, else `problem` says why none can serve it."""

    routes: list[Route]
    retry_at: datetime | None = None
    problem: str | None = None


class UpstreamRouter:
    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        encryptor: Encryptor,
        database: Database | None = None,
        *,
        policy: ChannelPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self.encryptor = encryptor
        self.database = database
        self.policy = policy or ChannelPolicy.from_settings(settings)
        self.rng = rng or random.Random()
        self._adapters: dict[str, UpstreamAdapter] = {}
        self._patient: dict[str, UpstreamAdapter] = {}
        self._channels: dict[str, ChannelView] = {}
        self._loaded_at: float | None = None
        self._refresh_lock = asyncio.Lock()
        self._default_health = Health()

    def attach_database(self, database: Database) -> None:
        """Give a router built without one the database that holds the channels."""
        if self.database is None:
            self.database = database
            self._loaded_at = None

    # -- the default channel -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The default channel's base URL."""
        if self.settings.uses_simulator:
            return simulator_base_url()
        return self.settings.upstream_base_url

    def _default_key(self) -> str:
        return self.settings.api_key or (SIMULATOR_KEY if self.settings.uses_simulator else "")

    def default_available(self) -> bool:
        """A configured upstream always serves; the simulator only while no channel is stored
        (so simulated results never mix with real ones)."""
        if not self.settings.uses_simulator:
            return True
        return not any(not c.deleted for c in self._channels.values())

    def default_channel(self, available: bool | None = None) -> ChannelView:
        """The default channel with this process's view of its health. `available` overrides
        what this process's copy of the channel table says about it."""
        return default_view(
            base_url=self.base_url,
            api_key=self.settings.api_key or "",
            simulator=self.settings.uses_simulator,
            available=self.default_available() if available is None else available,
            health=self._default_health,
        )

    @property
    def trusted_hosts(self) -> set[str]:
        """Hosts media may be fetched from even when they resolve to private addresses: every
        upstream an administrator configured."""
        urls = [self.base_url] + [c.base_url for c in self._channels.values()]
        return {host for url in urls if (host := urlsplit(url).hostname)}

    # -- adapters ------------------------------------------------------------------------------

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

    # -- the channel table ---------------------------------------------------------------------

    def invalidate(self) -> None:
        """Read the channel table again before the next decision (after an admin change)."""
        self._loaded_at = None

    async def refresh(self) -> None:
        if self.database is None:
            return
        async with self._refresh_lock:
            async with self.database.session() as db:
                rows = (await db.scalars(select(Channel))).all()
                self._channels = {row.id: view_of(row) for row in rows}
            self._loaded_at = time.monotonic()

    async def _fresh(self) -> None:
        if self.database is None:
            return
        loaded = self._loaded_at
        if loaded is None or time.monotonic() - loaded > self.policy.cache_seconds:
            await self.refresh()

    def channels(self) -> list[ChannelView]:
        """This process's copy of the stored channels (deleted ones included)."""
        return list(self._channels.values())

    async def _channel(self, channel_id: str) -> ChannelView:
        channel = self._channels.get(channel_id)
        if channel is None:
            await self.refresh()
            channel = self._channels.get(channel_id)
        if channel is None:
            raise ChannelNotFound(f"the upstream channel {channel_id} no longer exists")
        return channel

    # -- routes --------------------------------------------------------------------------------

    def _credentials(self, channel: ChannelView, task: GenerationTask) -> UpstreamCredentials:
        if channel.is_default or channel.api_key_encrypted is None:
            key = None
            if task.upstream_key_encrypted:
                key = self.encryptor.decrypt_text(task.upstream_key_encrypted)
            return UpstreamCredentials(base_url=self.base_url, api_key=key or self._default_key())
        return UpstreamCredentials(
            base_url=channel.base_url,
            api_key=self.encryptor.decrypt_text(channel.api_key_encrypted),
        )

    def _adapter_name(self, channel: ChannelView, task: GenerationTask) -> str:
        name = channel.adapter_name(task.adapter, task.kind)
        if name is None:
            raise UnknownAdapterError(f"{channel.type}:{task.kind}")
        return name

    def _route(self, channel: ChannelView, task: GenerationTask, *, patient: bool = False) -> Route:
        name = self._adapter_name(channel, task)
        adapter = self.patient_adapter(name) if patient else self.adapter(name)
        return Route(
            channel=channel,
            adapter=adapter,
            credentials=self._credentials(channel, task),
            upstream_model=channel.upstream_model(task.model),
        )

    def _cached_owner(self, task: GenerationTask) -> ChannelView:
        if task.channel_id is None:
            return self.default_channel()
        channel = self._channels.get(task.channel_id)
        if channel is None:
            raise ChannelNotFound(f"the upstream channel {task.channel_id} is not known yet")
        return channel

    async def owner(self, task: GenerationTask, *, patient: bool = False) -> Route:
        """The route of the channel that owns `task` (polls, cancels, downloads)."""
        if task.channel_id is None:
            channel = self.default_channel()
        else:
            channel = await self._channel(task.channel_id)
        return self._route(channel, task, patient=patient)

    def credentials(self, task: GenerationTask) -> UpstreamCredentials:
        """The owning channel's credentials from this process's copy of the channel table
        (raises `ChannelNotFound` when it has not seen the channel; `credentials_for` reads
        the table)."""
        return self._credentials(self._cached_owner(task), task)

    async def credentials_for(self, task: GenerationTask) -> UpstreamCredentials:
        return (await self.owner(task)).credentials

    def task_adapter(self, task: GenerationTask, *, patient: bool = False) -> UpstreamAdapter:
        """The owning channel's adapter for `task`, from this process's copy."""
        return self._route(self._cached_owner(task), task, patient=patient).adapter

    async def download_headers(
        self, task: GenerationTask, credentials: UpstreamCredentials
    ) -> dict[str, str]:
        """What the media downloader sends with a result that needs the upstream's credentials
        (and only to that result's origin): the owning adapter's own scheme."""
        try:
            adapter = (await self.owner(task)).adapter
            headers = getattr(adapter, "download_headers", None)
            if callable(headers):
                return dict(headers(credentials))
        except (UpstreamError, UnknownAdapterError, ChannelNotFound, DecryptionError):
            return {}
        return {"Authorization": f"Bearer {credentials.api_key}"}

    async def _pinned(self, payload: TaskPayload) -> ChannelView | None:
        """A remix goes where its source video is."""
        source_id = payload.params.get(REMIX_SOURCE_PARAM)
        if not source_id or self.database is None:
            return None
        async with self.database.session() as db:
            found = (
                await db.execute(
                    select(GenerationTask.channel_id).where(GenerationTask.id == str(source_id))
                )
            ).one_or_none()
        if found is None or found[0] is None:
            return self.default_channel()
        return await self._channel(str(found[0]))

    async def plan(self, task: GenerationTask, payload: TaskPayload) -> SubmitPlan:
        """The channels to try for a create, best first."""
        await self._fresh()
        pinned = await self._pinned(payload)
        default = self.default_channel()
        candidates: list[ChannelView]
        if pinned is not None:
            candidates = [pinned]
        elif task.upstream_key_encrypted:
            candidates = [default] if default.enabled else []
        else:
            candidates = [
                c
                for c in self._channels.values()
                if c.enabled and not c.deleted and c.serves(task.model, task.adapter, task.kind)
            ]
            if default.enabled and default.serves(task.model, task.adapter, task.kind):
                candidates.append(default)
        if not candidates:
            problem = f"No enabled upstream channel serves model {task.model!r}"
            if task.adapter not in ADAPTERS:
                problem = f"unknown upstream adapter {task.adapter!r}"
            return SubmitPlan([], problem=problem)
        now = utcnow()
        healthy = [c for c in candidates if not c.health.cooling_down(now) or c is pinned]
        if not healthy:
            ends = [c.health.cooldown_until for c in candidates if c.health.cooldown_until]
            return SubmitPlan([], retry_at=min(ends) if ends else now)
        routes: list[Route] = []
        for channel in order_candidates(healthy, self.rng):
            try:
                routes.append(self._route(channel, task))
            except (UnknownAdapterError, DecryptionError) as exc:
                # A misconfigured channel must not stop the others from serving.
                logger.error("channel %s skipped: %s", channel.id, type(exc).__name__)
        if not routes:
            return SubmitPlan([], problem=f"No usable upstream channel for model {task.model!r}")
        return SubmitPlan(routes)

    # -- health --------------------------------------------------------------------------------

    def _set_health(self, channel_id: str, health: Health) -> None:
        current = self._channels.get(channel_id)
        if current is not None:
            self._channels[channel_id] = dataclasses.replace(current, health=health)

    async def record_failure(self, route: Route, exc: UpstreamError) -> None:
        """Count a failed create against its channel (only failures of the channel itself)."""
        if not counts_against_channel(exc):
            return
        error = describe(exc)
        channel_id = route.channel_id
        if channel_id is None:
            self._default_health = self._failed(self._default_health, error)
            return
        if self.database is None:
            return
        health = await channel_health.record_failure(self.database, channel_id, error, self.policy)
        if health is not None:
            self._set_health(channel_id, health)

    def _failed(self, health: Health, error: str) -> Health:
        now = utcnow()
        failures = health.consecutive_failures + 1
        cooldown_until = health.cooldown_until
        cooldown = self.policy.cooldown_after(failures)
        if cooldown is not None and not health.cooling_down(now):
            cooldown_until = now + cooldown
            logger.warning(
                "default channel cools down for %.0f s after %d consecutive failures",
                cooldown.total_seconds(),
                failures,
            )
        return dataclasses.replace(
            health,
            consecutive_failures=failures,
            cooldown_until=cooldown_until,
            last_error=error,
            last_error_at=now,
        )

    async def record_success(self, route: Route) -> None:
        """A create the channel accepted ends its failure streak (and any cooldown)."""
        health = (
            self._default_health
            if route.channel_id is None
            else self._channels.get(route.channel_id, route.channel).health
        )
        now = utcnow()
        stale = health.last_success_at is None or now - health.last_success_at > (
            SUCCESS_WRITE_EVERY
        )
        if not (health.consecutive_failures or health.cooldown_until or stale):
            return
        if route.channel_id is None:
            self._default_health = dataclasses.replace(
                health, consecutive_failures=0, cooldown_until=None, last_success_at=now
            )
            return
        if self.database is None:
            return
        updated = await channel_health.record_success(self.database, route.channel_id)
        if updated is not None:
            self._set_health(route.channel_id, updated)

    async def probe_due(self) -> int:
        """Probe every cooling channel whose probe is due; returns how many were probed."""
        jobs = []
        now = utcnow()
        default = self._default_health
        interval = timedelta(seconds=self.policy.probe_interval_seconds)
        if default.cooling_down(now) and (
            default.last_probe_at is None or now - default.last_probe_at >= interval
        ):
            self._default_health = dataclasses.replace(default, last_probe_at=now)
            jobs.append(self._probe_default())
        await self._fresh()
        cooling = any(
            c.enabled and not c.deleted and c.health.cooling_down(now)
            for c in self._channels.values()
        )
        if self.database is not None and cooling:
            claimed = await channel_health.claim_probes(self.database, self.policy)
            jobs.extend(self._probe_stored(cid, url) for cid, url in claimed)
        if jobs:
            await asyncio.gather(*jobs)
            self.invalidate()
        return len(jobs)

    async def _probe_default(self) -> None:
        failure = await channel_health.probe(self.http, self.base_url, self.policy)
        health = self._default_health
        if failure is None:
            self._default_health = dataclasses.replace(
                health, consecutive_failures=0, cooldown_until=None
            )
        else:
            self._default_health = dataclasses.replace(
                health, last_error=failure, last_error_at=utcnow()
            )

    async def _probe_stored(self, channel_id: str, base_url: str) -> None:
        failure = await channel_health.probe(self.http, base_url, self.policy)
        if self.database is not None:
            await channel_health.record_probe(self.database, channel_id, failure)

    async def maintenance(self) -> None:
        if self.database is not None and await channel_health.purge_deleted(self.database):
            self.invalidate()
