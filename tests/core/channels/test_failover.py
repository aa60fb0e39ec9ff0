"""Failover between channels, against two live simulators over real HTTP.

- a create whose first channel refuses the connection is served by the next one, and the task
  completes there; the refusing channel's failure is recorded;
- a create turned away as overloaded moves on too; one that may have arrived never does;
- polls stay with the channel that owns the task, even when a better channel appears;
- a model mapping sends the channel's own model name; each channel gets its own key.
"""

from __future__ import annotations

import socket

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.core.errors import ValidationFailed
from app.core.openai_compat import remix_validator
from app.core.tasks import service
from app.db.base import utcnow
from app.models.schemas.tasks import TaskCreate
from tests.core.channels.helpers import (
    KEY_A,
    KEY_B,
    add_channel,
    channel_row,
    drive,
    polls_of,
    requests_to,
    update_channel,
    url_of,
)
from tests.core.tasks.harness import Engine, LiveASGI, LiveSimulator, reserve_port


async def test_first_channel_down_second_serves_and_the_task_completes(
    engine: Engine, sim_b: LiveSimulator, refused: socket.socket, user_id: str
) -> None:
    down = await add_channel(
        engine, name="down", base_url=url_of(refused), api_key=KEY_A, priority=0
    )
    up = await add_channel(engine, name="up", base_url=sim_b.base_url, api_key=KEY_B, priority=1)
    task_id = (await engine.create(user_id, "a lighthouse at dusk"))[0].id

    await drive(engine, engine.worker(), [task_id])

    task = await engine.task(task_id)
    assert task.status == "completed", task.error_code
    assert task.channel_id == up.id
    assert task.submit_state == "submitted"
    assert len(await engine.media(task_id)) == 1
    counts = sim_b.simulator.store.stats.for_prompt("a lighthouse at dusk")
    assert counts.creates == 1
    row = await channel_row(engine, down.id)
    assert row.consecutive_failures == 1
    assert row.last_error is not None
    assert "connect" in row.last_error
    assert KEY_A not in row.last_error
    assert (await channel_row(engine, up.id)).last_success_at is not None


async def test_polls_stay_with_the_owner_when_a_better_channel_appears(
    engine: Engine, sim_a: LiveSimulator, sim_b: LiveSimulator, user_id: str
) -> None:
    a = await add_channel(engine, name="a", base_url=sim_a.base_url, api_key=KEY_A, priority=5)
    prompt = "a slow river [sim:polls=4]"
    task_id = (await engine.create(user_id, prompt))[0].id
    submitter = engine.worker("submitter", polling_interval=30)
    await submitter.run_until_idle()
    submitted = await engine.task(task_id)
    assert submitted.channel_id == a.id
    assert submitted.upstream_id

    # B arrives with a better priority (and would accept A's key nowhere: keys differ).
    b = await add_channel(engine, name="b", base_url=sim_b.base_url, api_key=KEY_B, priority=0)
    new_id = (await engine.create(user_id, "a new task after B arrived"))[0].id
    await engine.update_task(task_id, next_poll_at=utcnow())
    await drive(engine, engine.worker(), [task_id, new_id])

    task = await engine.task(task_id)
    assert task.status == "completed", task.error_code
    assert task.channel_id == a.id
    assert polls_of(sim_a.simulator, submitted.upstream_id) >= 4
    assert polls_of(sim_b.simulator, submitted.upstream_id) == 0
    # Everything B saw belongs to the new task: nothing of A's task ever went there.
    assert sim_b.simulator.store.stats.for_prompt(prompt).create_requests == 0
    newer = await engine.task(new_id)
    assert newer.status == "completed"
    assert newer.channel_id == b.id
    assert newer.upstream_id
    assert polls_of(sim_a.simulator, newer.upstream_id) == 0


