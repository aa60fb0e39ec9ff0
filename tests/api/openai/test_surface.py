"""The rest of the OpenAI-compatible surface: models, authentication, error shapes (only on
`/v1`), the request log, and that an error still rolls the request's transaction back."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import select

from app.api.deps import SessionDep
from app.api.openai.deps import OpenAIPrincipal
from app.api.openai.errors import OpenAIRoute
from app.core.errors import ValidationFailed
from app.core.security import ACCESS_COOKIE
from app.models import IdempotencyKey
from tests.api.openai.conftest import assert_openai_error, create_api_key, sdk
from tests.conftest import AuthedUser

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def test_models_list_and_retrieve(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    catalog = await client.get("/api/v1/models", headers=user.headers)
    expected = [m["id"] for m in catalog.json()["data"]]
    models = [m async for m in oai.models.list()]
    assert [m.id for m in models] == expected
    assert {m.object for m in models} == {"model"}
    assert all(isinstance(m.created, int) and m.owned_by for m in models)
    sora = await oai.models.retrieve("sora-2")
    assert (sora.id, sora.object) == ("sora-2", "model")
    with pytest.raises(openai.NotFoundError) as missing:
        await oai.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"


async def test_invalid_missing_and_revoked_keys_are_openai_401s(
    live_url: str, api_key: str, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    async with sdk(live_url, "gk_not-a-real-key") as wrong:
        with pytest.raises(openai.AuthenticationError) as rejected:
            await wrong.models.list()
    assert rejected.value.code == "invalid_api_key"

    async with httpx.AsyncClient(base_url=live_url, timeout=30) as http:
        missing = await http.get("/v1/videos")
        assert_openai_error(missing, 401, "missing_api_key")
        # The web session cookie is not a credential here (no CSRF check on /v1), though
        # /api/v1 accepts it.
        cookie = {"Cookie": f"{ACCESS_COOKIE}={user.token}"}
        assert (await http.get("/api/v1/keys", headers=cookie)).status_code == 200
        cookie_only = await http.get("/v1/models", headers=cookie)
        assert_openai_error(cookie_only, 401, "missing_api_key")
        # A bearer access token works like a key.
        bearer = await http.get("/v1/models", headers=user.headers)
        assert bearer.status_code == 200

    keys = (await client.get("/api/v1/keys", headers=user.headers)).json()
    [key_id] = [k["id"] for k in keys]
    revoked = await client.delete(f"/api/v1/keys/{key_id}", headers=user.headers)
    assert revoked.status_code == 204
    async with sdk(live_url, api_key) as old:
        with pytest.raises(openai.AuthenticationError):
            await old.videos.list()


async def test_errors_are_openai_shaped_only_on_v1(
    raw: httpx.AsyncClient, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    not_found = await raw.get("/v1/videos/does-not-exist")
    error = assert_openai_error(not_found, 404)
    assert error["type"] == "invalid_request_error"
    unknown = await raw.get("/v1/chat/completions")
    assert_openai_error(unknown, 404, "unknown_url")
    bad_json = await raw.post(
        "/v1/videos", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_openai_error(bad_json, 400, "invalid_json")
    missing_prompt = await raw.post("/v1/images/generations", json={"model": "gpt-image-1"})
    assert assert_openai_error(missing_prompt, 400)["param"] == "prompt"
    bad_limit = await raw.get("/v1/videos", params={"limit": 1000})
    assert assert_openai_error(bad_limit, 400)["param"] == "limit"

    # The rest of the API keeps its own shape.
    ours = await client.get("/api/v1/videos/does-not-exist", headers=user.headers)
    assert ours.status_code == 404
    assert set(ours.json()["error"]) == {"code", "message", "details"}
    ours_invalid = await client.post("/api/v1/videos", json={}, headers=user.headers)
    assert ours_invalid.status_code == 422
    assert set(ours_invalid.json()["error"]) == {"code", "message", "details"}


async def test_v1_calls_are_in_the_request_log(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: AuthedUser
) -> None:
    video = await oai.videos.create(model="sora-2", prompt="[sim:never] logged")
    entries: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not entries:
            response = await client.get(
                "/api/v1/logs", params={"path_contains": "/v1/videos"}, headers=user.headers
            )
            assert response.status_code == 200, response.text
            entries = [
                e
                for e in response.json()["items"]
                if e["path"] == "/v1/videos" and e["method"] == "POST"
            ]
            if not entries:
                await asyncio.sleep(0.05)
    [entry] = entries
    assert entry["status_code"] == 200
    assert video.id  # the create the entry records


async def test_another_user_cannot_see_through_v1(
    oai: openai.AsyncOpenAI, live_url: str, client: httpx.AsyncClient, other_user: AuthedUser
) -> None:
    mine = await oai.videos.create(model="sora-2", prompt="[sim:never] mine")
    async with sdk(live_url, await create_api_key(client, other_user)) as theirs:
        with pytest.raises(openai.NotFoundError):
            await theirs.videos.retrieve(mine.id)
        assert [v.id async for v in theirs.videos.list()] == []


@pytest.fixture
def probe(app: FastAPI) -> None:
    """A route of the OpenAI route class that writes, then fails (or not)."""
    router = APIRouter(route_class=OpenAIRoute)

    @router.post("/probe/openai-route")
    async def write_then_fail(
        principal: OpenAIPrincipal, db: SessionDep, fail: bool = True
    ) -> dict[str, str]:
        db.add(
            IdempotencyKey(
                user_id=principal.user_id, key="probe", request_hash="0" * 64, task_ids=[]
            )
        )
        await db.flush()
        if fail:
            raise ValidationFailed(
                "Invalid request", details=[{"field": "params.duration", "message": "bad"}]
            )
        return {"ok": "yes"}

    app.include_router(router)


async def probe_rows(app: FastAPI) -> int:
    async with app.state.db.session() as db:
        return len((await db.scalars(select(IdempotencyKey))).all())


@pytest.mark.usefixtures("probe")
async def test_an_openai_shaped_error_still_rolls_the_request_back(
    app: FastAPI, client: httpx.AsyncClient, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    failed = await client.post("/probe/openai-route", headers=headers)
    error = assert_openai_error(failed, 400, "validation_error")
    assert error["param"] == "duration"
    assert await probe_rows(app) == 0
    succeeded = await client.post("/probe/openai-route?fail=false", headers=headers)
    assert succeeded.status_code == 200
    assert await probe_rows(app) == 1
