"""Routing rules without I/O: order, failover decisions, cooldown lengths, the type table."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest

from app.clients.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from app.core.channels.policy import (
    ChannelPolicy,
    counts_against_channel,
    is_overloaded,
    may_fail_over,
    order_candidates,
)
from app.core.channels.types import CHANNEL_TYPES
from app.core.channels.view import DEFAULT_CHANNEL_ID, ChannelView, key_hint


def channel(cid: str, *, priority: int = 0, weight: int = 1, **fields: object) -> ChannelView:
    return ChannelView(
        id=cid,
        name=cid,
        type=str(fields.pop("type", "aggregator")),
        base_url="http://x",
        api_key_hint="",
        api_key_encrypted="token",
        priority=priority,
        weight=weight,
        **fields,  # type: ignore[arg-type]
    )


def test_lower_priority_first_and_the_default_channel_last() -> None:
    default = channel(DEFAULT_CHANNEL_ID, priority=-100)
    ordered = order_candidates(
        [default, channel("c", priority=10), channel("a", priority=-5), channel("b", priority=0)],
        random.Random(1),
    )
    assert [c.id for c in ordered] == ["a", "b", "c", DEFAULT_CHANNEL_ID]


def test_equal_priorities_share_the_load_by_weight() -> None:
    rng = random.Random(42)
    heavy, light = channel("heavy", weight=3), channel("light", weight=1)
    firsts = Counter(order_candidates([light, heavy], rng)[0].id for _ in range(4000))
    share = firsts["heavy"] / 4000
    assert 0.72 < share < 0.78  # 3 / (3 + 1)


@pytest.mark.parametrize(
    ("error", "fails_over", "counts"),
    [
        (UpstreamUnavailable("refused", reached_upstream=False), True, True),
        (
            UpstreamUnavailable("bad url", reached_upstream=False, retryable=False),
            True,
            True,
        ),
        (UpstreamRateLimited("slow down"), True, True),
        (UpstreamUnavailable("The server is overloaded", status_code=503), True, True),
        (
            UpstreamUnavailable("error", status_code=529, body_snippet="Overloaded"),
            True,
            True,
        ),
        (UpstreamUnavailable("upstream unavailable", status_code=503), False, True),
        (UpstreamUnavailable("internal error", status_code=500), False, True),
        (UpstreamUnavailable("read timeout"), False, True),
        (UpstreamMalformed("garbled", status_code=200), False, True),
        (UpstreamRejected("bad prompt", status_code=400), False, False),
        (UpstreamAuthError("bad key", status_code=401), False, False),
    ],
)
def test_failover_only_when_the_create_cannot_have_been_taken(
    error: UpstreamError, fails_over: bool, counts: bool
) -> None:
    assert may_fail_over(error) is fails_over
    assert counts_against_channel(error) is counts


def test_overloaded_is_a_429_or_a_503_saying_so() -> None:
    assert is_overloaded(UpstreamRateLimited())
    assert is_overloaded(UpstreamUnavailable("at capacity", status_code=503))
    assert not is_overloaded(UpstreamUnavailable("overloaded", status_code=500))


def test_cooldown_lengths() -> None:
    policy = ChannelPolicy(failure_threshold=3, cooldown_seconds=30, cooldown_max_seconds=100)
    assert policy.cooldown_after(2) is None
    assert policy.cooldown_after(3) == timedelta(seconds=30)
    assert policy.cooldown_after(6) == timedelta(seconds=60)
    assert policy.cooldown_after(9) == timedelta(seconds=100)
    assert policy.cooldown_after(10_000) == timedelta(seconds=100)


def test_policy_reads_optional_settings() -> None:
    class Settings:
        channel_failure_threshold = 7
        channel_cooldown_seconds = 5

    policy = ChannelPolicy.from_settings(Settings())
    assert policy.failure_threshold == 7
    assert policy.cooldown_seconds == 5
    assert policy.cooldown_max_seconds == ChannelPolicy().cooldown_max_seconds


@pytest.mark.parametrize(
    ("type_name", "catalog_adapter", "kind", "adapter"),
    [
        ("aggregator", "sora", "video", "sora"),
        ("aggregator", "veo", "video", "veo"),
        ("aggregator", "seedance", "video", "seedance"),
        ("aggregator", "images", "image", "images"),
        ("openai", "sora", "video", "openai_sora"),
        ("openai", "images", "image", "images"),
        ("ark", "seedance", "video", "ark"),
        ("gemini", "veo", "video", "gemini_veo"),
        ("kling", "kling", "video", "kling"),
        ("gemini", "images", "image", None),
        ("ark", "images", "image", None),
    ],
)
def test_each_type_talks_through_its_adapter(
    type_name: str, catalog_adapter: str, kind: str, adapter: str | None
) -> None:
    assert CHANNEL_TYPES[type_name].adapter_for(catalog_adapter, kind) == adapter


def test_an_empty_models_list_serves_the_type_families() -> None:
    openai = channel("o", type="openai")
    assert openai.serves("sora-2-openai", "openai_sora", "video")
    assert openai.serves("gpt-image-1", "images", "image")
    assert not openai.serves("veo3", "veo", "video")
    aggregator = channel("g")
    assert aggregator.serves("veo3", "veo", "video")
    listed = channel("l", models=("veo3",))
    assert listed.serves("veo3", "veo", "video")
    assert not listed.serves("sora-2", "sora", "video")
    # A listed model of a kind the type cannot make is never served.
    gemini = channel("m", type="gemini", models=("gpt-image-1",))
    assert not gemini.serves("gpt-image-1", "images", "image")


def test_kling_keys_are_an_access_and_secret_pair() -> None:
    check = CHANNEL_TYPES["kling"].check_key
    assert check("access:secret") is None
    assert check("just-a-key") is not None
    assert check(":secret") is not None
    assert CHANNEL_TYPES["openai"].check_key("sk-anything") is None


def test_key_hint_never_shows_enough_to_use() -> None:
    assert key_hint("sk-proj-abcdefghijklmnop1234") == "sk-…1234"
    assert key_hint("short") == "…"
