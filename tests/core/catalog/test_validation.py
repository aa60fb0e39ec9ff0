"""Every rule of the built-in catalog, enforced by `validate_request`."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.catalog import Catalog, load_catalog, validate_request
from app.core.errors import ValidationFailed


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _fail(catalog: Catalog, model: str, kind: str = "video", **kwargs: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        validate_request(catalog, model, kind, **kwargs)  # type: ignore[arg-type]
    assert info.value.status_code == 422
    return info.value


def _detail(error: ValidationFailed, field: str) -> dict[str, Any]:
    matches = [d for d in error.details if d["field"] == field]
    assert matches, f"no detail for {field}: {error.details}"
    return matches[0]


# --- Sora -----------------------------------------------------------------------------------


def test_sora2_defaults_applied(catalog: Catalog) -> None:
    result = validate_request(catalog, "sora-2", "video", {})
    assert result.params == {
        "aspect_ratio": "16:9",
        "duration": 10,
        "watermark": False,
        "private": False,
    }
    assert result.adapter == "sora"
    assert result.upstream_model == "sora-2"
    assert result.mode == "text_to_video"


def test_sora2_has_no_25_seconds(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-2", params={"duration": 25})
    detail = _detail(error, "params.duration")
    assert detail["allowed"] == [10, 15]
    assert "10" in detail["message"]
    assert "15" in detail["message"]


def test_sora2_has_no_hd(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-2", params={"hd": True})
    detail = _detail(error, "params.hd")
    assert "unknown parameter" in detail["message"]
    assert "hd" not in detail["allowed"]
    assert "duration" in detail["allowed"]


def test_sora2_pro_forbids_hd_with_25_seconds(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-2-pro", params={"hd": True, "duration": 25})
    detail = _detail(error, "params.duration")
    assert detail["message"] == "HD is not available for 25-second videos."
    assert detail["fields"] == ["params.hd", "params.duration"]
    assert detail["allowed"] == [10, 15]
    assert "params.duration" in error.message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"hd": True, "duration": 15}, {"hd": True, "duration": 15}),
        ({"hd": False, "duration": 25}, {"hd": False, "duration": 25}),
        ({"duration": 25}, {"hd": False, "duration": 25}),  # hd's default is off
        ({"hd": True}, {"hd": True, "duration": 10}),  # duration's default is not 25
    ],
)
def test_sora2_pro_allowed_combinations(
    catalog: Catalog, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    result = validate_request(catalog, "sora-2-pro", "video", params)
    assert {k: result.params[k] for k in expected} == expected


def test_string_values_are_coerced(catalog: Catalog) -> None:
    # Multipart forms send strings: "15" is the integer 15, "true" is True.
    result = validate_request(
        catalog, "sora-2-pro", "video", {"duration": "15", "hd": "true", "private": "0"}
    )
    assert result.params["duration"] == 15
    assert type(result.params["duration"]) is int
    assert result.params["hd"] is True
    assert result.params["private"] is False


def test_coerced_values_still_trigger_rules(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-2-pro", params={"duration": "25", "hd": "yes"})
    assert _detail(error, "params.duration")["allowed"] == [10, 15]


def test_boolean_is_not_an_integer_enum_value(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-2", params={"duration": True})
    assert _detail(error, "params.duration")["allowed"] == [10, 15]


def test_null_param_means_default(catalog: Catalog) -> None:
    result = validate_request(catalog, "sora-2", "video", {"duration": None})
    assert result.params["duration"] == 10


def test_enum_violation_lists_allowed_values(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-2", params={"aspect_ratio": "1:1"})
    assert error.details == [
        {
            "field": "params.aspect_ratio",
            "message": "must be one of '16:9', '9:16'",
            "allowed": ["16:9", "9:16"],
        }
    ]


def test_all_field_errors_reported_together(catalog: Catalog) -> None:
    error = _fail(
        catalog, "sora-2", params={"aspect_ratio": "4:3", "colour": "red"}, images_count=3
    )
    fields = {d["field"] for d in error.details}
    assert fields == {"params.aspect_ratio", "params.colour", "images"}


def test_boolean_param_rejects_garbage(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-2-pro", params={"hd": "maybe"})
    assert _detail(error, "params.hd")["message"] == "must be true or false"


def test_sora_reference_image_limit(catalog: Catalog) -> None:
    result = validate_request(catalog, "sora-2", "video", {}, images_count=1)
    assert result.mode == "image_to_video"
    error = _fail(catalog, "sora-2", images_count=2)
    assert _detail(error, "images")["max"] == 1


def test_video_model_takes_one_output(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-2", n=2)
    assert _detail(error, "n")["allowed"] == [1]


# --- models and kinds -----------------------------------------------------------------------


def test_unknown_model_lists_models_of_that_kind(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-3")
    assert error.code == "unknown_model"
    detail = _detail(error, "model")
    assert "sora-2" in detail["allowed"]
    assert "gpt-image-1" not in detail["allowed"]


def test_image_model_on_video_endpoint(catalog: Catalog) -> None:
    error = _fail(catalog, "gpt-image-1", "video")
    assert error.code == "wrong_model_kind"
    assert "sora-2" in _detail(error, "model")["allowed"]


def test_video_model_on_image_endpoint(catalog: Catalog) -> None:
    error = _fail(catalog, "veo3", "image")
    assert error.code == "wrong_model_kind"
    assert "dall-e-3" in _detail(error, "model")["allowed"]


def test_hidden_model_is_unknown() -> None:
    catalog = load_catalog(hidden=["sora-2"])
    error = _fail(catalog, "sora-2")
    assert error.code == "unknown_model"
    assert "sora-2" not in _detail(error, "model")["allowed"]
    assert validate_request(catalog, "sora-2-pro", "video").model_id == "sora-2-pro"


def test_params_must_be_an_object(catalog: Catalog) -> None:
    error = _fail(catalog, "sora-2", params=["duration"])
    assert _detail(error, "params")


# --- OpenAI official Sora -------------------------------------------------------------------


def test_openai_sora_sizes_and_seconds(catalog: Catalog) -> None:
    result = validate_request(catalog, "sora-2-openai", "video", {"seconds": "8"})
    assert result.params == {"seconds": 8, "size": "720x1280"}
    assert result.adapter == "openai_sora"
    assert result.upstream_model == "sora-2"
    error = _fail(catalog, "sora-2-openai", params={"size": "1792x1024", "seconds": 10})
    assert _detail(error, "params.size")["allowed"] == ["1280x720", "720x1280"]
    assert _detail(error, "params.seconds")["allowed"] == [4, 8, 12]
    pro = validate_request(catalog, "sora-2-pro-openai", "video", {"size": "1792x1024"})
    assert pro.upstream_model == "sora-2-pro"


# --- Veo ------------------------------------------------------------------------------------


def test_veo_defaults_and_optional_image(catalog: Catalog) -> None:
    text = validate_request(catalog, "veo3.1", "video")
    assert text.params == {"duration": 8, "aspect_ratio": "16:9", "resolution": "720p"}
    assert text.mode == "text_to_video"
    image = validate_request(catalog, "veo3.1", "video", images_count=1)
    assert image.mode == "image_to_video"
    _fail(catalog, "veo3.1", images_count=2)


def test_veo_1080p_only_with_8_seconds(catalog: Catalog) -> None:
    validate_request(catalog, "veo3", "video", {"resolution": "1080p", "duration": 8})
    validate_request(catalog, "veo3", "video", {"resolution": "720p", "duration": 4})
    error = _fail(catalog, "veo3-fast", params={"resolution": "1080p", "duration": 6})
    detail = _detail(error, "params.duration")
    assert detail["allowed"] == [8]
    assert detail["fields"] == ["params.resolution", "params.duration"]


def test_veo_resolution_values(catalog: Catalog) -> None:
    error = _fail(catalog, "veo3", params={"resolution": "4k"})
    assert _detail(error, "params.resolution")["allowed"] == ["720p", "1080p"]


# --- Seedance -------------------------------------------------------------------------------


def test_seedance_modes_follow_images(catalog: Catalog) -> None:
    model = "doubao-seedance-1-0-pro"
    assert validate_request(catalog, model, "video").mode == "text_to_video"
    assert validate_request(catalog, model, "video", images_count=1).mode == "image_to_video"
    assert validate_request(catalog, model, "video", images_count=2).mode == "frames_to_video"
    _fail(catalog, model, images_count=3)


def test_seedance_params(catalog: Catalog) -> None:
    result = validate_request(
        catalog,
        "doubao-seedance-1-0-pro",
        "video",
        {"seed": "42", "camera_fixed": "true", "ratio": "21:9", "resolution": "480p"},
    )
    assert result.params == {
        "duration": 5,
        "ratio": "21:9",
        "resolution": "480p",
        "seed": 42,
        "camera_fixed": True,
        "watermark": False,
    }
    assert result.upstream_model == "doubao-seedance-1-0-pro-250528"


def test_seedance_seed_range(catalog: Catalog) -> None:
    assert validate_request(catalog, "doubao-seedance-1-0-pro", "video").params["seed"] == -1
    error = _fail(catalog, "doubao-seedance-1-0-pro", params={"seed": -2})
    detail = _detail(error, "params.seed")
    assert detail["min"] == -1
    assert detail["max"] == 4294967295
    error = _fail(catalog, "doubao-seedance-1-0-pro", params={"seed": 1.5})
    assert _detail(error, "params.seed")["message"] == "must be an integer"


def test_seedance_adaptive_ratio_needs_an_image(catalog: Catalog) -> None:
    model = "doubao-seedance-1-0-pro"
    error = _fail(catalog, model, params={"ratio": "adaptive"})
    detail = _detail(error, "params.ratio")
    assert "images" in detail["fields"]
    assert "adaptive" not in detail["allowed"]
    result = validate_request(catalog, model, "video", {"ratio": "adaptive"}, images_count=1)
    assert result.params["ratio"] == "adaptive"


def test_seedance_lite_text_only_and_image_only(catalog: Catalog) -> None:
    error = _fail(catalog, "doubao-seedance-1-0-lite-t2v", images_count=1)
    assert _detail(error, "images")["max"] == 0
    error = _fail(catalog, "doubao-seedance-1-0-lite-i2v")
    assert _detail(error, "images")["min"] == 1
    result = validate_request(catalog, "doubao-seedance-1-0-lite-i2v", "video", images_count=2)
    assert result.mode == "frames_to_video"
    assert result.params["ratio"] == "adaptive"


# --- images ---------------------------------------------------------------------------------


def test_gpt_image_defaults_quality_and_n(catalog: Catalog) -> None:
    result = validate_request(catalog, "gpt-image-1", "image", {"quality": "HIGH"}, n=4)
    assert result.params == {"size": "auto", "quality": "high", "response_format": "b64_json"}
    assert result.n == 4
    assert result.mode == "text_to_image"
    error = _fail(catalog, "gpt-image-1.5", "image", params={"quality": "ultra"})
    assert _detail(error, "params.quality")["allowed"] == ["auto", "low", "medium", "high"]


@pytest.mark.parametrize("n", [0, 5, -1])
def test_image_n_between_1_and_4(catalog: Catalog, n: int) -> None:
    error = _fail(catalog, "gpt-image-1", "image", n=n)
    detail = _detail(error, "n")
    assert detail["allowed"] == [1, 2, 3, 4]
    assert detail["message"] == "must be between 1 and 4"


def test_dalle3_one_image_only(catalog: Catalog) -> None:
    assert validate_request(catalog, "dall-e-3", "image", n=1).n == 1
    error = _fail(catalog, "dall-e-3", "image", n=2)
    detail = _detail(error, "n")
    assert detail["allowed"] == [1]
    assert detail["message"] == "must be 1"


def test_dalle3_quality_and_no_edits(catalog: Catalog) -> None:
    result = validate_request(catalog, "dall-e-3", "image", {"quality": "hd", "style": "natural"})
    assert result.params["quality"] == "hd"
    error = _fail(catalog, "dall-e-3", "image", params={"quality": "high"})
    assert _detail(error, "params.quality")["allowed"] == ["standard", "hd"]
    error = _fail(catalog, "dall-e-3", "image", images_count=1)
    assert _detail(error, "images")["max"] == 0


def test_mask_supported_by_gpt_image(catalog: Catalog) -> None:
    result = validate_request(catalog, "gpt-image-1", "image", images_count=2, has_mask=True)
    assert result.mode == "image_edit"
    assert result.has_mask is True


def test_mask_needs_a_reference_image(catalog: Catalog) -> None:
    error = _fail(catalog, "gpt-image-1", "image", has_mask=True)
    assert _detail(error, "mask")["message"] == "a mask needs at least one reference image"


@pytest.mark.parametrize("model", ["nano-banana", "seedream-4-0", "flux-kontext-pro"])
def test_mask_unsupported(catalog: Catalog, model: str) -> None:
    error = _fail(catalog, model, "image", images_count=1, has_mask=True)
    assert "does not support a mask" in _detail(error, "mask")["message"]


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        ("gpt-image-1", 16),
        ("nano-banana", 4),
        ("nano-banana-2", 14),
        ("seedream-4-0", 10),
        ("flux-kontext-pro", 1),
    ],
)
def test_too_many_reference_images(catalog: Catalog, model: str, limit: int) -> None:
    assert validate_request(catalog, model, "image", images_count=limit).mode == "image_edit"
    error = _fail(catalog, model, "image", images_count=limit + 1)
    detail = _detail(error, "images")
    assert detail["max"] == limit
    assert str(limit) in detail["message"]


def test_flux_pro_has_no_edits(catalog: Catalog) -> None:
    error = _fail(catalog, "flux-pro", "image", images_count=1)
    assert "does not accept input images" in _detail(error, "images")["message"]


def test_aspect_ratio_and_image_size(catalog: Catalog) -> None:
    result = validate_request(
        catalog, "nano-banana-2", "image", {"aspect_ratio": "auto", "image_size": "4k"}
    )
    assert result.params["aspect_ratio"] == "Auto"
    assert result.params["image_size"] == "4K"
    error = _fail(catalog, "nano-banana-2", "image", params={"image_size": "8K"})
    assert _detail(error, "params.image_size")["allowed"] == ["1K", "2K", "4K"]
    # The fixed-size variants take no image_size.
    error = _fail(catalog, "nano-banana-2-4k", "image", params={"image_size": "4K"})
    assert "unknown parameter" in _detail(error, "params.image_size")["message"]
    seedream = validate_request(catalog, "seedream-4-0", "image", {"aspect_ratio": "21:9"})
    assert seedream.params == {"aspect_ratio": "21:9", "image_size": "2K", "response_format": "url"}


def test_response_format(catalog: Catalog) -> None:
    result = validate_request(catalog, "flux-pro", "image", {"response_format": "b64_json"})
    assert result.params["response_format"] == "b64_json"
    error = _fail(catalog, "flux-pro", "image", params={"response_format": "png"})
    assert _detail(error, "params.response_format")["allowed"] == ["url", "b64_json"]


def test_to_generation_request(catalog: Catalog) -> None:
    from app.clients.base import InputImage

    validated = validate_request(catalog, "gpt-image-1", "image", images_count=1, n=2)
    request = validated.to_generation_request("a cat", images=[InputImage(url="https://x/y.png")])
    assert request.model == "gpt-image-1"
    assert request.kind == "image"
    assert request.n == 2
    assert request.params == validated.params
    with pytest.raises(ValueError, match="differ"):
        validated.to_generation_request("a cat")
