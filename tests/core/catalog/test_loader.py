"""MODELS_FILE / MODELS_HIDDEN: operators add, override and hide models without code changes;
a broken file stops startup with a message that names the file and the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.catalog import (
    CatalogError,
    CatalogSettings,
    get_catalog,
    load_catalog,
    validate_request,
)
from app.core.errors import ValidationFailed
from app.core.secrets import ConfigurationError

EXTRA_MODEL: dict[str, Any] = {
    "id": "kling-v2",
    "kind": "video",
    "adapter": "veo",
    "upstream_model": "kling-v2-master",
    "display_name": "Kling 2",
    "capabilities": {"text_to_video": True},
    "parameters": [
        {"name": "duration", "type": "enum", "allowed": [5, 10], "default": 5},
        {"name": "negative_prompt", "type": "string", "max_length": 10},
        {"name": "cfg_scale", "type": "number", "min": 0, "max": 1},
    ],
}


def _write(tmp_path: Path, document: Any, suffix: str = ".yaml") -> Path:
    path = tmp_path / f"models{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(document))
    else:
        path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_adds_a_model_and_overrides_one(tmp_path: Path, suffix: str) -> None:
    document = {
        "models": [
            EXTRA_MODEL,
            {
                "id": "sora-2",
                "upstream_model": "sora-2-vip",
                "description": "Routed to the VIP pool",
                "capabilities": {"max_reference_images": 3},
            },
        ]
    }
    catalog = load_catalog(_write(tmp_path, document, suffix))

    added = catalog.get("kling-v2")
    assert added is not None
    assert catalog.ids("video")[-1] == "kling-v2"
    result = validate_request(
        catalog, "kling-v2", "video", {"negative_prompt": "blur", "cfg_scale": "0.5"}
    )
    assert result.params == {"duration": 5, "negative_prompt": "blur", "cfg_scale": 0.5}
    assert result.upstream_model == "kling-v2-master"
    with pytest.raises(ValidationFailed) as info:
        validate_request(catalog, "kling-v2", "video", {"negative_prompt": "x" * 11})
    assert info.value.details[0]["field"] == "params.negative_prompt"
    with pytest.raises(ValidationFailed) as info:
        validate_request(catalog, "kling-v2", "video", {"cfg_scale": 2})
    assert info.value.details[0] == {
        "field": "params.cfg_scale",
        "message": "must be at most 1",
        "min": 0,
        "max": 1,
    }

    sora = catalog.get("sora-2")
    assert sora is not None
    assert sora.upstream_model == "sora-2-vip"
    assert sora.description == "Routed to the VIP pool"
    # Capabilities merge key by key; untouched fields keep the built-in values.
    assert sora.capabilities.max_reference_images == 3
    assert sora.capabilities.text_to_video is True
    assert sora.parameter("duration") is not None
    assert validate_request(catalog, "sora-2", "video", images_count=3).mode == "image_to_video"


def test_override_replaces_parameter_list(tmp_path: Path) -> None:
    document = [
        {
            "id": "sora-2",
            "parameters": [
                {"name": "duration", "type": "enum", "allowed": [10, 15, 25], "default": 15}
            ],
        }
    ]
    catalog = load_catalog(_write(tmp_path, document))
    result = validate_request(catalog, "sora-2", "video", {"duration": 25})
    assert result.params == {"duration": 25}


def test_extends_derives_a_new_model(tmp_path: Path) -> None:
    document = {
        "models": [
            {
                "id": "sora-2-pro-vertical",
                "extends": "sora-2-pro",
                "display_name": "Sora 2 Pro (vertical)",
                "parameters": [
                    {"name": "aspect_ratio", "type": "enum", "allowed": ["9:16"], "default": "9:16"}
                ],
                "rules": [],
            }
        ]
    }
    catalog = load_catalog(_write(tmp_path, document), hidden=["sora-2-pro"])
    derived = catalog.get("sora-2-pro-vertical")
    assert derived is not None
    assert derived.upstream_model == "sora-2-pro"
    assert derived.adapter == "sora"
    assert derived.hidden is False
    assert catalog.get("sora-2-pro") is None
    assert validate_request(catalog, "sora-2-pro-vertical", "video").params == {
        "aspect_ratio": "9:16"
    }


def test_hidden_by_setting_and_by_file(tmp_path: Path) -> None:
    path = _write(tmp_path, {"models": [{"id": "dall-e-3", "hidden": True}]})
    catalog = load_catalog(path, hidden=["veo3", "no-such-model"])
    assert catalog.get("veo3") is None
    assert catalog.get("dall-e-3") is None
    assert catalog.get("veo3", include_hidden=True) is not None
    assert "veo3" not in catalog.ids()
    assert "dall-e-3" not in catalog.ids("image")
    assert "veo3-fast" in catalog.ids("video")


def test_yaml_anchors_and_x_keys_allowed(tmp_path: Path) -> None:
    path = tmp_path / "models.yml"
    path.write_text(
        """