async def test_a_deleted_or_disabled_owner_still_serves_its_running_task(
    engine: Engine, sim_a: LiveSimulator, sim_b: LiveSimulator, user_id: str
) -> None:
    a = await add_channel(engine, name="a", base_url=sim_a.base_url, api_key=KEY_A, priority=0)
    await add_channel(engine, name="b", base_url=sim_b.base_url, api_key=KEY_B, priority=1)
    task_id = (await engine.create(user_id, "kept alive [sim:polls=3]"))[0].id
    await engine.worker("submitter", polling_interval=30).run_until_idle()
    assert (await engine.task(task_id)).channel_id == a.id

    await update_channel(engine, a.id, enabled=False)
    from app.core.channels import service as channels

    async with engine.database.session() as db:
        removed = await channels.delete_channel(db, a.id)
    engine.runtime.router.invalidate()
    assert removed is False  # kept: a task still needs it

    await engine.update_task(task_id, next_poll_at=utcnow())
    await drive(engine, engine.worker(), [task_id])
    task = await engine.task(task_id)
    assert task.status == "completed", task.error_code
    upstream_id = task.upstream_id or ""
    assert polls_of(sim_a.simulator, upstream_id) >= 3
    assert polls_of(sim_b.simulator, upstream_id) == 0
    assert (await channel_row(engine, a.id)).deleted_at is not None


def overloaded_app(calls: list[str]) -> Starlette:
    async def refuse(request: Request) -> JSONResponse:
        calls.append(request.url.path)
        return JSONResponse(
            {"error": {"message": "The engine is currently overloaded, please try again later"}},
            status_code=503,
        )

    return Starlette(routes=[Route("/{path:path}", refuse, methods=["GET", "POST"])])


async def test_an_overloaded_channel_hands_the_create_to_the_next(
    engine: Engine, sim_b: LiveSimulator, user_id: str
) -> None:
    calls: list[str] = []
    busy = LiveASGI(overloaded_app(calls))
    busy.start()
    try:
        first = await add_channel(
            engine, name="busy", base_url=busy.base_url, api_key=KEY_A, priority=0
        )
        await add_channel(engine, name="b", base_url=sim_b.base_url, api_key=KEY_B, priority=1)
        task_id = (await engine.create(user_id, "an overloaded morning"))[0].id
        await drive(engine, engine.worker(), [task_id])
    finally:
        busy.stop()
    task = await engine.task(task_id)
    assert task.status == "completed", task.error_code
    assert task.channel_id != first.id
    assert calls == ["/v2/videos/generations"]
    assert sim_b.simulator.store.stats.for_prompt("an overloaded morning").creates == 1
    assert (await channel_row(engine, first.id)).consecutive_failures == 1


async def test_a_rate_limited_channel_hands_the_create_to_the_next(
    engine: Engine, sim_a: LiveSimulator, sim_b: LiveSimulator, user_id: str
) -> None:
    sim_a.simulator.configure(create_error_rate=1.0, error_kinds=["429"])
    await add_channel(engine, name="a", base_url=sim_a.base_url, api_key=KEY_A, priority=0)
    b = await add_channel(engine, name="b", base_url=sim_b.base_url, api_key=KEY_B, priority=1)
    task_id = (await engine.create(user_id, "rate limited"))[0].id
    await drive(engine, engine.worker(), [task_id])
    task = await engine.task(task_id)
    assert task.status == "completed", task.error_code
    assert task.channel_id == b.id
    assert sim_a.simulator.store.stats.for_prompt("rate limited").create_requests == 1
    assert sim_a.simulator.store.stats.for_prompt("rate limited").creates == 0


@pytest.mark.parametrize("directive", ["[sim:500]", "[sim:accepted-500]"])
async def test_a_create_that_may_have_arrived_never_moves_to_another_channel(
    engine: Engine, sim_a: LiveSimulator, sim_b: LiveSimulator, user_id: str, directive: str
) -> None:
    a = await add_channel(engine, name="a", base_url=sim_a.base_url, api_key=KEY_A, priority=0)
    await add_channel(engine, name="b", base_url=sim_b.base_url, api_key=KEY_B, priority=1)
    prompt = f"maybe taken {directive}"
    task_id = (await engine.create(user_id, prompt))[0].id
    await drive(engine, engine.worker(), [task_id])
    task = await engine.task(task_id)
    assert task.status == "failed"
    assert task.error_code == "upstream_submit_failed"
    assert task.channel_id == a.id
    assert sim_a.simulator.store.stats.for_prompt(prompt).create_requests == 1
    assert requests_to(sim_b.simulator) == []


