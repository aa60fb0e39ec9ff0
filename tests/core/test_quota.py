"""Atomic storage-quota reservations, on whichever backend TEST_DB selects."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from fastapi import FastAPI

from app.core import quota
from app.core.errors import NotFound, QuotaExceeded
from app.db.session import Database
from app.models import User


async def make_user(db: Database, quota_bytes: int, used_bytes: int = 0) -> str:
    name = f"q{uuid.uuid4().hex[:10]}"
    async with db.session() as session:
        user = User(
            username=name,
            email=f"{name}@example.com",
            password_hash="not-a-real-hash",
            storage_quota_bytes=quota_bytes,
            storage_used_bytes=used_bytes,
        )
        session.add(user)
        await session.flush()
        return user.id


async def used_bytes(db: Database, user_id: str) -> int:
    async with db.session() as session:
        return (await quota.usage(session, user_id)).used_bytes


@pytest.fixture
def db(app: FastAPI) -> Database:
    database: Database = app.state.db
    return database


async def test_reserve_up_to_the_exact_quota_then_refuse(db: Database) -> None:
    user_id = await make_user(db, quota_bytes=1000, used_bytes=900)
    async with db.session() as session:
        assert await quota.reserve(session, user_id, 100) is True
        assert await quota.reserve(session, user_id, 1) is False
    assert await used_bytes(db, user_id) == 1000


async def test_reserve_is_rolled_back_with_its_transaction(db: Database) -> None:
    user_id = await make_user(db, quota_bytes=1000)

    async def reserve_then_fail() -> None:
        async with db.session() as session:
            assert await quota.reserve(session, user_id, 600)
            raise RuntimeError("file write failed")

    with pytest.raises(RuntimeError):
        await reserve_then_fail()
    assert await used_bytes(db, user_id) == 0


async def test_release_never_goes_below_zero(db: Database) -> None:
    user_id = await make_user(db, quota_bytes=1000, used_bytes=300)
    async with db.session() as session:
        await quota.release(session, user_id, 100)
    assert await used_bytes(db, user_id) == 200
    async with db.session() as session:
        await quota.release(session, user_id, 5000)
    assert await used_bytes(db, user_id) == 0


async def test_usage_reports_available_and_percent(db: Database) -> None:
    user_id = await make_user(db, quota_bytes=400, used_bytes=100)
    async with db.session() as session:
        current = await quota.usage(session, user_id)
    assert (current.quota_bytes, current.used_bytes) == (400, 100)
    assert current.available_bytes == 300
    assert current.used_percent == 25.0
    assert current.by_kind == {}


async def test_usage_over_a_lowered_quota_and_zero_quota(db: Database) -> None:
    over = await make_user(db, quota_bytes=100, used_bytes=150)
    empty = await make_user(db, quota_bytes=0)
    async with db.session() as session:
        over_usage = await quota.usage(session, over)
        empty_usage = await quota.usage(session, empty)
        assert await quota.reserve(session, empty, 1) is False
    assert over_usage.available_bytes == 0
    assert over_usage.used_percent == 150.0
    assert (empty_usage.available_bytes, empty_usage.used_percent) == (0, 0.0)


async def test_reserve_or_raise_gives_quota_exceeded_with_numbers(db: Database) -> None:
    user_id = await make_user(db, quota_bytes=1000, used_bytes=990)
    async with db.session() as session:
        with pytest.raises(QuotaExceeded) as caught:
            await quota.reserve_or_raise(session, user_id, 11)
        await quota.reserve_or_raise(session, user_id, 10)
    assert caught.value.status_code == 413
    assert caught.value.details == {
        "requested_bytes": 11,
        "quota_bytes": 1000,
        "used_bytes": 990,
        "available_bytes": 10,
    }
    assert await used_bytes(db, user_id) == 1000


async def test_unknown_user_and_negative_amounts(db: Database) -> None:
    async with db.session() as session:
        assert await quota.reserve(session, str(uuid.uuid4()), 1) is False
        with pytest.raises(NotFound):
            await quota.usage(session, str(uuid.uuid4()))
        with pytest.raises(ValueError, match="negative"):
            await quota.reserve(session, str(uuid.uuid4()), -5)
        with pytest.raises(ValueError, match="negative"):
            await quota.release(session, str(uuid.uuid4()), -5)


async def _reserve_in_own_transaction(db: Database, user_id: str, nbytes: int) -> bool:
    async with db.session() as session:
        # Read first, like a caller that shows the remaining space: a read-then-write quota
        # check would overshoot here; the conditional UPDATE must not.
        await quota.usage(session, user_id)
        return await quota.reserve(session, user_id, nbytes)


async def test_fifty_concurrent_equal_reservations_never_overshoot(db: Database) -> None:
    quota_bytes, size, fitting = 10_000, 70, 10
    user_id = await make_user(db, quota_bytes, used_bytes=quota_bytes - size * fitting)
    results = await asyncio.gather(
        *(_reserve_in_own_transaction(db, user_id, size) for _ in range(50))
    )
    assert results.count(True) == fitting
    assert await used_bytes(db, user_id) == quota_bytes


async def test_fifty_concurrent_mixed_reservations_never_overshoot(db: Database) -> None:
    quota_bytes, initial = 100_000, 99_000
    user_id = await make_user(db, quota_bytes, used_bytes=initial)
    sizes = [random.Random(seed).randint(1, 120) for seed in range(50)]
    results = await asyncio.gather(*(_reserve_in_own_transaction(db, user_id, n) for n in sizes))
    final = await used_bytes(db, user_id)
    granted = sum(n for n, ok in zip(sizes, results, strict=True) if ok)
    assert final == initial + granted
    assert final <= quota_bytes
    # Usage only grows, so a refused request must not fit even in what is left at the end.
    for n, ok in zip(sizes, results, strict=True):
        if not ok:
            assert n > quota_bytes - final
    assert any(results)
    assert not all(results)  # sum(sizes) is far above the 1000 bytes left
