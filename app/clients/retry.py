"""Retry policies for upstream calls (tenacity).

Two rules, because a create that is sent twice can produce (and bill) two generations:

- **Polls** (and other idempotent reads/cancels) retry every transient failure: connection
  errors, timeouts, 429 (waiting what `Retry-After` asks, capped), 5xx and unreadable bodies.
- **Creates** retry only when the request provably never reached the upstream
  (`UpstreamError.reached_upstream` is False: connect error, connect timeout, pool timeout).
  Everything else goes back to the caller, which decides.

Waits are jittered exponential backoff. Tests pass tiny waits through `RetryPolicy`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from app.clients.errors import UpstreamError, UpstreamRateLimited

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. `max_attempts` counts the first try."""

    max_attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    jitter: float = 0.5
    # An upstream asking for a longer pause than this gets this much: the task engine's own
    # poll cadence takes over after the attempts run out.
    max_retry_after: float = 30.0


DEFAULT_POLL_RETRY = RetryPolicy()
DEFAULT_SUBMIT_RETRY = RetryPolicy(max_attempts=3)
NO_RETRY = RetryPolicy(max_attempts=1)


def is_poll_retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamError) and exc.retryable


def is_submit_retryable(exc: BaseException) -> bool:
    """Only when the create provably never left: a duplicate generation costs the user money."""
    return isinstance(exc, UpstreamError) and exc.retryable and not exc.reached_upstream


class wait_upstream(wait_base):
    """Jittered exponential backoff, or the upstream's `Retry-After` (capped) when it gave one."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._backoff = wait_exponential_jitter(
            multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, UpstreamRateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.max_retry_after)
        return float(self._backoff(retry_state))


async def call_with_retry(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retry_if: Callable[[BaseException], bool],
    description: str,
) -> T:
    """Run `operation` under `policy`; the last typed error propagates unchanged."""

    def _before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        # str(UpstreamError) is sanitised; never format the request or its headers here.
        logger.info(
            "%s failed (attempt %d/%d: %s); retrying in %.2fs",
            description,
            state.attempt_number,
            policy.max_attempts,
            exc if isinstance(exc, UpstreamError) else type(exc).__name__,
            wait,
        )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(max(1, policy.max_attempts)),
        wait=wait_upstream(policy),
        retry=retry_if_exception(retry_if),
        before_sleep=_before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await operation()
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover
