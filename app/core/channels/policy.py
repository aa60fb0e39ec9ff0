"""Routing and health rules: the order channels are tried in, when a create moves on to the
next channel, and how long a failing channel cools down.

- Order: lower `priority` first; among equal priorities a weighted random order (each channel
  is first with probability weight / sum of weights). The default channel comes after every
  stored channel.
- Failover: a create moves to the next channel only when it provably never reached the
  upstream (connection refused, DNS, connect timeout…) or was turned away as overloaded (429, or
  503/529 saying "overloaded"): then it cannot have been taken twice.
- Health: each such failure, and every other retryable create failure (5xx, timeouts, garbled
  answers), adds one to the channel's consecutive failures; a create it accepts resets them.
  At `failure_threshold` the channel cools down for `cooldown_seconds`, doubling for every
  further `failure_threshold` failures, up to `cooldown_max_seconds`. While it cools down it is
  skipped for new creates (polls of its own tasks go on) and probed every
  `probe_interval_seconds`; a probe that gets any HTTP answer below 500 ends the cooldown.
  Poll errors do not count: an overloaded upstream still answers polls.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.clients.errors import UpstreamError, UpstreamRateLimited
from app.core.channels.view import ChannelView

OVERLOAD_STATUSES = frozenset({503, 529})
OVERLOAD_WORDS = ("overload", "capacity")


@dataclass(frozen=True)
class ChannelPolicy:
    failure_threshold: int = 3
    cooldown_seconds: float = 30.0
    cooldown_max_seconds: float = 600.0
    probe_interval_seconds: float = 10.0
    probe_timeout_seconds: float = 5.0
    # How long a process trusts its copy of the channel table before reading it again.
    cache_seconds: float = 2.0

    @classmethod
    def from_settings(cls, settings: Any) -> ChannelPolicy:
        """Optional `CHANNEL_*` settings override the defaults."""
        default = cls()
        return cls(
            failure_threshold=int(
                getattr(settings, "channel_failure_threshold", default.failure_threshold)
            ),
            cooldown_seconds=float(
                getattr(settings, "channel_cooldown_seconds", default.cooldown_seconds)
            ),
            cooldown_max_seconds=float(
                getattr(settings, "channel_cooldown_max_seconds", default.cooldown_max_seconds)
            ),
            probe_interval_seconds=float(
                getattr(settings, "channel_probe_interval_seconds", default.probe_interval_seconds)
            ),
        )

    def cooldown_after(self, failures: int) -> timedelta | None:
        """How long to cool down after `failures` consecutive failures (None: not yet)."""
        if failures < self.failure_threshold:
            return None
        doublings = min((failures - self.failure_threshold) // self.failure_threshold, 20)
        seconds = min(self.cooldown_max_seconds, self.cooldown_seconds * 2**doublings)
        return timedelta(seconds=seconds)


def is_overloaded(exc: UpstreamError) -> bool:
    if isinstance(exc, UpstreamRateLimited):
        return True
    if exc.status_code in OVERLOAD_STATUSES:
        text = f"{exc.message} {exc.body_snippet or ''}".lower()
        return any(word in text for word in OVERLOAD_WORDS)
    return False


def may_fail_over(exc: UpstreamError) -> bool:
    """True when another channel may be sent the same create without risking a duplicate."""
    return not exc.reached_upstream or is_overloaded(exc)


def counts_against_channel(exc: UpstreamError) -> bool:
    """A failure of the channel rather than of the request (bad input and bad keys are not)."""
    return may_fail_over(exc) or exc.retryable


def describe(exc: UpstreamError) -> str:
    """The text kept as `last_error`: already scrubbed of keys by the adapters."""
    return f"{exc.code}: {exc}"[:500]


def order_candidates(
    channels: Sequence[ChannelView], rng: random.Random | None = None
) -> list[ChannelView]:
    """Stored channels by priority (weighted random order within one priority), then the
    default channel."""
    rng = rng or random.Random()
    keyed = []
    for channel in channels:
        # Efraimidis-Spirakis: sorting by u^(1/w) descending is a weighted random permutation.
        draw = rng.random() ** (1.0 / max(channel.weight, 1))
        keyed.append(((channel.is_default, channel.priority, -draw), channel))
    keyed.sort(key=lambda item: item[0])
    return [channel for _, channel in keyed]


def cooling_down(channel: ChannelView, now: datetime) -> bool:
    return channel.health.cooling_down(now)
