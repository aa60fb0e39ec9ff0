"""The history page's `total` over HTTP: exact (`total_is_estimate: false`) until the count cap,
then a lower bound flagged `total_is_estimate: true`, with `pages` following it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.core.tasks import service
from tests.api.v1.conftest import FAST_TASKS, create
from tests.conftest import AuthedUser


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(FAST_TASKS)


async def _page(client: httpx.AsyncClient, user: AuthedUser, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/videos", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_total_is_capped_and_flagged(
    client: httpx.AsyncClient, user: AuthedUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        await create(client, user.headers, {"model": "sora-2", "prompt": f"harbour lights {i}"})

    exact = await _page(client, user, size=2)
    assert (exact["total"], exact["pages"], exact["total_is_estimate"]) == (4, 2, False)

    monkeypatch.setattr(service, "COUNT_CAP", 3)
    capped = await _page(client, user, size=1)
    assert (capped["total"], capped["pages"], capped["total_is_estimate"]) == (3, 3, True)
    assert len(capped["items"]) == 1
    # The last page, and a page past the end, know the exact total.
    last = await _page(client, user, size=1, page=4)
    assert (last["total"], last["pages"], last["total_is_estimate"]) == (4, 4, False)
    beyond = await _page(client, user, size=1, page=9)
    assert (beyond["total"], beyond["items"], beyond["total_is_estimate"]) == (4, [], False)

    monkeypatch.setattr(service, "SEARCH_COUNT_CAP", 2)
    searched = await _page(client, user, size=1, search="harbour")
    assert (searched["total"], searched["total_is_estimate"]) == (2, True)
    only = await _page(client, user, size=1, search="lights 3")
    assert (only["total"], only["total_is_estimate"]) == (1, False)


async def test_the_flag_is_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    page = schema["components"]["schemas"]["TaskPage"]
    assert page["properties"]["total_is_estimate"]["type"] == "boolean"
    assert "total_is_estimate" not in page.get("required", [])
