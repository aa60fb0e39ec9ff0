"""Upstream channel administration over HTTP (`/api/v1/admin/channels`): CRUD, validation,
write-only encrypted keys, the read-only default channel, health in the list, 403 for
non-admins, a model no channel serves refused at create, and failover end to end."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.v1 import channels as channels_api
from app.core.channels.policy import ChannelPolicy
from app.core.config import Settings
from app.core.encryption import Encryptor
from app.core.key_rotation import ENCRYPTED_COLUMNS, rotate_all
from app.main import create_app
from app.models import Channel
from app.simulator import SimulatorConfig
from tests.api.v1.conftest import (
    FAST_TASKS,
    create,
    raw_database_text,
    task_row,
    wait_for_task,
)
from tests.conftest import AuthedUser, empty_all_tables
from tests.core.tasks.harness import LiveSimulator, reserve_port, wait_until

CHANNELS = "/api/v1/admin/channels"
SIM_KEY = "sk-sim-api-channels-0123456789"
PLAIN_KEY = "sk-live-PLAINTEXT-never-stored-7f3a9c"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(FAST_TASKS)


@pytest.fixture
async def app(settings: Settings, cleanup_engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """The service, with the channels router mounted if app/api/v1/router.py does not yet."""
    application = create_app(settings)
    if not any(getattr(r, "path", None) == CHANNELS for r in application.routes):
        application.include_router(channels_api.router, prefix=CHANNELS, tags=["admin"])
    try:
        async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
            application.state.tasks.router.policy = ChannelPolicy(
                failure_threshold=1, cooldown_seconds=120, probe_interval_seconds=60
            )
            yield application
    finally:
        await empty_all_tables(cleanup_engine)


@pytest.fixture
def upstream() -> Iterator[LiveSimulator]:
    server = LiveSimulator(SimulatorConfig(api_key=SIM_KEY, task_seconds=0.3))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def refused() -> Iterator[socket.socket]:
    sock = reserve_port()
    yield sock
    sock.close()


def body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "primary",
        "type": "aggregator",
        "base_url": "https://upstream.example.com/",
        "api_key": PLAIN_KEY,
        **fields,
    }


async def test_non_admins_get_403_and_anonymous_401(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser
) -> None:
    created = await client.post(CHANNELS, json=body(), headers=admin_user.headers)
    assert created.status_code == 201, created.text
    target = f"{CHANNELS}/{created.json()['id']}"
    for method, url, payload in (
        ("GET", CHANNELS, None),
        ("POST", CHANNELS, body(name="sneaky")),
        ("GET", target, None),
        ("PATCH", target, {"base_url": "https://attacker.example"}),
        ("DELETE", target, None),
    ):
        response = await client.request(method, url, json=payload, headers=user.headers)
        assert response.status_code == 403, (method, url, response.text)
        assert response.json()["error"]["code"] == "admin_required"
        anonymous = await client.request(method, url, json=payload)
        assert anonymous.status_code == 401
    after = await client.get(target, headers=admin_user.headers)
    assert after.json()["base_url"] == "https://upstream.example.com"
    listed = await client.get(CHANNELS, headers=admin_user.headers)
    assert [c["name"] for c in listed.json()["items"] if not c["is_default"]] == ["primary"]


async def test_admin_crud_round_trip(
    app: FastAPI, client: httpx.AsyncClient, admin_user: AuthedUser
) -> None:
    headers = admin_user.headers
    created = await client.post(
        CHANNELS,
        json=body(
            type="openai",
            base_url="https://api.openai.example/",
            models=["sora-2-openai", "gpt-image-1"],
            model_map={"sora-2-openai": "sora-2"},
            priority=5,
            weight=3,
        ),
        headers=headers,
    )
    assert created.status_code == 201, created.text
    channel = created.json()
    assert PLAIN_KEY not in created.text
    assert "api_key" not in channel
    assert channel["api_key_hint"] == "sk-…" + PLAIN_KEY[-4:]
    assert channel["base_url"] == "https://api.openai.example"
    assert channel["models"] == ["sora-2-openai", "gpt-image-1"]
    assert channel["model_map"] == {"sora-2-openai": "sora-2"}
    assert (channel["priority"], channel["weight"], channel["enabled"]) == (5, 3, True)
    assert channel["state"] == "healthy"
    assert channel["is_default"] is False
    url = f"{CHANNELS}/{channel['id']}"

    listed = (await client.get(CHANNELS, headers=headers)).json()["items"]
    assert [c["id"] for c in listed] == [channel["id"], "default"]
    assert PLAIN_KEY not in str(listed)
    fetched = await client.get(url, headers=headers)
    assert fetched.json() == channel

    patched = await client.patch(
        url,
        json={"name": "openai-eu", "priority": 1, "enabled": False, "models": ["sora-2-openai"]},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "openai-eu"
    assert patched.json()["priority"] == 1
    assert patched.json()["state"] == "disabled"
    assert patched.json()["model_map"] == {"sora-2-openai": "sora-2"}

    new_key = "sk-replaced-key-abcdefgh-4321"
    replaced = await client.patch(url, json={"api_key": new_key}, headers=headers)
    assert replaced.status_code == 200
    assert replaced.json()["api_key_hint"] == "sk-…4321"
    assert new_key not in replaced.text
    async with app.state.db.session() as db:
        row = await db.get(Channel, channel["id"])
    assert row is not None
    assert app.state.encryptor.decrypt_text(row.api_key_encrypted) == new_key

    # The type is fixed: running tasks depend on it.
    retyped = await client.patch(url, json={"type": "aggregator"}, headers=headers)
    assert retyped.status_code == 422
    nulled = await client.patch(url, json={"name": None}, headers=headers)
    assert nulled.status_code == 422

    deleted = await client.delete(url, headers=headers)
    assert deleted.status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404
    assert (await client.patch(url, json={"name": "x"}, headers=headers)).status_code == 404
    assert (await client.delete(url, headers=headers)).status_code == 404
    async with app.state.db.session() as db:
        # No task pointed at it: the row (and its encrypted key) is gone for good.
        assert await db.get(Channel, channel["id"]) is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"base_url": "ftp://upstream.example.com"}, "base_url"),
        ({"base_url": "https://user:secret@upstream.example.com"}, "base_url"),
        ({"base_url": "https://upstream.example.com/?key=1"}, "base_url"),
        ({"base_url": "https:///nohost"}, "base_url"),
        ({"base_url": "http://[::1"}, "base_url"),
        ({"base_url": "https://upstream.example.com:99999"}, "base_url"),
        ({"type": "bogus"}, "type"),
        ({"api_key": "has a space"}, "api_key"),
        ({"type": "kling", "api_key": "only-one-part"}, "api_key"),
        ({"models": ["no-such-model"]}, "models[0]"),
        ({"type": "gemini", "models": ["gpt-image-1"]}, "models[0]"),
        ({"model_map": {"no-such-model": "x"}}, "model_map.no-such-model"),
        ({"models": ["veo3"], "model_map": {"sora-2": "x"}}, "model_map.sora-2"),
        ({"model_map": {"veo3": "has space"}}, "model_map.veo3"),
        ({"weight": 0}, "weight"),
        ({"name": "tab\there"}, "name"),
        ({"name": "nul\x00byte"}, "name"),
        ({"surprise": True}, "surprise"),
    ],
)
async def test_invalid_channels_are_422_naming_the_field(
    client: httpx.AsyncClient, admin_user: AuthedUser, fields: dict[str, Any], field: str
) -> None:
    response = await client.post(CHANNELS, json=body(**fields), headers=admin_user.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]]
    assert PLAIN_KEY not in response.text
    listed = await client.get(CHANNELS, headers=admin_user.headers)
    assert [c["id"] for c in listed.json()["items"]] == ["default"]


async def test_channel_keys_are_encrypted_at_rest_and_rotated_with_the_master_key(
    app: FastAPI, client: httpx.AsyncClient, admin_user: AuthedUser, settings: Settings
) -> None:
    created = await client.post(CHANNELS, json=body(), headers=admin_user.headers)
    assert created.status_code == 201
    channel_id = created.json()["id"]

    # Wait for the request log (which saw the request body) to be written too.
    async def logged() -> bool:
        return "api_request_logs" in await raw_database_text(app)

    await wait_until(logged, within=10)
    raw = await raw_database_text(app)
    assert PLAIN_KEY not in raw
    assert PLAIN_KEY[8:24] not in raw

    assert (Channel, ["api_key_encrypted"]) in ENCRYPTED_COLUMNS
    old_key = settings.storage_master_key or ""
    new_key = Fernet.generate_key().decode()
    rotated = Encryptor(f"{new_key},{old_key}")
    summary = await rotate_all(app.state.db, rotated, registry=[(Channel, ["api_key_encrypted"])])
    assert summary.rotated == 1
    assert summary.ok
    async with app.state.db.session() as db:
        token = await db.scalar(select(Channel.api_key_encrypted).where(Channel.id == channel_id))
    assert token is not None
    assert Encryptor(new_key).decrypt_text(token) == PLAIN_KEY


async def test_the_default_channel_is_listed_and_read_only(
    client: httpx.AsyncClient, admin_user: AuthedUser
) -> None:
    headers = admin_user.headers
    default = await client.get(f"{CHANNELS}/default", headers=headers)
    assert default.status_code == 200
    assert default.json()["is_default"] is True
    assert default.json()["type"] == "aggregator"
    assert default.json()["priority"] is None
    # No API_BASE_URL/API_KEY here: it is the simulator, serving while no channel is stored.
    assert default.json()["state"] == "healthy"
    for method in ("PATCH", "DELETE"):
        response = await client.request(
            method,
            f"{CHANNELS}/default",
            json={"name": "x"} if method == "PATCH" else None,
            headers=headers,
        )
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "default_channel_read_only"
    await client.post(CHANNELS, json=body(), headers=headers)
    after = await client.get(f"{CHANNELS}/default", headers=headers)
    assert after.json()["state"] == "disabled"
    for odd in ("nope", "%00", "x" * 300):
        assert (await client.get(f"{CHANNELS}/{odd}", headers=headers)).status_code == 404
        patched = await client.patch(f"{CHANNELS}/{odd}", json={"name": "x"}, headers=headers)
        assert patched.status_code == 404


async def test_a_model_no_channel_serves_is_refused_at_create(
    client: httpx.AsyncClient, admin_user: AuthedUser, user: AuthedUser, upstream: LiveSimulator
) -> None:
    created = await client.post(
        CHANNELS,
        json=body(type="openai", base_url=upstream.base_url, api_key=SIM_KEY),
        headers=admin_user.headers,
    )
    assert created.status_code == 201
    refused = await client.post(
        "/api/v1/videos", json={"model": "sora-2", "prompt": "nobody"}, headers=user.headers
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "model_not_served"
    assert refused.json()["error"]["details"][0]["field"] == "model"
    served = await create(
        client, user.headers, {"model": "sora-2-openai", "prompt": "an openai cat"}
    )
    done = await wait_for_task(client, user.headers, served["id"])
    assert done["status"] == "completed", done
    creates = [r["path"] for r in upstream.simulator.store.requests if r["method"] == "POST"]
    assert creates == ["/v1/videos"]


async def test_failover_end_to_end_with_health_in_the_list(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin_user: AuthedUser,
    user: AuthedUser,
    upstream: LiveSimulator,
    refused: socket.socket,
) -> None:
    down_url = f"http://127.0.0.1:{refused.getsockname()[1]}"
    down = await client.post(
        CHANNELS, json=body(name="down", base_url=down_url, priority=0), headers=admin_user.headers
    )
    up = await client.post(
        CHANNELS,
        json=body(name="up", base_url=upstream.base_url, api_key=SIM_KEY, priority=1),
        headers=admin_user.headers,
    )
    assert down.status_code == up.status_code == 201
    task = await create(client, user.headers, {"model": "sora-2", "prompt": "failover fox"})
    done = await wait_for_task(client, user.headers, task["id"])
    assert done["status"] == "completed", done
    assert (await task_row(app, task["id"])).channel_id == up.json()["id"]

    listed = {
        c["name"]: c
        for c in (await client.get(CHANNELS, headers=admin_user.headers)).json()["items"]
    }
    assert listed["down"]["state"] == "cooling_down"  # threshold 1 in this module
    assert listed["down"]["consecutive_failures"] == 1
    assert listed["down"]["cooldown_until"] is not None
    assert "connect" in listed["down"]["last_error"]
    assert listed["up"]["state"] == "healthy"
    assert listed["up"]["last_success_at"] is not None

    # Deleting the channel that owns a finished task keeps its row, hidden.
    deleted = await client.delete(f"{CHANNELS}/{up.json()['id']}", headers=admin_user.headers)
    assert deleted.status_code == 204
    names = [
        c["name"] for c in (await client.get(CHANNELS, headers=admin_user.headers)).json()["items"]
    ]
    assert "up" not in names
    async with app.state.db.session() as db:
        row = await db.get(Channel, up.json()["id"])
    assert row is not None
    assert row.deleted_at is not None
    assert row.enabled is False
