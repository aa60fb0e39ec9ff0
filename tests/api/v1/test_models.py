"""GET /api/v1/models and /api/v1/models/{id}: the catalog as the web page reads it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI

from app.api.v1 import models as models_api
from app.core.catalog import load_catalog
from tests.conftest import AuthedUser


@pytest.fixture(autouse=True)
def _mounted(app: FastAPI) -> None:
    # Until the lead mounts the router in app/api/v1/router.py, mount it here the same way.
    paths = {getattr(route, "path", None) for route in app.routes}
    if "/api/v1/models" not in paths:
        app.include_router(models_api.router, prefix="/api/v1/models", tags=["models"])


async def test_requires_authentication(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/models", "/api/v1/models/sora-2"):
        response = await client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"


async def test_lists_every_visible_model(client: httpx.AsyncClient, user: AuthedUser) -> None:
    response = await client.get("/api/v1/models", headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == load_catalog().ids()
    assert {"sora-2", "sora-2-pro", "veo3", "gpt-image-1", "dall-e-3"} <= set(ids)
    assert {m["kind"] for m in body["data"]} == {"video", "image"}


async def test_model_carries_what_a_form_needs(client: httpx.AsyncClient, user: AuthedUser) -> None:
    response = await client.get("/api/v1/models/sora-2-pro", headers=user.headers)
    assert response.status_code == 200, response.text
    model = response.json()
    assert model["object"] == "model"
    assert model["kind"] == "video"
    assert model["display_name"] == "Sora 2 Pro"
    assert model["modes"] == ["text_to_video", "image_to_video"]
    assert model["capabilities"]["max_reference_images"] == 1
    assert model["capabilities"]["max_n"] == 1
    duration = next(p for p in model["parameters"] if p["name"] == "duration")
    assert duration["type"] == "enum"
    assert duration["default"] == 10
    assert [a["value"] for a in duration["allowed"]] == [10, 15, 25]
    assert duration["allowed"][2]["label"] == "25 s"
    hd = next(p for p in model["parameters"] if p["name"] == "hd")
    assert hd["type"] == "boolean"
    assert hd["default"] is False
    assert model["rules"] == [
        {
            "when": {"hd": True},
            "modes": None,
            "forbid": {"duration": [25]},
            "allow": {},
            "message": "HD is not available for 25-second videos.",
        }
    ]
    assert "hidden" not in model


async def test_integer_parameter_shows_range(client: httpx.AsyncClient, user: AuthedUser) -> None:
    response = await client.get("/api/v1/models/doubao-seedance-1-0-pro", headers=user.headers)
    seed = next(p for p in response.json()["parameters"] if p["name"] == "seed")
    assert (seed["type"], seed["min"], seed["max"], seed["default"]) == (
        "integer",
        -1,
        4294967295,
        -1,
    )


@pytest.mark.parametrize("kind", ["video", "image"])
async def test_filter_by_kind(client: httpx.AsyncClient, user: AuthedUser, kind: str) -> None:
    response = await client.get("/api/v1/models", params={"kind": kind}, headers=user.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data
    assert {m["kind"] for m in data} == {kind}
    assert [m["id"] for m in data] == load_catalog().ids(kind)  # type: ignore[arg-type]


async def test_bad_kind_is_422(client: httpx.AsyncClient, user: AuthedUser) -> None:
    response = await client.get("/api/v1/models", params={"kind": "audio"}, headers=user.headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "kind"


async def test_unknown_model_is_404(client: httpx.AsyncClient, user: AuthedUser) -> None:
    response = await client.get("/api/v1/models/sora-9", headers=user.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_hidden_model_is_neither_listed_nor_served(
    app: FastAPI, client: httpx.AsyncClient, user: AuthedUser, tmp_path: Path
) -> None:
    extra = tmp_path / "models.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "id": "house-image",
                        "kind": "image",
                        "adapter": "images",
                        "capabilities": {"text_to_image": True},
                    }
                ]
            }
        )
    )
    app.state.catalog = load_catalog(extra, hidden=["sora-2"])
    listed = await client.get("/api/v1/models", headers=user.headers)
    ids = [m["id"] for m in listed.json()["data"]]
    assert "sora-2" not in ids
    assert "sora-2-pro" in ids
    assert ids[-1] == "house-image"
    hidden = await client.get("/api/v1/models/sora-2", headers=user.headers)
    assert hidden.status_code == 404
    added = await client.get("/api/v1/models/house-image", headers=user.headers)
    assert added.status_code == 200
    assert added.json()["modes"] == ["text_to_image"]
