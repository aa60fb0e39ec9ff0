"""Schemas of the OpenAI-compatible surface (`/v1/videos`, `/v1/images/*`, `/v1/models`).

They follow OpenAI's public objects closely enough for the official `openai` package to parse
them unchanged. Request models allow extra fields on purpose: an extra that names one of the
model's catalog parameters (e.g. `aspect_ratio`, `watermark`) is passed through; any other is
refused as an unrecognised argument (see `app.core.openai_compat`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.schemas.common import InputModel
from app.models.schemas.tasks import MAX_BATCH

# OpenAI allows 1..10 images per request; never more than a /api/v1 batch either.
MAX_IMAGES_PER_REQUEST = min(10, MAX_BATCH)

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]


# ----------------------------------------------------------------------------- errors


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class OpenAIErrorResponse(BaseModel):
    """Every error on `/v1/*` (the rest of the API uses `{"error": {code, message, details}}`)."""

    error: OpenAIErrorBody


# ----------------------------------------------------------------------------- videos


class InputReference(InputModel):
    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(default=None, description="An http(s) URL or a data URI.")
    file_id: str | None = Field(default=None, description="Not supported: upload the file.")


class VideoCreateRequest(InputModel):
    """JSON form of `POST /v1/videos` (multipart carries the same fields)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, max_length=100)
    prompt: str = Field(min_length=1, max_length=32_000)
    seconds: str | int | float | None = Field(
        default=None, description="Mapped to the nearest duration the model offers."
    )
    size: str | None = Field(
        default=None,
        max_length=20,
        description="WIDTHxHEIGHT; mapped to the model's size, aspect ratio and resolution.",
    )
    input_reference: str | InputReference | None = Field(
        default=None, description="A reference image: URL or data URI (multipart: a file)."
    )


class VideoRemixRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=32_000)


class VideoError(BaseModel):
    code: str
    message: str


class VideoObject(BaseModel):
    id: str
    object: Literal["video"] = "video"
    model: str
    status: VideoStatus
    progress: int
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    size: str
    seconds: str
    prompt: str | None = None
    remixed_from_video_id: str | None = None
    error: VideoError | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


# ----------------------------------------------------------------------------- images


class ImageRequestFields(InputModel):
    """Fields shared by image generation (JSON) and image edits (multipart)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, max_length=100)
    prompt: str = Field(min_length=1, max_length=32_000)
    n: int | None = Field(default=None, ge=1, le=MAX_IMAGES_PER_REQUEST)
    size: str | None = Field(default=None, max_length=20)
    quality: str | None = Field(default=None, max_length=20)
    style: str | None = Field(default=None, max_length=20)
    response_format: Literal["url", "b64_json"] | None = None
    background: str | None = Field(default=None, max_length=20)
    output_format: str | None = Field(default=None, max_length=20)
    output_compression: int | None = None
    input_fidelity: str | None = Field(default=None, max_length=20)
    moderation: str | None = Field(default=None, max_length=20)
    partial_images: int | None = None
    stream: bool | None = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)


class ImageGenerationRequest(ImageRequestFields):
    pass


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


# ----------------------------------------------------------------------------- models


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # Beyond OpenAI's fields (the SDK keeps extras): what the model makes.
    kind: Literal["video", "image"]
    display_name: str


class ModelObjectList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


def flat_schema(model: type[BaseModel], **overrides: Any) -> dict[str, Any]:
    """A request-body JSON schema without `$defs` (openapi_extra cannot reference them)."""
    schema = model.model_json_schema()
    schema.pop("$defs", None)
    properties = dict(schema.get("properties", {}))
    properties.update(overrides)
    schema["properties"] = properties
    return schema
