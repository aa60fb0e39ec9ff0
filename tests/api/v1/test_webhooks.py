"""Signed completion webhooks, end to end: a task with `webhook_url` → the worker POSTs to a real
local receiver → the test verifies the signature with its own implementation of the documented
algorithm (Standard Webhooks), and reads the delivery log over the API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest

import app.core.webhooks as webhooks_module
from tests.api.v1.conftest import (
    DEFAULT_TIMEOUT,
    FAST_TASKS,
    POLL_EVERY,
    ReceivedHook,
    WebhookReceiver,
    create,
)
from tests.conftest import AuthedUser

ALLOW_LOCAL = {**FAST_TASKS, "webhook_allowed_hosts": ["127.0.0.1"]}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(ALLOW_LOCAL)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks_module, "BACKOFF_BASE_SECONDS", 0.05)


def verify_signature(secret: str, hook: ReceivedHook) -> bool:
    """What a receiver does, written from the documentation, not from our code."""
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_") :])
    message_id = hook.headers["webhook-id"]
    timestamp = hook.headers["webhook-timestamp"]
    signed = f"{message_id}.{timestamp}.".encode() + hook.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    candidates = hook.headers["webhook-signature"].split(" ")
    return any(
        version == "v1" and hmac.compare_digest(value, expected)
        for version, _, value in (c.partition(",") for c in candidates)
    )


async def get_secret(client: httpx.AsyncClient, user: AuthedUser) -> str:
    response = await client.get("/api/v1/webhooks/secret", headers=user.headers)
    assert response.status_code == 200, response.text
    secret: str = response.json()["secret"]
    return secret


async def deliveries(client: httpx.AsyncClient, user: AuthedUser) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/webhooks/deliveries", headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


async def wait_for_delivery_state(
    client: httpx.AsyncClient, user: AuthedUser, task_id: str, state: str
) -> dict[str, Any]:
    async with asyncio.timeout(DEFAULT_TIMEOUT):
        while True:
            for item in await deliveries(client, user):
                if item["task_id"] == task_id and item["state"] == state:
                    return item
            await asyncio.sleep(POLL_EVERY)


async def test_completion_webhook_is_signed_and_recorded(
    client: httpx.AsyncClient,
    user: AuthedUser,
    other_user: AuthedUser,
    webhook_receiver: WebhookReceiver,
) -> None:
    secret = await get_secret(client, user)
    assert secret == await get_secret(client, user)  # stable until rotated
    assert secret != await get_secret(client, other_user)

    task = await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "ring me", "webhook_url": webhook_receiver.url},
        wait=30,
    )
    assert task["status"] == "completed"
    assert task["webhook"] is True
    [hook] = await webhook_receiver.wait_for(1)

    assert verify_signature(secret, hook)
    assert abs(int(hook.headers["webhook-timestamp"]) - time.time()) < 300
    assert hook.headers["content-type"] == "application/json"
    payload = hook.json()
    assert payload["type"] == "video.completed"
    assert payload["data"]["id"] == task["id"]
    assert payload["data"]["status"] == "completed"
    assert payload["data"]["media"][0]["sha256"] == task["media"][0]["sha256"]
    assert payload["data"]["prompt"] == "ring me"

    # The verifier is not a rubber stamp: any change breaks the signature.
    tampered = ReceivedHook(hook.headers, hook.body.replace(b"completed", b"failed!!!"), 200)
    assert not verify_signature(secret, tampered)
    other_secret = await get_secret(client, other_user)
    assert not verify_signature(other_secret, hook)
    replayed_headers = {**hook.headers, "webhook-timestamp": str(int(time.time()) + 1)}
    assert not verify_signature(secret, ReceivedHook(replayed_headers, hook.body, 200))

    # The receiver has the hook before the deliverer records its answer.
    record = await wait_for_delivery_state(client, user, task["id"], "delivered")
    assert len(await deliveries(client, user)) == 1
    assert record["id"] == hook.headers["webhook-id"]
    assert record["task_id"] == task["id"]
    assert record["event_type"] == "video.completed"
    assert record["state"] == "delivered"
    assert record["attempts"] == 1
    assert record["last_status_code"] == 200
    assert await deliveries(client, other_user) == []


async def test_each_terminal_state_is_posted(
    client: httpx.AsyncClient, user: AuthedUser, webhook_receiver: WebhookReceiver
) -> None:
    secret = await get_secret(client, user)
    failed = await create(
        client,
        user.headers,
        {"model": "veo3", "prompt": "[sim:fail=nope]", "webhook_url": webhook_receiver.url},
        wait=30,
    )
    image = await create(
        client,
        user.headers,
        {"model": "nano-banana", "prompt": "pic", "webhook_url": webhook_receiver.url},
        kind="images",
        wait=30,
    )
    running = await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "[sim:never]", "webhook_url": webhook_receiver.url},
    )
    cancel = await client.post(f"/api/v1/videos/{running['id']}/cancel", headers=user.headers)
    assert cancel.status_code == 200
    hooks = await webhook_receiver.wait_for(3)
    by_task = {h.json()["data"]["id"]: h for h in hooks}
    assert by_task[failed["id"]].json()["type"] == "video.failed"
    assert by_task[failed["id"]].json()["data"]["error"]["code"] == "upstream_failed"
    assert by_task[image["id"]].json()["type"] == "image.completed"
    assert by_task[running["id"]].json()["type"] == "video.cancelled"
    assert all(verify_signature(secret, h) for h in hooks)
    assert len({h.headers["webhook-id"] for h in hooks}) == 3


async def test_a_failing_receiver_is_retried_with_the_same_id(
    client: httpx.AsyncClient, user: AuthedUser, webhook_receiver: WebhookReceiver
) -> None:
    secret = await get_secret(client, user)
    webhook_receiver.statuses.extend([500, 503])
    task = await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "try again", "webhook_url": webhook_receiver.url},
        wait=30,
    )
    hooks = await webhook_receiver.wait_for(3)
    assert [h.status for h in hooks] == [500, 503, 200]
    assert len({h.headers["webhook-id"] for h in hooks}) == 1  # one event, redelivered
    assert all(verify_signature(secret, h) for h in hooks)
    assert len({h.body for h in hooks}) == 1
    record = await wait_for_delivery_state(client, user, task["id"], "delivered")
    assert record["attempts"] == 3
    assert record["last_status_code"] == 200
    assert record["delivered_at"] is not None


@pytest.mark.parametrize("settings_overrides", [{**ALLOW_LOCAL, "webhook_max_attempts": 2}])
async def test_delivery_gives_up_after_max_attempts(
    client: httpx.AsyncClient, user: AuthedUser, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.statuses.extend([500] * 10)
    task = await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "nobody home", "webhook_url": webhook_receiver.url},
        wait=30,
    )
    record = await wait_for_delivery_state(client, user, task["id"], "failed")
    assert record["attempts"] == 2
    assert record["last_status_code"] == 500
    assert "500" in record["last_error"]
    assert len(webhook_receiver.received) == 2


async def test_unreachable_receiver_counts_as_a_failed_attempt(
    client: httpx.AsyncClient, user: AuthedUser
) -> None:
    # Nothing listens on port 9 (discard) of 127.0.0.1 in the test environment.
    task = await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "void", "webhook_url": "http://127.0.0.1:9/hook"},
        wait=30,
    )
    async with asyncio.timeout(DEFAULT_TIMEOUT):
        while True:
            [record] = await deliveries(client, user)
            if record["attempts"] >= 2:
                break
            await asyncio.sleep(POLL_EVERY)
    assert record["task_id"] == task["id"]
    assert record["state"] == "pending"
    assert record["last_status_code"] is None
    assert record["last_error"]


async def test_rotated_secret_signs_later_deliveries(
    client: httpx.AsyncClient, user: AuthedUser, webhook_receiver: WebhookReceiver
) -> None:
    old = await get_secret(client, user)
    rotated = await client.post("/api/v1/webhooks/secret/rotate", headers=user.headers)
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != old
    assert new.startswith("whsec_")
    assert await get_secret(client, user) == new
    await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "fresh", "webhook_url": webhook_receiver.url},
        wait=30,
    )
    [hook] = await webhook_receiver.wait_for(1)
    assert verify_signature(new, hook)
    assert not verify_signature(old, hook)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost/hook",
        "ftp://127.0.0.1/hook",
        "not a url",
    ],
)
async def test_webhook_url_to_a_private_or_odd_address_is_422(
    url: str, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    # 127.0.0.1 is allowed in this module, but nothing else private is.
    response = await client.post(
        "/api/v1/videos",
        json={"model": "sora-2", "prompt": "x", "webhook_url": url},
        headers=user.headers,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "webhook_url"
    listing = await client.get("/api/v1/videos", headers=user.headers)
    assert listing.json()["total"] == 0


@pytest.mark.parametrize("settings_overrides", [dict(FAST_TASKS)])
async def test_loopback_webhook_needs_an_explicit_allowance(
    client: httpx.AsyncClient, user: AuthedUser, webhook_receiver: WebhookReceiver
) -> None:
    response = await client.post(
        "/api/v1/videos",
        json={"model": "sora-2", "prompt": "x", "webhook_url": webhook_receiver.url},
        headers=user.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "webhook_url_forbidden"


async def test_webhook_payload_is_not_stored_in_plaintext(
    client: httpx.AsyncClient, user: AuthedUser, webhook_receiver: WebhookReceiver
) -> None:
    from tests.api.v1.conftest import raw_database_text

    app = client._transport.app  # type: ignore[attr-defined]
    url = webhook_receiver.url + "?token=hook-secret-123"
    await create(
        client, user.headers, {"model": "sora-2", "prompt": "hush", "webhook_url": url}, wait=30
    )
    [hook] = await webhook_receiver.wait_for(1)
    assert json.loads(hook.body)["type"] == "video.completed"
    dump = await raw_database_text(app)
    assert "hook-secret-123" not in dump
    assert "whsec_" not in dump


async def test_a_hanging_receiver_does_not_delay_other_tasks(
    client: httpx.AsyncClient, user: AuthedUser, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.hold = asyncio.Event()
    await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "slow listener", "webhook_url": webhook_receiver.url},
        wait=30,
    )
    await webhook_receiver.wait_for(1)  # the delivery is now stuck waiting for an answer
    # Polling goes on meanwhile: a new task completes well within the 15 s delivery timeout.
    task = await create(client, user.headers, {"model": "sora-2", "prompt": "unblocked"}, wait=5)
    assert task["status"] == "completed"
    webhook_receiver.hold.set()
