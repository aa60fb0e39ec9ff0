"""Channel health: repeated failures cool a channel down, creates skip it meanwhile, and the
worker's background probe brings it back as soon as it answers again."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from app.core.channels import health as channel_health
from app.core.channels.policy import ChannelPolicy
from app.db.base import utcnow
from app.simulator import SimulatorConfig
from tests.core.channels.helpers import (
    KEY_A,
    KEY_B,
    add_channel,
    channel_row,
    drive,
    requests_to,
    update_channel,
    url_of,
)
from tests.core.tasks.harness import Engine, LiveSimulator, wait_until


async def test_a_failing_channel_cools_down_and_a_probe_brings_it_back(
    engine: Engine, sim_b: LiveSimulator, refused: socket.socket, user_id: str
) -> None:
    a = await add_channel(engine, name="a", base_url=url_of(refused), api_key=KEY_A, priority=0)
    b = await add_channel(engine, name="b", base_url=sim_b.base_url, api_key=KEY_B, priority=1)
    worker = engine.worker()

    # Two creates, each refused by A first (threshold 2), both served by B.
    first = [t.id for t in await engine.create(user_id, "first wave", n=2)]
    await drive(engine, worker, first)
    row = await channel_row(engine, a.id)
    assert row.consecutive_failures == 2
    assert row.cooldown_until is not None
    assert row.cooldown_until > utcnow() + timedelta(seconds=50)
    assert all(t.channel_id == b.id for t in await engine.tasks(first))

    # While A cools down it is not even tried: its failure count stays where it was.
    during = (await engine.create(user_id, "during the cooldown"))[0].id
    await drive(engine, worker, [during])
    assert (await engine.task(during)).channel_id == b.id
    assert (await channel_row(engine, a.id)).consecutive_failures == 2

    # A comes back: a simulator now listens on its port. The running worker's probe sees it
    # answer and ends the cooldown long before its 60 s are up.
    revived = LiveSimulator(SimulatorConfig(api_key=KEY_A, task_seconds=0.3), sock=refused)
    revived.start()
    try:
        await worker.start()

        async def recovered() -> bool:
            current = await channel_row(engine, a.id)
            return current.cooldown_until is None

        await wait_until(recovered, within=10)
        row = await channel_row(engine, a.id)
        assert row.consecutive_failures == 0
        assert row.last_probe_at is not None
        probes = [r for r in requests_to(revived.simulator) if r["path"] == "/"]
        assert probes == []  # the probe is unauthenticated: not an API call in the log

        after = (await engine.create(user_id, "after recovery"))[0].id
        worker.wake()

        async def served() -> bool:
            return await engine.terminal([after])

        await wait_until(served, within=15)
        task = await engine.task(after)
        assert task.status == "completed", task.error_code
        assert task.channel_id == a.id
        assert revived.simulator.store.stats.for_prompt("after recovery").creates == 1
    finally:
        await worker.stop(grace_seconds=0)
        revived.stop()


@pytest.mark.parametrize("engine_overrides", [{"api_base_url": None, "api_key": None}])
async def test_when_every_channel_cools_down_the_create_waits_instead_of_failing(
    engine: Engine, refused: socket.socket, user_id: str
) -> None:
    a = await add_channel(engine, name="a", base_url=url_of(refused), api_key=KEY_A)
    until = utcnow() + timedelta(minutes=5)
    async with engine.database.session() as db:
        from sqlalchemy import update

        from app.models import Channel

        await db.execute(
            update(Channel)
            .where(Channel.id == a.id)
            .values(consecutive_failures=9, cooldown_until=until)
        )
    engine.runtime.router.invalidate()
    task_id = (await engine.create(user_id, "patient"))[0].id
    await engine.worker().run_until_idle()
    task = await engine.task(task_id)
    assert task.status == "queued"
    assert task.submit_state == "pending"
    assert task.consecutive_errors == 0  # waiting for a channel is not an error of the task
    assert task.next_poll_at is not None
    assert task.next_poll_at > utcnow()
    assert (await channel_row(engine, a.id)).consecutive_failures == 9


async def test_re_enabling_or_a_new_key_ends_a_cooldown(engine: Engine) -> None:
    a = await add_channel(engine, name="a", base_url="http://127.0.0.1:9", api_key=KEY_A)
    policy = ChannelPolicy(failure_threshold=1, cooldown_seconds=30)
    await channel_health.record_failure(engine.database, a.id, "boom", policy)
    assert (await channel_row(engine, a.id)).cooldown_until is not None
    await update_channel(engine, a.id, api_key="sk-a-brand-new-key-000")
    row = await channel_row(engine, a.id)
    assert row.cooldown_until is None
    assert row.consecutive_failures == 0


async def test_cooldowns_grow_exponentially_up_to_the_cap(engine: Engine) -> None:
    a = await add_channel(engine, name="a", base_url="http://127.0.0.1:9", api_key=KEY_A)
    policy = ChannelPolicy(failure_threshold=2, cooldown_seconds=10, cooldown_max_seconds=35)
    lengths = []
    for _ in range(8):
        before = utcnow()
        health = await channel_health.record_failure(engine.database, a.id, "boom", policy)
        assert health is not None
        if health.cooldown_until is not None and health.cooldown_until > before:
            lengths.append(round((health.cooldown_until - before).total_seconds()))
            # Let the cooldown lapse so the next failure can start a new one.
            async with engine.database.session() as db:
                from sqlalchemy import update

                from app.models import Channel

                await db.execute(
                    update(Channel).where(Channel.id == a.id).values(cooldown_until=None)
                )
    # Failures 2, 3 -> 10 s; 4, 5 -> 20 s; 6, 7, 8 -> 35 s (the cap).
    assert lengths == [10, 10, 20, 20, 35, 35, 35]


async def test_a_success_ends_the_failure_streak(engine: Engine) -> None:
    a = await add_channel(engine, name="a", base_url="http://127.0.0.1:9", api_key=KEY_A)
    policy = ChannelPolicy(failure_threshold=5)
    await channel_health.record_failure(engine.database, a.id, "boom", policy)
    health = await channel_health.record_success(engine.database, a.id)
    assert health is not None
    assert health.consecutive_failures == 0
    assert health.last_success_at is not None
    assert health.last_error == "boom"  # kept for the admin to read
