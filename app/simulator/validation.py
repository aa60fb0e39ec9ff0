"""Request checks an upstream would make, answered with 400 and the upstream's reason."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from app.simulator.media import fit_size, probe_image


class Rejected(ValueError):
    """The upstream refuses the request; the message is its reason."""


SORA_MODELS = ("sora-2", "sora-2-pro")
SORA_ASPECTS = ("16:9", "9:16")
SORA_DURATIONS = (10, 15, 25)
VEO_RESOLUTIONS = ("720p", "1080p")
SEEDANCE_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive")
SEEDANCE_RESOLUTIONS = ("480p", "720p", "1080p")
OPENAI_SECONDS = ("4", "8", "12")
OPENAI_SIZES = {
    "sora-2": ("720x1280", "1280x720"),
    "sora-2-pro": ("720x1280", "1280x720", "1024x1792", "1792x1024"),
}
IMAGE_SIZES = {"1K": 1024, "2K": 2048, "4K": 4096}
IMAGE_OUTPUT_FORMATS = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "webp": "webp"}
ARK_ROLES = ("first_frame", "last_frame", "reference_image")
ARK_MAX_REFERENCES = 4
GEMINI_ASPECTS = ("16:9", "9:16")
GEMINI_RESOLUTIONS = ("720p", "1080p")
GEMINI_PERSON_GENERATION = ("allow_all", "allow_adult", "dont_allow")
GEMINI_MIME_TYPES = ("image/png", "image/jpeg", "image/webp")
GEMINI_INSTANCE_FIELDS = frozenset({"prompt", "image", "lastFrame", "referenceImages"})
GEMINI_PARAMETER_FIELDS = frozenset(
    {
        "aspectRatio",
        "durationSeconds",
        "negativePrompt",
        "resolution",
        "personGeneration",
        "sampleCount",
        "seed",
    }
)
KLING_MODES = ("std", "pro")
KLING_ASPECTS = ("16:9", "9:16", "1:1")
KLING_DURATIONS = ("5", "10")
KLING_MAX_PROMPT = 2500
_SIZE_RE = re.compile(r"^(\d{1,5})\s*[xX*\u00d7]\s*(\d{1,5})$")
_RATIO_RE = re.compile(r"^(\d{1,3}):(\d{1,3})$")


@dataclass(frozen=True)
class VideoShape:
    model: str
    prompt: str
    aspect: str  # "landscape" | "portrait" | "square"
    seconds: str | None = None
    size: str | None = None


@dataclass(frozen=True)
class ImageRequest:
    model: str
    prompt: str
    n: int
    width: int
    height: int
    fmt: str
    b64: bool


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise Rejected(f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise Rejected(f"{name} must be a string")
    return value


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if value is None:
        value = default
    if value not in allowed:
        raise Rejected(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Rejected(f"{name} must be a boolean")
    return value


def _whole_number(body: dict[str, Any], name: str, default: int | None) -> int | None:
    """An integer sent as a number or a numeric string (both occur in the wild)."""
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool):
        raise Rejected(f"{name} must be a number")
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"-?\d+(\.0+)?", value):
            raise Rejected(f"{name} must be a number; got {value!r}")
        return int(float(value))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    raise Rejected(f"{name} must be a whole number; got {value!r}")


def _image_ref(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://", "data:")):
        raise Rejected(f"{name} must be an http(s) URL or a data URI")


def _aspect(ratio: str) -> str:
    if ratio in {"9:16", "3:4", "2:3", "4:5"}:
        return "portrait"
    if ratio in {"1:1"}:
        return "square"
    return "landscape"


def validate_sora(body: dict[str, Any]) -> VideoShape:
    model = _text(body, "model")
    if model not in SORA_MODELS:
        raise Rejected(f"model must be one of {', '.join(SORA_MODELS)}; got {model!r}")
    prompt = _text(body, "prompt")
    aspect = _choice(body, "aspect_ratio", SORA_ASPECTS, "16:9")
    duration = _whole_number(body, "duration", 10)
    if duration not in SORA_DURATIONS:
        raise Rejected(f"duration must be one of 10, 15, 25; got {body.get('duration')!r}")
    hd = _bool(body, "hd")
    _bool(body, "watermark")
    _bool(body, "private")
    if model == "sora-2" and hd:
        raise Rejected("sora-2 does not support hd; use sora-2-pro")
    if model == "sora-2" and duration == 25:
        raise Rejected("sora-2 does not support 25 second videos; use sora-2-pro")
    if hd and duration == 25:
        raise Rejected("hd is not available for 25 second videos")
    images = body.get("images")
    if images is not None:
        if not isinstance(images, list):
            raise Rejected("images must be a list")
        for index, image in enumerate(images):
            _image_ref(image, f"images[{index}]")
    hook = body.get("notify_hook")
    if hook is not None and (not isinstance(hook, str) or not hook.startswith("http")):
        raise Rejected("notify_hook must be an http(s) URL")
    return VideoShape(model, prompt, _aspect(aspect), seconds=str(duration))


def validate_veo(body: dict[str, Any], *, with_image: bool) -> VideoShape:
    model = _text(body, "model")
    prompt = _text(body, "prompt")
    duration = _whole_number(body, "duration", 8)
    if duration is None or not 1 <= duration <= 20:
        raise Rejected(f"duration must be between 1 and 20 seconds; got {body.get('duration')!r}")
    aspect = _choice(body, "aspect_ratio", SORA_ASPECTS, "16:9")
    _choice(body, "resolution", VEO_RESOLUTIONS, "720p")
    if with_image:
        image = body.get("image")
        if image is None and isinstance(body.get("images"), list) and body["images"]:
            image = body["images"][0]
        if image is None:
            raise Rejected("image is required for image-to-video")
        _image_ref(image, "image")
    return VideoShape(model, prompt, _aspect(aspect), seconds=str(duration))


def validate_seedance(body: dict[str, Any], *, mode: str) -> VideoShape:
    model = _text(body, "model")
    prompt = _text(body, "prompt", required=mode == "text")
    duration = _whole_number(body, "duration", 5)
    if duration is None or not 2 <= duration <= 12:
        raise Rejected(f"duration must be between 2 and 12 seconds; got {body.get('duration')!r}")
    ratio_field = "ratio" if "ratio" in body else "aspect_ratio"
    ratio = _choice(body, ratio_field, SEEDANCE_RATIOS, "16:9")
    _choice(body, "resolution", SEEDANCE_RESOLUTIONS, "720p")
    seed = _whole_number(body, "seed", None)
    if seed is not None and not -1 <= seed <= 2**32 - 1:
        raise Rejected("seed must be between -1 and 4294967295")
    _bool(body, "camera_fixed")
    if mode == "image":
        if body.get("image") is None:
            raise Rejected("image is required for image-to-video")
        _image_ref(body["image"], "image")
    if mode == "frames":
        for name in ("first_frame", "last_frame"):
            if body.get(name) is None:
                raise Rejected(f"{name} is required for frames-to-video")
            _image_ref(body[name], name)
    return VideoShape(model, prompt, _aspect(ratio), seconds=str(duration))


def validate_openai_video(fields: dict[str, Any]) -> VideoShape:
    model = _text(fields, "model", required=False) or "sora-2"
    if model not in OPENAI_SIZES:
        raise Rejected(f"model must be one of {', '.join(OPENAI_SIZES)}; got {model!r}")
    prompt = _text(fields, "prompt")
    seconds = fields.get("seconds", "4")
    seconds = str(seconds) if isinstance(seconds, (int, str)) else seconds
    if seconds not in OPENAI_SECONDS:
        raise Rejected(f"seconds must be one of {', '.join(OPENAI_SECONDS)}; got {seconds!r}")
    size = _choice(fields, "size", OPENAI_SIZES[model], "720x1280")
    width, height = (int(part) for part in size.split("x"))
    aspect = "portrait" if height > width else "landscape"
    return VideoShape(model, prompt, aspect, seconds=seconds, size=size)


def image_dimensions(
    fields: dict[str, Any], cap: int, fallback: tuple[int, int]
) -> tuple[int, int]:
    size = fields.get("size")
    aspect_ratio = fields.get("aspect_ratio")
    image_size = fields.get("image_size")
    if image_size is not None and image_size not in IMAGE_SIZES:
        raise Rejected(f"image_size must be one of 1K, 2K, 4K; got {image_size!r}")
    long_side = IMAGE_SIZES.get(image_size or "1K", 1024)
    if size not in (None, "", "auto"):
        match = _SIZE_RE.match(str(size))
        if match is None:
            raise Rejected(f"size must look like 1024x1024 or be auto; got {size!r}")
        width, height = int(match.group(1)), int(match.group(2))
        if not (1 <= width <= 8192 and 1 <= height <= 8192):
            raise Rejected(f"size out of range: {size!r}")
    elif aspect_ratio not in (None, "", "auto", "Auto"):
        match = _RATIO_RE.match(str(aspect_ratio))
        if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
            raise Rejected(f"aspect_ratio must look like 16:9; got {aspect_ratio!r}")
        across, down = int(match.group(1)), int(match.group(2))
        scale = long_side / max(across, down)
        width, height = round(across * scale), round(down * scale)
    elif image_size is not None:
        width = height = long_side
    else:
        width, height = fallback
    return fit_size(width, height, cap)


def validate_image_request(
    fields: dict[str, Any], cap: int, fallback: tuple[int, int] = (1024, 1024)
) -> ImageRequest:
    model = _text(fields, "model")
    prompt = _text(fields, "prompt")
    n = _whole_number(fields, "n", 1)
    if n is None or not 1 <= n <= 10:
        raise Rejected(f"n must be between 1 and 10; got {fields.get('n')!r}")
    response_format = _choice(fields, "response_format", ("url", "b64_json"), "url")
    output_format = fields.get("output_format") or "png"
    if output_format not in IMAGE_OUTPUT_FORMATS:
        raise Rejected(f"output_format must be png, jpeg or webp; got {output_format!r}")
    width, height = image_dimensions(fields, cap, fallback)
    return ImageRequest(
        model=model,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        fmt=IMAGE_OUTPUT_FORMATS[output_format],
        b64=response_format == "b64_json",
    )


# ----- official provider APIs -------------------------------------------------------------------


def _base64_image(value: Any, name: str) -> None:
    """Bare base64 (no `data:` prefix) that decodes to a real image."""
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"{name} must be base64-encoded image data")
    try:
        data = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(f"{name} is not valid base64") from None
    if probe_image(data) is None:
        raise Rejected(f"{name} is not a valid image")


def _data_uri_image(value: str, name: str) -> None:
    header, _, payload = value.partition(",")
    if ";base64" not in header.lower():
        raise Rejected(f"{name} must be a base64 data URI")
    _base64_image(payload, name)


def _seed(body: dict[str, Any], name: str = "seed") -> int | None:
    seed = _whole_number(body, name, None)
    if seed is not None and not -1 <= seed <= 2**32 - 1:
        raise Rejected(f"{name} must be between -1 and 4294967295")
    return seed


def validate_ark(body: dict[str, Any]) -> tuple[VideoShape, dict[str, Any]]:
    """ByteDance Ark `contents/generations/tasks`: the prompt and images live in `content`."""
    model = _text(body, "model")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        raise Rejected("content must be a non-empty list")
    prompt = ""
    roles: list[str | None] = []
    for index, item in enumerate(content):
        where = f"content[{index}]"
        if not isinstance(item, dict):
            raise Rejected(f"{where} must be an object")
        kind = item.get("type")
        if kind == "text":
            if prompt:
                raise Rejected("content may hold only one text item")
            text = item.get("text")
            if not isinstance(text, str) or not text.strip():
                raise Rejected(f"{where}.text must be a non-empty string")
            prompt = text
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            _image_ref(url, f"{where}.image_url.url")
            if isinstance(url, str) and url.startswith("data:"):
                _data_uri_image(url, f"{where}.image_url.url")
            role = item.get("role")
            if role is not None and role not in ARK_ROLES:
                raise Rejected(f"{where}.role must be one of {', '.join(ARK_ROLES)}")
            roles.append(role)
        else:
            raise Rejected(f"{where}.type must be text or image_url")
    if not prompt and not roles:
        raise Rejected("content must hold a text prompt or an image")
    references = roles.count("reference_image")
    frames = [role for role in roles if role != "reference_image"]
    if references and frames:
        raise Rejected("reference_image cannot be combined with first_frame or last_frame")
    if references > ARK_MAX_REFERENCES:
        raise Rejected(f"at most {ARK_MAX_REFERENCES} reference images")
    if frames.count("first_frame") > 1 or frames.count("last_frame") > 1 or len(frames) > 2:
        raise Rejected("at most one first_frame and one last_frame")
    if "last_frame" in frames and len(frames) < 2:
        raise Rejected("last_frame needs a first_frame")
    resolution = _choice(body, "resolution", SEEDANCE_RESOLUTIONS, "720p")
    default_ratio = "adaptive" if frames else "16:9"
    ratio = _choice(body, "ratio", SEEDANCE_RATIOS, default_ratio)
    duration = _whole_number(body, "duration", 5)
    if duration is None or not 2 <= duration <= 12:
        raise Rejected(f"duration must be between 2 and 12 seconds; got {body.get('duration')!r}")
    seed = _seed(body)
    camera_fixed = _bool(body, "camera_fixed")
    watermark = _bool(body, "watermark")
    hook = body.get("callback_url")
    if hook is not None and (not isinstance(hook, str) or not hook.startswith("http")):
        raise Rejected("callback_url must be an http(s) URL")
    echo = {
        "resolution": resolution,
        "ratio": ratio,
        "duration": duration,
        "seed": seed if seed is not None and seed >= 0 else 11,
        "camera_fixed": camera_fixed,
        "watermark": watermark,
    }
    shape = VideoShape(model, prompt, _aspect(ratio), seconds=str(duration))
    return shape, echo


def _gemini_image(value: Any, name: str) -> None:
    if not isinstance(value, dict):
        raise Rejected(f"{name} must be an object with bytesBase64Encoded and mimeType")
    unknown = set(value) - {"bytesBase64Encoded", "mimeType"}
    if unknown:
        raise Rejected(f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}")
    _base64_image(value.get("bytesBase64Encoded"), f"{name}.bytesBase64Encoded")
    if value.get("mimeType") not in GEMINI_MIME_TYPES:
        raise Rejected(f"{name}.mimeType must be one of {', '.join(GEMINI_MIME_TYPES)}")


def validate_gemini(model: str, body: dict[str, Any]) -> tuple[VideoShape, dict[str, Any]]:
    """Gemini `predictLongRunning` for Veo: one instance and a few known parameters."""
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1:
        raise Rejected("instances must hold exactly one instance")
    instance = instances[0]
    if not isinstance(instance, dict):
        raise Rejected("instances[0] must be an object")
    unknown = set(instance) - GEMINI_INSTANCE_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise Rejected(
            f"Invalid JSON payload received. Unknown name \"{name}\" at 'instances[0]': "
            "Cannot find field."
        )
    prompt = instance.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Rejected("instances[0].prompt is required")
    if "image" in instance:
        _gemini_image(instance["image"], "instances[0].image")
    if "lastFrame" in instance:
        if "image" not in instance:
            raise Rejected("instances[0].lastFrame needs instances[0].image")
        _gemini_image(instance["lastFrame"], "instances[0].lastFrame")
    references = instance.get("referenceImages")
    if references is not None:
        if not isinstance(references, list) or not 1 <= len(references) <= 3:
            raise Rejected("instances[0].referenceImages must hold 1 to 3 images")
        for index, reference in enumerate(references):
            where = f"instances[0].referenceImages[{index}]"
            if not isinstance(reference, dict):
                raise Rejected(f"{where} must be an object")
            _gemini_image(reference.get("image"), f"{where}.image")
            if reference.get("referenceType", "asset") not in ("asset", "style"):
                raise Rejected(f"{where}.referenceType must be asset or style")
    parameters = body.get("parameters", {})
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise Rejected("parameters must be an object")
    unknown = set(parameters) - GEMINI_PARAMETER_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise Rejected(
            f"Invalid JSON payload received. Unknown name \"{name}\" at 'parameters': "
            "Cannot find field."
        )
    aspect = _choice(parameters, "aspectRatio", GEMINI_ASPECTS, "16:9")
    _choice(parameters, "resolution", GEMINI_RESOLUTIONS, "720p")
    duration = _whole_number(parameters, "durationSeconds", 8)
    if duration is None or not 4 <= duration <= 8:
        raise Rejected(
            f"durationSeconds must be between 4 and 8; got {parameters.get('durationSeconds')!r}"
        )
    if parameters.get("negativePrompt") is not None:
        _text(parameters, "negativePrompt", required=False)
    if parameters.get("personGeneration") is not None:
        _choice(parameters, "personGeneration", GEMINI_PERSON_GENERATION, "allow_all")
    samples = _whole_number(parameters, "sampleCount", 1)
    if samples is None or not 1 <= samples <= 4:
        raise Rejected("sampleCount must be between 1 and 4")
    _seed(parameters)
    echo = {"parameters": dict(parameters)}
    return VideoShape(model, prompt, _aspect(aspect), seconds=str(duration)), echo


def _kling_image(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"{name} must be an image URL or base64 data")
    if value.startswith(("http://", "https://")):
        return
    if value.startswith("data:"):
        # Kling's documented rule: base64 without any `data:` prefix.
        raise Rejected(f"{name}: base64 must not carry a data: prefix")
    _base64_image(value, name)


def validate_kling(body: dict[str, Any], *, mode: str) -> tuple[VideoShape, dict[str, Any]]:
    """Kling `text2video` / `image2video` (`mode`)."""
    model = _text(body, "model_name", required=False) or "kling-v1"
    prompt = _text(body, "prompt", required=mode == "text2video")
    if len(prompt) > KLING_MAX_PROMPT:
        raise Rejected(f"prompt must be at most {KLING_MAX_PROMPT} characters")
    negative = _text(body, "negative_prompt", required=False)
    if len(negative) > KLING_MAX_PROMPT:
        raise Rejected(f"negative_prompt must be at most {KLING_MAX_PROMPT} characters")
    cfg_scale = body.get("cfg_scale")
    if cfg_scale is not None and (
        isinstance(cfg_scale, bool)
        or not isinstance(cfg_scale, int | float)
        or not 0 <= cfg_scale <= 1
    ):
        raise Rejected("cfg_scale must be a number between 0 and 1")
    kling_mode = _choice(body, "mode", KLING_MODES, "std")
    duration = body.get("duration", "5")
    duration = (
        str(duration) if isinstance(duration, int) and not isinstance(duration, bool) else duration
    )
    if duration not in KLING_DURATIONS:
        raise Rejected(f"duration must be one of 5, 10; got {body.get('duration')!r}")
    aspect = "16:9"
    if mode == "text2video":
        aspect = _choice(body, "aspect_ratio", KLING_ASPECTS, "16:9")
    else:
        if body.get("image") is None:
            raise Rejected("image is required for image2video")
        _kling_image(body["image"], "image")
        if body.get("image_tail") is not None:
            _kling_image(body["image_tail"], "image_tail")
    hook = body.get("callback_url")
    if hook is not None and (not isinstance(hook, str) or not hook.startswith("http")):
        raise Rejected("callback_url must be an http(s) URL")
    echo = {"endpoint": mode, "duration": duration, "mode": kling_mode}
    return VideoShape(model, prompt, _aspect(aspect), seconds=duration), echo
