"""Retry policy: which failures retry, how long to wait, how many attempts."""

from __future__ import annotations

import pytest
from tenacity import RetryCallState

from app.clients.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from app.clients.retry import (
    RetryPolicy,
    call_with_retry,
    is_poll_retryable,
    is_submit_retryable,
    wait_upstream,
)


def _state(exc: BaseException, attempt: int = 1) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


def test_retry_after_is_honoured_and_capped() -> None:
    wait = wait_upstream(RetryPolicy(initial_wait=0.5, max_wait=8, jitter=0, max_retry_after=30))
    assert wait(_state(UpstreamRateLimited(retry_after=7))) == 7
    assert wait(_state(UpstreamRateLimited(retry_after=0))) == 0
    assert wait(_state(UpstreamRateLimited(retry_after=3600))) == 30


def test_backoff_is_exponential_jittered_and_bounded() -> None:
    policy = RetryPolicy(initial_wait=0.5, max_wait=3, jitter=0.25)
    wait = wait_upstream(policy)
    for attempt, base in ((1, 0.5), (2, 1.0), (3, 2.0)):
        values = {wait(_state(UpstreamUnavailable(), attempt)) for _ in range(20)}
        assert all(base <= v <= base + 0.25 for v in values)
        assert len(values) > 1  # jittered
    assert wait(_state(UpstreamRateLimited(retry_after=None), 10)) <= 3


@pytest.mark.parametrize(
    ("error", "poll", "submit"),
    [
        (UpstreamUnavailable(reached_upstream=False), True, True),
        (UpstreamUnavailable(reached_upstream=True), True, False),
        (UpstreamRateLimited(retry_after=1), True, False),
        (UpstreamMalformed(), True, False),
        (UpstreamRejected(), False, False),
        (UpstreamAuthError(), False, False),
        (UpstreamAuthError(reached_upstream=False), False, False),
        (UpstreamUnavailable(reached_upstream=False, retryable=False), False, False),
    ],
)
def test_predicates(error: UpstreamError, poll: bool, submit: bool) -> None:
    assert is_poll_retryable(error) is poll
    assert is_submit_retryable(error) is submit
    assert is_poll_retryable(ValueError()) is False


async def test_call_with_retry_stops_after_max_attempts() -> None:
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        raise UpstreamUnavailable("down")

    policy = RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.002, jitter=0.001)
    with pytest.raises(UpstreamUnavailable):
        await call_with_retry(failing, policy=policy, retry_if=is_poll_retryable, description="t")
    assert calls == 4


async def test_call_with_retry_returns_after_recovery_and_skips_permanent() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise UpstreamRateLimited(retry_after=0)
        return "ok"

    policy = RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.002, jitter=0.001)
    assert (
        await call_with_retry(flaky, policy=policy, retry_if=is_poll_retryable, description="t")
        == "ok"
    )
    assert calls == 2

    async def rejected() -> str:
        nonlocal calls
        calls += 1
        raise UpstreamRejected("no")

    calls = 0
    with pytest.raises(UpstreamRejected):
        await call_with_retry(rejected, policy=policy, retry_if=is_poll_retryable, description="t")
    assert calls == 1
