"""OpenAI request fields onto the built-in catalog (`app.core.openai_compat.map_request`), and
our parameters back into OpenAI's `size`/`seconds`. Pure functions: no server."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.catalog import Catalog, load_catalog
from app.core.openai_compat import (
    OpenAIError,
    describe_seconds,
    describe_size,
    map_request,
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize(
    ("model", "seconds", "size", "expected"),
    [
        # Nearest allowed duration; on a tie, the longer one.
        ("sora-2", "12", None, {"duration": 10}),
        ("sora-2", 100, None, {"duration": 15}),
        ("sora-2", "1", "1280x720", {"duration": 10, "aspect_ratio": "16:9"}),
        ("sora-2-openai", "10", None, {"seconds": 12}),
        ("sora-2-openai", "4", "720x1280", {"seconds": 4, "size": "720x1280"}),
        # hd follows the short side; 25 s is refused with HD, so 20 s becomes 15 s.
        ("sora-2-pro", "20", "1024x1792", {"duration": 15, "aspect_ratio": "9:16", "hd": True}),
        ("sora-2-pro", "20", "720x1280", {"duration": 25, "aspect_ratio": "9:16", "hd": False}),
        # Veo: 1080p only at 8 s, so 5 s at 1920x1080 becomes 8 s; at 720p the tie goes to 6.
        ("veo3", "5", "1920x1080", {"duration": 8, "aspect_ratio": "16:9", "resolution": "1080p"}),
        ("veo3", "5", "1280x720", {"duration": 6, "aspect_ratio": "16:9", "resolution": "720p"}),
        (
            "doubao-seedance-1-0-lite-t2v",
            "7",
            "1024x1024",
            {"duration": 5, "ratio": "1:1", "resolution": "1080p"},
        ),
        (
            "doubao-seedance-1-0-lite-t2v",
            None,
            "1280x544",
            {"ratio": "21:9", "resolution": "480p"},
        ),
        ("sora-2", None, "auto", {}),
    ],
)
def test_video_fields_map_to_catalog_parameters(
    catalog: Catalog, model: str, seconds: Any, size: str | None, expected: dict[str, Any]
) -> None:
    mapped = map_request(catalog, "video", model=model, seconds=seconds, size=size)
    assert mapped.model == model
    assert mapped.params == expected
    for name in expected:
        assert mapped.origins[f"params.{name}"] in ("seconds", "size")


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        ("gpt-image-1", "1536x1024", {"size": "1536x1024"}),
        ("gpt-image-1", "auto", {"size": "auto"}),
        ("flux-pro", "1024x1024", {"aspect_ratio": "1:1"}),
        ("flux-pro", "1200x1600", {"aspect_ratio": "3:4"}),
        ("nano-banana-2", "4096x4096", {"aspect_ratio": "1:1", "image_size": "4K"}),
        ("seedream-4-0", "2048x1152", {"aspect_ratio": "16:9", "image_size": "2K"}),
        ("nano-banana", "auto", {}),
    ],
)
def test_image_sizes_map_to_catalog_parameters(
    catalog: Catalog, model: str, size: str, expected: dict[str, Any]
) -> None:
    assert map_request(catalog, "image", model=model, size=size).params == expected


def test_explicit_catalog_parameters_win_over_the_size(catalog: Catalog) -> None:
    mapped = map_request(
        catalog, "video", model="veo3", size="1920x1080", direct={"resolution": "720p"}
    )
    assert mapped.params == {"resolution": "720p", "aspect_ratio": "16:9"}
    assert mapped.origins["params.resolution"] == "resolution"


def test_default_models(catalog: Catalog) -> None:
    assert map_request(catalog, "video", model=None).model == "sora-2"
    assert map_request(catalog, "image", model=None).model == "gpt-image-1"


@pytest.mark.parametrize(
    ("kind", "kwargs", "param", "code", "words"),
    [
        ("video", {"model": "sora-2", "size": "1024x1024"}, "size", "invalid_value", ["16:9"]),
        ("video", {"model": "sora-2", "size": "big"}, "size", "invalid_value", ["WIDTHxHEIGHT"]),
        ("video", {"model": "sora-2", "size": "0x720"}, "size", "invalid_value", []),
        ("video", {"model": "sora-2", "seconds": "0"}, "seconds", "invalid_value", []),
        ("video", {"model": "sora-2", "seconds": True}, "seconds", "invalid_value", []),
        ("video", {"model": "sora-2", "seconds": "nan"}, "seconds", "invalid_value", []),
        (
            "video",
            {"model": "sora-2", "seconds": "10", "direct": {"duration": 15}},
            "seconds",
            "invalid_value",
            ["duration"],
        ),
        (
            "video",
            {"model": "sora-2", "direct": {"remix_video_id": "v1"}},
            "remix_video_id",
            "unknown_parameter",
            ["Unrecognized"],
        ),
        (
            "video",
            {"model": "sora-2", "direct": {"hd": True}},
            "hd",
            "unknown_parameter",
            [],
        ),
        (
            "video",
            {"model": "doubao-seedance-1-0-pro", "direct": {"ratio": "adaptive"}, "seconds": 5},
            "ratio",
            "invalid_value",
            ["input image"],
        ),
        ("video", {"model": "flux-pro"}, "model", "model_not_found", ["video"]),
        ("video", {"model": "nope"}, "model", "model_not_found", ["nope", "veo3"]),
        (
            "image",
            {"model": "gpt-image-1", "size": "1920x1080"},
            "size",
            "invalid_value",
            ["1024x1536"],
        ),
        (
            "image",
            {"model": "flux-pro", "direct": {"quality": "high"}},
            "quality",
            "unsupported_parameter",
            ["flux-pro"],
        ),
        (
            "image",
            {"model": "dall-e-3", "direct": {"style": "noir"}},
            "style",
            "invalid_value",
            ["vivid", "natural"],
        ),
        (
            "image",
            {"model": "flux-pro", "images_count": 1},
            "image",
            "invalid_value",
            ["flux-pro"],
        ),
    ],
)
def test_unmappable_values_are_400s_naming_the_openai_field(
    catalog: Catalog,
    kind: Any,
    kwargs: dict[str, Any],
    param: str,
    code: str,
    words: list[str],
) -> None:
    with pytest.raises(OpenAIError) as refused:
        map_request(catalog, kind, **kwargs)
    error = refused.value
    assert error.status_code == 400
    assert error.param == param
    assert error.code == code
    for word in words:
        assert word in error.message


def test_ignored_openai_fields_have_no_effect(catalog: Catalog) -> None:
    mapped = map_request(
        catalog, "image", model="flux-pro", direct={"user": "u-1", "moderation": "low"}
    )
    assert mapped.params == {}


@pytest.mark.parametrize(
    ("params", "size", "seconds"),
    [
        ({"size": "1280x720", "seconds": 8}, "1280x720", "8"),
        ({"aspect_ratio": "16:9", "duration": 10, "hd": False}, "1280x720", "10"),
        ({"aspect_ratio": "9:16", "duration": 15, "hd": True}, "1024x1792", "15"),
        ({"aspect_ratio": "16:9", "resolution": "1080p", "duration": 8}, "1920x1080", "8"),
        ({"ratio": "21:9", "resolution": "720p", "duration": 5}, "1680x720", "5"),
        ({"ratio": "4:3", "resolution": "480p", "duration": 5}, "640x480", "5"),
        ({"ratio": "adaptive", "resolution": "720p"}, "auto", ""),
    ],
)
def test_our_parameters_read_back_as_openai_size_and_seconds(
    params: dict[str, Any], size: str, seconds: str
) -> None:
    assert describe_size(params, []) == size
    assert describe_seconds(params, []) == seconds