x-caps: &caps
  text_to_image: true
  max_n: 2
models:
  - id: img-a
    kind: image
    adapter: images
    capabilities: *caps
  - id: img-b
    kind: image
    adapter: images
    capabilities: *caps
"""
    )
    catalog = load_catalog(path)
    assert validate_request(catalog, "img-b", "image", n=2).params == {}


def _load_error(tmp_path: Path, document: Any, suffix: str = ".yaml") -> str:
    path = _write(tmp_path, document, suffix)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert isinstance(info.value, ConfigurationError)
    message = str(info.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({**EXTRA_MODEL, "adapter": "runway"}, "unknown adapter 'runway'"),
        ({**EXTRA_MODEL, "kind": "image"}, "adapter 'veo' produces video, not image"),
        ({**EXTRA_MODEL, "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({**EXTRA_MODEL, "id": "bad id!"}, "id: String should match pattern"),
        (
            {
                **EXTRA_MODEL,
                "parameters": [{"name": "duration", "type": "enum", "allowed": [5], "default": 7}],
            },
            "default of 'duration' must be one of 5",
        ),
        (
            {**EXTRA_MODEL, "parameters": [{"name": "size", "type": "enum"}]},
            "needs a non-empty 'allowed' list",
        ),
        (
            {**EXTRA_MODEL, "parameters": [{"name": "prompt", "type": "string"}]},
            "reserved",
        ),
        (
            {
                **EXTRA_MODEL,
                "rules": [{"when": {"hd": True}, "forbid": {"duration": [5]}, "message": "x"}],
            },
            "rule 0 names unknown parameter 'hd'",
        ),
        (
            {
                **EXTRA_MODEL,
                "rules": [{"when": {"duration": 7}, "forbid": {"duration": [5]}, "message": "x"}],
            },
            "rule 0: a value for 'duration' must be one of 5, 10",
        ),
        (
            {**EXTRA_MODEL, "capabilities": {"text_to_image": True}},
            "a video model cannot have text_to_image",
        ),
        (
            {**EXTRA_MODEL, "capabilities": {"text_to_video": True, "image_to_video": True}},
            "max_reference_images is 0",
        ),
        ({"id": "half-model", "kind": "video"}, "model 'half-model' capabilities: Field required"),
    ],
)
def test_invalid_definitions_are_refused(
    tmp_path: Path, entry: dict[str, Any], expected: str
) -> None:
    message = _load_error(tmp_path, {"models": [entry]})
    assert expected in message


def test_duplicate_parameter_is_refused(tmp_path: Path) -> None:
    entry = {**EXTRA_MODEL, "parameters": [EXTRA_MODEL["parameters"][0]] * 2}
    assert "appears twice" in _load_error(tmp_path, [entry])


def test_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(path)


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text("{'models': []}")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot be read"):
        load_catalog(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"modells": []}, "unknown top-level key"),
        ({"models": "sora-2"}, "expected a list of models"),
        ({"models": ["sora-2"]}, "model #0 is not a mapping"),
        ({"models": [{"kind": "video"}]}, "model #0 has no 'id'"),
        ({"models": [{"id": "x", "extends": "nothing"}]}, "extends unknown model 'nothing'"),
        ({"models": [{"id": "sora-2", "extends": "veo3"}]}, "'extends' is for new ids"),
    ],
)
def test_malformed_documents(tmp_path: Path, document: Any, expected: str) -> None:
    assert expected in _load_error(tmp_path, document)


def test_empty_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("")
    assert load_catalog(path).ids() == load_catalog().ids()


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _write(tmp_path, {"models": [EXTRA_MODEL]})
    monkeypatch.setenv("MODELS_FILE", str(path))
    monkeypatch.setenv("MODELS_HIDDEN", " sora-2 , dall-e-3,,")
    settings = CatalogSettings(_env_file=None)
    assert settings.models_file == path
    assert settings.models_hidden == ["sora-2", "dall-e-3"]

    get_catalog.cache_clear()
    try:
        catalog = get_catalog()
        assert get_catalog() is catalog  # loaded once
        assert catalog.get("kling-v2") is not None
        assert catalog.get("sora-2") is None
    finally:
        get_catalog.cache_clear()


def test_invalid_models_file_fails_get_catalog(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _write(tmp_path, {"models": [{**EXTRA_MODEL, "adapter": "nope"}]})
    monkeypatch.setenv("MODELS_FILE", str(path))
    get_catalog.cache_clear()
    try:
        with pytest.raises(CatalogError, match="unknown adapter 'nope'"):
            get_catalog()
    finally:
        get_catalog.cache_clear()


def test_blank_settings_mean_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELS_FILE", "")
    monkeypatch.setenv("MODELS_HIDDEN", "")
    settings = CatalogSettings(_env_file=None)
    assert settings.models_file is None
    assert settings.models_hidden == []
