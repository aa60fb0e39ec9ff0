"""Task history and lifecycle over HTTP: live events (SSE over a real server), list/search/filter/
sort, update, delete with quota release, bulk delete, and isolation between users."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from tests.api.v1.conftest import (
    FAST_TASKS,
    SSEEvent,
    create,
    media_rows,
    raw_database_text,
    serve_asgi,
    sse_events,
    wait_for_task,
)
from tests.conftest import AuthedUser

SSE_TIMEOUT = 30.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(FAST_TASKS)


async def next_event_for(
    events: AsyncIterator[SSEEvent], task_id: str, wanted: str, seen: list[SSEEvent]
) -> SSEEvent:
    """Read events (recording all in `seen`) until `wanted` arrives for `task_id`."""
    async with asyncio.timeout(SSE_TIMEOUT):
        async for event in events:
            seen.append(event)
            if event.event == wanted and event.data.get("id") == task_id:
                return event
    raise AssertionError(f"stream ended before {wanted} for {task_id}")


# ----------------------------------------------------------------------------- SSE


async def test_events_stream_shows_the_callers_task_lifecycle_and_nobody_elses(
    client: httpx.AsyncClient, live_server: str, user: AuthedUser, other_user: AuthedUser
) -> None:
    async with (
        httpx.AsyncClient(base_url=live_server, timeout=SSE_TIMEOUT) as http,
        http.stream("GET", "/api/v1/tasks/events", headers=user.headers) as mine,
        http.stream("GET", "/api/v1/tasks/events", headers=other_user.headers) as theirs,
    ):
        for response in (mine, theirs):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
        my_events = sse_events(mine)
        their_events = sse_events(theirs)

        # Created over the live server too: the whole path is real HTTP.
        created = await http.post(
            "/api/v1/videos",
            json={"model": "sora-2", "prompt": "streamed [sim:task-seconds=0.8]", "title": "S"},
            headers=user.headers,
        )
        assert created.status_code == 202, created.text
        task_id = created.json()["id"]
        seen: list[SSEEvent] = []
        done = await next_event_for(my_events, task_id, "task.completed", seen)
        mine_seen = [e for e in seen if e.data.get("id") == task_id]
        types = [e.event for e in mine_seen]
        assert types[0] == "task.created", types
        assert "task.updated" in types, types
        assert types[-1] == "task.completed"
        assert done.data["status"] == "completed"
        assert done.data["progress"] == 100
        assert done.data["object"] == "video"
        assert done.data["title"] == "S"
        statuses = [e.data["status"] for e in mine_seen]
        assert "in_progress" in statuses
        progress = [e.data["progress"] for e in mine_seen]
        assert progress == sorted(progress)
        # Event ids increase, so a client can tell the order.
        ids = [int(e.id) for e in seen if e.id]
        assert ids == sorted(ids)

        # A cancel and a delete are announced too.
        never = await create(
            client, user.headers, {"model": "veo3", "prompt": "[sim:never] to cancel"}
        )
        await next_event_for(my_events, never["id"], "task.created", seen)
        cancel = await client.post(f"/api/v1/videos/{never['id']}/cancel", headers=user.headers)
        assert cancel.status_code == 200
        cancelled = await next_event_for(my_events, never["id"], "task.cancelled", seen)
        assert cancelled.data["status"] == "cancelled"
        deleted = await client.delete(f"/api/v1/videos/{never['id']}", headers=user.headers)
        assert deleted.status_code == 204
        await next_event_for(my_events, never["id"], "task.deleted", seen)

        # The other user's stream: their own task arrives, and nothing of ours ever did.
        their_task = await create(
            client, other_user.headers, {"model": "sora-2", "prompt": "theirs"}, wait=30
        )
        their_seen: list[SSEEvent] = []
        await next_event_for(their_events, their_task["id"], "task.completed", their_seen)
        assert {e.data.get("id") for e in their_seen} == {their_task["id"]}
        # … and theirs never reached us: ours has seen only our own tasks.
        assert {e.data.get("id") for e in seen} <= {task_id, never["id"]}


async def test_events_need_authentication(live_server: str) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        response = await http.get("/api/v1/tasks/events")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


# ----------------------------------------------------------------------------- history


async def _history(client: httpx.AsyncClient, user: AuthedUser) -> list[dict[str, Any]]:
    bodies = [
        {
            "model": "sora-2",
            "prompt": "golden light on fishing boats",
            "title": "Sunset over harbour",
            "tags": ["travel", "evening"],
        },
        {"model": "veo3", "prompt": "a cat playing piano [sim:fail]", "tags": ["pets"]},
        {"model": "sora-2", "prompt": "snowy peaks under starlight", "title": "Mountain"},
        {
            "model": "sora-2-pro",
            "prompt": "Crème brûlée, café au lait",
            "title": "apéritif",
            "tags": ["café", 'say "hi" 100%'],
        },
    ]
    return [await create(client, user.headers, body, wait=30) for body in bodies]


async def _ids(
    client: httpx.AsyncClient, user: AuthedUser, kind: str = "videos", **params: Any
) -> list[str]:
    response = await client.get(f"/api/v1/{kind}", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_history_pages_search_filters_and_sorts(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser, other_user: AuthedUser
) -> None:
    sunset, cat, mountain, dessert = await _history(client, user)
    assert [t["status"] for t in (sunset, cat, mountain, dessert)] == [
        "completed",
        "failed",
        "completed",
        "completed",
    ]
    # Someone else's similar task never shows up in our results.
    await create(client, other_user.headers, {"model": "sora-2", "prompt": "fishing boats too"})

    # Paging.
    page = await client.get("/api/v1/videos?page=1&size=3", headers=user.headers)
    body = page.json()
    assert (body["total"], body["page"], body["size"], body["pages"]) == (4, 1, 3, 2)
    assert len(body["items"]) == 3
    second = (await client.get("/api/v1/videos?page=2&size=3", headers=user.headers)).json()
    assert len(second["items"]) == 1
    beyond = (await client.get("/api/v1/videos?page=9&size=3", headers=user.headers)).json()
    assert beyond["items"] == []
    assert beyond["total"] == 4
    assert {i["id"] for i in body["items"] + second["items"]} == {
        t["id"] for t in (sunset, cat, mountain, dessert)
    }
    for bad in ("size=101", "size=0", "page=0"):
        assert (await client.get(f"/api/v1/videos?{bad}", headers=user.headers)).status_code == 422

    # Sorting.
    newest_first = [dessert["id"], mountain["id"], cat["id"], sunset["id"]]
    assert await _ids(client, user) == newest_first
    assert await _ids(client, user, sort="-created") == newest_first
    assert await _ids(client, user, sort="created") == newest_first[::-1]
    # By title (case-sensitive collation differs per database; compare against the DB's own
    # order of the titled ones and check untitled come last).
    by_title = await _ids(client, user, sort="title")
    assert by_title[-1] == cat["id"]
    assert set(by_title[:3]) == {sunset["id"], mountain["id"], dessert["id"]}
    assert by_title.index(mountain["id"]) < by_title.index(sunset["id"])
    bad_sort = await client.get("/api/v1/videos?sort=prompt", headers=user.headers)
    assert bad_sort.status_code == 422
    assert bad_sort.json()["error"]["details"][0]["field"] == "sort"

    # Search: title substrings, prompt words, prompt word prefixes, several words, accents.
    assert await _ids(client, user, search="harbour") == [sunset["id"]]
    assert await _ids(client, user, search="set over") == [sunset["id"]]
    assert await _ids(client, user, search="piano") == [cat["id"]]
    assert await _ids(client, user, search="PIA") == [cat["id"]]
    assert await _ids(client, user, search="star") == [mountain["id"]]
    assert await _ids(client, user, search="piano cat") == [cat["id"]]
    assert await _ids(client, user, search="fishing") == [sunset["id"]]
    assert await _ids(client, user, search="creme brulee") == [dessert["id"]]
    assert await _ids(client, user, search="apéritif") == [dessert["id"]]
    assert await _ids(client, user, search="zebra") == []
    assert await _ids(client, user, search="piano zebra") == []
    assert await _ids(client, user, search="100%_") == []
    # Prompts are searchable, yet stored only encrypted.
    dump = await raw_database_text(app)
    for prompt in ("golden light on fishing boats", "a cat playing piano", "snowy peaks"):
        assert prompt not in dump
    assert "starlight" not in dump
    assert "piano" not in dump

    # Filters.
    assert await _ids(client, user, model="veo3") == [cat["id"]]
    assert await _ids(client, user, status="failed") == [cat["id"]]
    assert set(await _ids(client, user, status="completed")) == {
        sunset["id"],
        mountain["id"],
        dessert["id"],
    }
    assert set(await _ids(client, user, status=["failed", "completed"])) == set(newest_first)
    assert set(await _ids(client, user, status="failed,completed")) == set(newest_first)
    assert await _ids(client, user, status="queued,in_progress") == []
    assert (
        await client.get("/api/v1/videos?status=succeeded", headers=user.headers)
    ).status_code == 422
    assert await _ids(client, user, created_after=cat["created_at"]) == [
        dessert["id"],
        mountain["id"],
        cat["id"],
    ]
    assert await _ids(client, user, created_before=cat["created_at"]) == [sunset["id"]]
    assert await _ids(
        client, user, created_after=cat["created_at"], created_before=dessert["created_at"]
    ) == [mountain["id"], cat["id"]]
    assert await _ids(client, user, tags="travel") == [sunset["id"]]
    assert await _ids(client, user, tags="pets") == [cat["id"]]
    assert await _ids(client, user, tags="travel,evening") == [sunset["id"]]
    assert await _ids(client, user, tags=["travel", "pets"]) == []
    assert await _ids(client, user, tags="even") == []  # tags match whole, not in part
    assert await _ids(client, user, tags="café") == [dessert["id"]]
    assert await _ids(client, user, tags=['say "hi" 100%']) == [dessert["id"]]
    assert await _ids(client, user, tags="cafe") == []
    assert await _ids(client, user, favorite="true") == []
    assert await _ids(client, user, model="sora-2", search="star") == [mountain["id"]]

    # PATCH: title, tags, favourite; then filter by them.
    patched = await client.patch(
        f"/api/v1/videos/{mountain['id']}",
        json={"title": "Alps", "tags": ["alps", " snow ", "alps"], "favorite": True},
        headers=user.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Alps"
    assert patched.json()["tags"] == ["alps", "snow"]
    assert patched.json()["favorite"] is True
    assert patched.json()["prompt"] == "snowy peaks under starlight"
    assert await _ids(client, user, favorite="true") == [mountain["id"]]
    assert mountain["id"] not in await _ids(client, user, favorite="false")
    assert await _ids(client, user, tags="snow") == [mountain["id"]]
    assert await _ids(client, user, search="alps") == [mountain["id"]]
    assert await _ids(client, user, search="mountain") == []  # the old title is gone
    only_favorite = await client.patch(
        f"/api/v1/videos/{mountain['id']}", json={"favorite": False}, headers=user.headers
    )
    assert only_favorite.json()["title"] == "Alps"  # untouched fields stay
    assert only_favorite.json()["favorite"] is False
    for bad in ({"prompt": "new"}, {"tags": ["x" * 51]}, {"title": "t" * 201}):
        response = await client.patch(
            f"/api/v1/videos/{mountain['id']}", json=bad, headers=user.headers
        )
        assert response.status_code == 422, bad

    # Kinds are separate histories; /tasks/{id} finds any kind.
    assert await _ids(client, user, kind="images") == []
    assert (
        await client.get(f"/api/v1/images/{sunset['id']}", headers=user.headers)
    ).status_code == 404
    any_kind = await client.get(f"/api/v1/tasks/{sunset['id']}", headers=user.headers)
    assert any_kind.status_code == 200
    assert any_kind.json()["object"] == "video"


# ----------------------------------------------------------------------------- delete


async def _usage(client: httpx.AsyncClient, user: AuthedUser) -> int:
    response = await client.get("/api/v1/storage/me", headers=user.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["used_bytes"] <= body["quota_bytes"]
    used: int = body["used_bytes"]
    return used


async def test_delete_removes_media_files_and_releases_quota(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser
) -> None:
    assert await _usage(client, user) == 0
    keep = await create(client, user.headers, {"model": "sora-2", "prompt": "keep"}, wait=30)
    used_by_keep = await _usage(client, user)
    assert used_by_keep > 0
    gone = await create(client, user.headers, {"model": "veo3", "prompt": "gone"}, wait=30)
    used_by_both = await _usage(client, user)
    assert used_by_both > used_by_keep

    storage = app.state.tasks.storage
    [row] = await media_rows(app, gone["id"])
    keys = [row.storage_key, row.thumbnail_key]
    assert all(keys)
    assert row.bytes + row.thumbnail_bytes == used_by_both - used_by_keep
    for key in keys:
        assert await storage.exists(key)

    response = await client.delete(f"/api/v1/videos/{gone['id']}", headers=user.headers)
    assert response.status_code == 204
    assert (
        await client.get(f"/api/v1/videos/{gone['id']}", headers=user.headers)
    ).status_code == 404
    for key in keys:
        assert not await storage.exists(key)
    assert await _usage(client, user) == used_by_keep
    assert await media_rows(app, gone["id"]) == []
    again = await client.delete(f"/api/v1/videos/{gone['id']}", headers=user.headers)
    assert again.status_code == 404
    # The other task's file is untouched.
    content = await client.get(f"/api/v1/videos/{keep['id']}/content", headers=user.headers)
    assert content.status_code == 200


async def test_delete_of_a_running_task_cancels_it(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser
) -> None:
    from app.simulator import Simulator

    sim: Simulator = app.state.simulator.state.simulator
    task = await create(client, user.headers, {"model": "sora-2", "prompt": "[sim:never] bye"})
    await wait_for_task(client, user.headers, task["id"], {"in_progress"})
    response = await client.delete(f"/api/v1/videos/{task['id']}", headers=user.headers)
    assert response.status_code == 204
    polls = sim.store.stats.for_prompt("[sim:never] bye").polls
    # A full worker round later, it is still gone and no longer polled.
    await create(client, user.headers, {"model": "sora-2", "prompt": "later"}, wait=30)
    assert (
        await client.get(f"/api/v1/tasks/{task['id']}", headers=user.headers)
    ).status_code == 404
    assert sim.store.stats.for_prompt("[sim:never] bye").polls == polls


async def test_bulk_delete_reports_foreign_and_unknown_ids_as_not_found(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser, other_user: AuthedUser
) -> None:
    mine = [
        await create(client, user.headers, {"model": "sora-2", "prompt": f"mine {i}"}, wait=30)
        for i in range(2)
    ]
    image = await create(
        client, user.headers, {"model": "nano-banana", "prompt": "pic"}, kind="images", wait=30
    )
    theirs = await create(client, other_user.headers, {"model": "sora-2", "prompt": "theirs"})
    assert await _usage(client, user) > 0
    ids = [mine[0]["id"], theirs["id"], "00000000-0000-0000-0000-000000000000", mine[1]["id"]]
    ids += [image["id"], mine[0]["id"]]
    response = await client.post(
        "/api/v1/tasks/bulk-delete", json={"ids": ids}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["deleted"] == [mine[0]["id"], mine[1]["id"], image["id"]]
    assert result["not_found"] == [theirs["id"], "00000000-0000-0000-0000-000000000000"]
    assert await _usage(client, user) == 0
    assert (await client.get("/api/v1/videos", headers=user.headers)).json()["total"] == 0
    # The foreign task is untouched.
    still = await client.get(f"/api/v1/videos/{theirs['id']}", headers=other_user.headers)
    assert still.status_code == 200
    assert still.json()["status"] != "cancelled"
    for body in ({"ids": []}, {}, {"ids": ["x"] * 501}):
        bad = await client.post("/api/v1/tasks/bulk-delete", json=body, headers=user.headers)
        assert bad.status_code == 422


# ----------------------------------------------------------------------------- isolation


async def test_another_users_task_media_and_actions_are_all_404(
    client: httpx.AsyncClient, app: FastAPI, user: AuthedUser, other_user: AuthedUser
) -> None:
    task = await create(
        client,
        user.headers,
        {"model": "sora-2", "prompt": "mine alone", "title": "Mine"},
        wait=30,
    )
    running = await create(client, user.headers, {"model": "veo3", "prompt": "[sim:never] mine"})
    tid, mid = task["id"], task["media"][0]["id"]
    spy = other_user.headers
    attempts = [
        ("GET", f"/api/v1/videos/{tid}", None),
        ("GET", f"/api/v1/tasks/{tid}", None),
        ("GET", f"/api/v1/videos/{tid}/content", None),
        ("HEAD", f"/api/v1/videos/{tid}/content", None),
        ("GET", f"/api/v1/videos/{tid}/thumbnail", None),
        ("GET", f"/api/v1/videos/{tid}/media/{mid}/content", None),
        ("GET", f"/api/v1/videos/{tid}/media/{mid}/thumbnail", None),
        ("POST", f"/api/v1/videos/{tid}/media/{mid}/fetch", None),
        ("POST", f"/api/v1/videos/{running['id']}/cancel", None),
        ("POST", f"/api/v1/videos/{tid}/retry", None),
        ("PATCH", f"/api/v1/videos/{tid}", {"title": "stolen", "favorite": True}),
        ("DELETE", f"/api/v1/videos/{tid}", None),
        ("DELETE", f"/api/v1/videos/{running['id']}", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=spy)
        assert response.status_code == 404, (method, path, response.status_code)
        if method != "HEAD":
            assert response.json()["error"]["code"].endswith("not_found"), (method, path)
    listing = await client.get("/api/v1/videos", headers=spy)
    assert listing.json()["total"] == 0
    searched = await client.get("/api/v1/videos?search=mine", headers=spy)
    assert searched.json()["total"] == 0

    # Nothing changed for the owner.
    mine = await client.get(f"/api/v1/videos/{tid}", headers=user.headers)
    assert mine.json()["title"] == "Mine"
    assert mine.json()["favorite"] is False
    assert mine.json()["media"][0]["state"] == "stored"
    still_running = await client.get(f"/api/v1/videos/{running['id']}", headers=user.headers)
    assert still_running.json()["status"] in {"queued", "in_progress"}
    owner_listing = await client.get("/api/v1/videos", headers=user.headers)
    assert owner_listing.json()["total"] == 2  # no retry clone was made for the spy


async def test_unauthenticated_requests_are_401(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/api/v1/videos"),
        ("POST", "/api/v1/videos"),
        ("GET", "/api/v1/images"),
        ("POST", "/api/v1/tasks/bulk-delete"),
        ("GET", "/api/v1/tasks/x"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 401, (method, path)


# ----------------------------------------------------------------------------- other processes


@pytest.fixture
async def reader_app(settings: Settings, app: FastAPI) -> AsyncIterator[FastAPI]:
    """A second instance of the service on the same database without a worker: what a web
    process looks like when the work is done by `genapi worker` processes elsewhere."""
    other = create_app(settings.model_copy(update={"run_worker": False}))
    async with LifespanManager(other, startup_timeout=30, shutdown_timeout=30):
        yield other


async def test_events_of_another_process_reach_the_stream_even_while_it_is_busy(
    client: httpx.AsyncClient, reader_app: FastAPI, user: AuthedUser
) -> None:
    async with (
        serve_asgi(reader_app) as reader_url,
        httpx.AsyncClient(base_url=reader_url, timeout=SSE_TIMEOUT) as reader,
        reader.stream("GET", "/api/v1/tasks/events", headers=user.headers) as stream,
    ):
        assert stream.status_code == 200
        events = sse_events(stream)
        # Local events keep the reader's own stream busy (a title change every 0.3 s) …
        busy = await create(client, user.headers, {"model": "veo3", "prompt": "[sim:never] b"})

        async def keep_busy() -> None:
            for i in range(200):
                response = await reader.patch(
                    f"/api/v1/videos/{busy['id']}", json={"title": f"t{i}"}, headers=user.headers
                )
                assert response.status_code == 200
                await asyncio.sleep(0.3)

        chatter = asyncio.create_task(keep_busy())
        try:
            # … while the task is created and completed by the *other* process's worker.
            task = await create(
                client, user.headers, {"model": "sora-2", "prompt": "elsewhere"}, wait=30
            )
            assert task["status"] == "completed"
            seen: list[SSEEvent] = []
            done = await next_event_for(events, task["id"], "task.completed", seen)
            assert done.data["status"] == "completed"
            assert any(e.event == "task.updated" and e.data["id"] == busy["id"] for e in seen)
        finally:
            chatter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chatter
