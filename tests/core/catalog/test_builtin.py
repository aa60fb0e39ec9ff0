"""The built-in catalog holds the models the issue asks for, with the stated parameters."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.catalog import Catalog, ModelSpec, load_catalog
from app.core.catalog.loader import builtin_definitions


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _model(catalog: Catalog, model_id: str) -> ModelSpec:
    model = catalog.get(model_id)
    assert model is not None, model_id
    return model


def _allowed(model: ModelSpec, name: str) -> list[Any]:
    spec = model.parameter(name)
    assert spec is not None, f"{model.id} has no {name}"
    assert spec.allowed_values is not None
    return spec.allowed_values


REQUIRED = {
    "sora-2": ("video", "sora"),
    "sora-2-pro": ("video", "sora"),
    "sora-2-openai": ("video", "openai_sora"),
    "sora-2-pro-openai": ("video", "openai_sora"),
    "veo3": ("video", "veo"),
    "veo3-fast": ("video", "veo"),
    "veo3.1": ("video", "veo"),
    "veo3.1-fast": ("video", "veo"),
    "doubao-seedance-1-0-pro": ("video", "seedance"),
    "doubao-seedance-1-0-lite-t2v": ("video", "seedance"),
    "doubao-seedance-1-0-lite-i2v": ("video", "seedance"),
    "gpt-image-1": ("image", "images"),
    "gpt-image-1.5": ("image", "images"),
    "dall-e-3": ("image", "images"),
    "flux-pro": ("image", "images"),
    "flux-kontext-pro": ("image", "images"),
    "nano-banana": ("image", "images"),
    "nano-banana-2": ("image", "images"),
    "nano-banana-2-2k": ("image", "images"),
    "nano-banana-2-4k": ("image", "images"),
    "seedream-4-0": ("image", "images"),
}


def test_required_models_present(catalog: Catalog) -> None:
    for model_id, (kind, adapter) in REQUIRED.items():
        model = _model(catalog, model_id)
        assert (model.kind, model.adapter) == (kind, adapter), model_id
        assert model.display_name
        assert model.description
    assert all(not m.hidden for m in catalog.models)


def test_builtin_file_has_unique_ids() -> None:
    ids = [entry["id"] for entry in builtin_definitions()]
    assert len(ids) == len(set(ids))


def test_sora_parameters(catalog: Catalog) -> None:
    sora2, pro = _model(catalog, "sora-2"), _model(catalog, "sora-2-pro")
    assert _allowed(sora2, "duration") == [10, 15]
    assert _allowed(pro, "duration") == [10, 15, 25]
    assert sora2.parameter("hd") is None
    assert pro.parameter("hd") is not None
    for model in (sora2, pro):
        assert _allowed(model, "aspect_ratio") == ["16:9", "9:16"]
        assert model.parameter("aspect_ratio").default == "16:9"  # type: ignore[union-attr]
        assert model.parameter("watermark") is not None
        assert model.parameter("private") is not None
        assert model.capabilities.max_reference_images >= 1
    assert [(r.when, r.forbid) for r in pro.rules] == [({"hd": True}, {"duration": [25]})]


def test_openai_sora_sizes(catalog: Catalog) -> None:
    assert _allowed(_model(catalog, "sora-2-openai"), "size") == ["1280x720", "720x1280"]
    assert set(_allowed(_model(catalog, "sora-2-pro-openai"), "size")) == {
        "1280x720",
        "720x1280",
        "1792x1024",
        "1024x1792",
    }
    assert _allowed(_model(catalog, "sora-2-openai"), "seconds") == [4, 8, 12]


def test_veo_parameters(catalog: Catalog) -> None:
    for model_id in ("veo3", "veo3-fast", "veo3.1", "veo3.1-fast"):
        model = _model(catalog, model_id)
        assert _allowed(model, "resolution") == ["720p", "1080p"]
        assert _allowed(model, "aspect_ratio") == ["16:9", "9:16"]
        assert model.parameter("duration") is not None
        assert model.modes == ["text_to_video", "image_to_video"]


def test_seedance_parameters(catalog: Catalog) -> None:
    pro = _model(catalog, "doubao-seedance-1-0-pro")
    assert pro.modes == ["text_to_video", "image_to_video", "frames_to_video"]
    assert set(_allowed(pro, "ratio")) == {"16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive"}
    assert _allowed(pro, "resolution") == ["480p", "720p", "1080p"]
    assert pro.parameter("seed").type == "integer"  # type: ignore[union-attr]
    assert pro.parameter("camera_fixed").type == "boolean"  # type: ignore[union-attr]
    assert _model(catalog, "doubao-seedance-1-0-lite-t2v").modes == ["text_to_video"]
    assert _model(catalog, "doubao-seedance-1-0-lite-i2v").modes == [
        "image_to_video",
        "frames_to_video",
    ]


ASPECTS = ["Auto", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9"]


def test_image_parameters(catalog: Catalog) -> None:
    for model_id in ("nano-banana", "nano-banana-2", "seedream-4-0", "flux-kontext-pro"):
        assert _allowed(_model(catalog, model_id), "aspect_ratio") == ASPECTS
    for model_id in ("nano-banana-2", "seedream-4-0"):
        assert _allowed(_model(catalog, model_id), "image_size") == ["1K", "2K", "4K"]
    for model_id in ("gpt-image-1", "gpt-image-1.5"):
        model = _model(catalog, model_id)
        assert _allowed(model, "quality") == ["auto", "low", "medium", "high"]
        assert model.capabilities.mask
        assert model.capabilities.image_edit
    assert _allowed(_model(catalog, "dall-e-3"), "quality") == ["standard", "hd"]
    for model in catalog.visible("image"):
        assert _allowed(model, "response_format") == ["url", "b64_json"]
        assert model.parameter("size") or model.parameter("aspect_ratio"), model.id
        expected_n = 1 if model.id == "dall-e-3" else 4
        assert model.capabilities.max_n == expected_n, model.id


def test_every_enum_value_has_a_label(catalog: Catalog) -> None:
    for model in catalog.models:
        for spec in model.parameters:
            assert spec.label, (model.id, spec.name)
            for allowed in spec.allowed or []:
                assert allowed.label, (model.id, spec.name, allowed.value)