async def test_a_task_with_its_own_key_only_goes_to_the_default_channel(
    engine: Engine, sim_b: LiveSimulator, user_id: str
) -> None:
    await add_channel(engine, name="b", base_url=sim_b.base_url, api_key=KEY_B, priority=0)
    task_id = (await engine.create(user_id, "bring my key", upstream_key="sk-user-own-key-123"))[
        0
    ].id
    await engine.worker().run_until_idle()
    task = await engine.task(task_id)
    # The default channel (API_BASE_URL) refuses connections in these tests: the create waits
    # for it rather than handing the user's key to another upstream.
    assert task.status == "queued"
    assert task.submit_state == "pending"
    assert task.consecutive_errors == 1
    assert task.channel_id is None
    assert requests_to(sim_b.simulator) == []


async def test_model_map_and_provider_channels_use_their_own_adapter_and_names(
    engine: Engine, sim_a: LiveSimulator, user_id: str
) -> None:
    await add_channel(
        engine,
        name="gemini",
        type="gemini",
        base_url=sim_a.base_url,
        api_key=KEY_A,
        model_map={"veo3": "veo-3.0-generate-001"},
    )
    task_id = (await engine.create(user_id, "a gemini fox", model="veo3"))[0].id
    await drive(engine, engine.worker(), [task_id])
    task = await engine.task(task_id)
    assert task.status == "completed", task.error_code
    creates = requests_to(sim_a.simulator, "POST")
    assert [entry["path"] for entry in creates] == [
        "/v1beta/models/veo-3.0-generate-001:predictLongRunning"
    ]


@pytest.mark.parametrize("engine_overrides", [{"api_base_url": None, "api_key": None}])
async def test_a_model_no_channel_serves_is_refused_at_create_or_fails_clearly(
    engine: Engine, sim_a: LiveSimulator, user_id: str
) -> None:
    # No API_BASE_URL/API_KEY: the default channel is the simulator, which stops serving once
    # an administrator has stored a channel.
    channel = await add_channel(engine, name="a", base_url=sim_a.base_url, api_key=KEY_A)
    task_id = (await engine.create(user_id, "nobody serves", model="sora-2"))[0].id
    await update_channel(engine, channel.id, models=["veo3"])

    with pytest.raises(ValidationFailed) as refused:
        await engine.create(user_id, "refused at once", model="sora-2")
    assert refused.value.code == "model_not_served"
    assert refused.value.details == [
        {"field": "model", "message": "not served by any enabled channel"}
    ]

    await drive(engine, engine.worker(), [task_id])
    task = await engine.task(task_id)
    assert task.status == "failed"
    assert task.error_code == "no_upstream_channel"
    assert requests_to(sim_a.simulator) == []


def test_reserve_port_refuses_connections() -> None:
    # The "down channel" of these tests really is down.
    sock = reserve_port()
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(sock.getsockname(), timeout=2).close()
    finally:
        sock.close()


async def test_a_remix_goes_to_the_channel_that_holds_its_source(
    engine: Engine, sim_a: LiveSimulator, sim_b: LiveSimulator, user_id: str
) -> None:
    a = await add_channel(engine, name="a", type="openai", base_url=sim_a.base_url, api_key=KEY_A)
    source_id = (await engine.create(user_id, "the original", model="sora-2-openai"))[0].id
    await drive(engine, engine.worker(), [source_id])
    source = await engine.task(source_id)
    assert source.status == "completed", source.error_code
    assert source.channel_id == a.id

    await add_channel(
        engine, name="b", type="openai", base_url=sim_b.base_url, api_key=KEY_B, priority=-1
    )
    ctx = engine.runtime.context()
    ctx.validate = remix_validator(ctx.validate, source)
    async with engine.database.session() as db:
        created = await service.create_tasks(
            db,
            ctx,
            user_id=user_id,
            kind="video",
            body=TaskCreate(model="sora-2-openai", prompt="the remix"),
        )
    remix_id = created.tasks[0].id
    await drive(engine, engine.worker(), [remix_id])
    remix = await engine.task(remix_id)
    assert remix.status == "completed", remix.error_code
    assert remix.channel_id == a.id
    paths = [entry["path"] for entry in requests_to(sim_a.simulator, "POST")]
    assert paths == ["/v1/videos", f"/v1/videos/{source.upstream_id}/remix"]
    assert requests_to(sim_b.simulator) == []
