"""`/v1/videos`: OpenAI's video API over our task engine (same quotas, encryption, request log
and history as `/api/v1/videos`; a video's id is its task id there too)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.api.deps import NoNulParameters, SessionDep, SettingsDep
from app.api.openai.deps import IdempotencyHeader, OpenAIPrincipal, UpstreamKeyHeader
from app.api.openai.errors import (
    OPENAI_CREATE_RESPONSES,
    OPENAI_ERROR_RESPONSES,
    OpenAIRoute,
    openai_error_doc,
    openai_error_response,
)
from app.api.openai.forms import media_type, read_form, read_json_object, read_upload
from app.api.v1.generations import ContextDep, RuntimeDep
from app.clients.base import TaskStatus
from app.core import openai_compat as compat
from app.core.config import Settings
from app.core.media.delivery import deliver_media
from app.core.openai_compat import OpenAIError
from app.core.tasks import service
from app.core.tasks.results import delete_keys
from app.core.tasks.runtime import TaskRuntime
from app.db.session import commit
from app.models.schemas.openai import (
    InputReference,
    VideoCreateRequest,
    VideoDeleted,
    VideoList,
    VideoObject,
    VideoRemixRequest,
    flat_schema,
)

router = APIRouter(
    route_class=OpenAIRoute, responses=OPENAI_ERROR_RESPONSES, dependencies=[NoNulParameters]
)

_BINARY = {"type": "string", "format": "binary"}
_CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": flat_schema(
                    VideoCreateRequest,
                    input_reference={
                        "anyOf": [
                            {"type": "string"},
                            flat_schema(InputReference),
                            {"type": "null"},
                        ]
                    },
                )
            },
            "multipart/form-data": {
                "schema": flat_schema(
                    VideoCreateRequest,
                    input_reference={"anyOf": [_BINARY, {"type": "string"}]},
                )
            },
        },
    }
}


def _poll_after_ms(settings: Settings) -> str:
    # Polling us faster than the worker polls the upstream gains nothing.
    return str(int(min(max(settings.polling_interval * 1000, 100), 5000)))


async def _read_create(request: Request, settings: Settings) -> tuple[dict[str, Any], list[str]]:
    """The create's fields and, for a multipart upload, the reference image as a data URI."""
    kind = media_type(request)
    if kind == "application/json":
        return await read_json_object(request), []
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise OpenAIError(
            "Send the request as application/json or multipart/form-data",
            status_code=415,
            code="unsupported_media_type",
        )
    parsed = await read_form(request, settings, max_files=1)
    try:
        uploads = [u for name, files in parsed.files.items() for u in files]
        if any(name != "input_reference" for name in parsed.files):
            unknown = next(name for name in parsed.files if name != "input_reference")
            raise OpenAIError(
                f"Unrecognized file field: {unknown}", code="unknown_parameter", param=unknown
            )
        images = [await read_upload(u, settings, "input_reference") for u in uploads]
    finally:
        await parsed.close()
    if images and "input_reference" in parsed.fields:
        raise OpenAIError(
            "Give input_reference once: as a file or as a URL", param="input_reference"
        )
    return parsed.fields, images


def _reference_url(value: str | InputReference | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, InputReference):
        if value.file_id:
            raise OpenAIError(
                "input_reference.file_id is not supported: upload the file or give image_url",
                code="unsupported_parameter",
                param="input_reference",
            )
        if not value.image_url:
            raise OpenAIError("input_reference needs image_url", param="input_reference")
        value = value.image_url
    return [value]


@router.post(
    "",
    response_model=VideoObject,
    responses=OPENAI_CREATE_RESPONSES,
    summary="Create a video (OpenAI compatible)",
    description=(
        "JSON or multipart. `seconds` and `size` are mapped onto the model's catalog "
        "parameters (nearest allowed duration; aspect ratio and resolution from the size). "
        "Extra fields that name one of the model's catalog parameters are passed through."
    ),
    openapi_extra=_CREATE_BODY,
)
async def create_video(
    request: Request,
    principal: OpenAIPrincipal,
    db: SessionDep,
    runtime: RuntimeDep,
    ctx: ContextDep,
    settings: SettingsDep,
    x_api_key: UpstreamKeyHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> VideoObject:
    fields, uploaded = await _read_create(request, settings)
    try:
        body = VideoCreateRequest.model_validate(fields)
    except ValidationError as exc:
        raise compat.translate_pydantic(exc, {}) from None
    images = _reference_url(body.input_reference)
    mapped = compat.map_request(
        runtime.catalog,
        "video",
        model=body.model,
        seconds=body.seconds,
        size=body.size,
        direct=body.model_extra or {},
        images_count=len(images) + len(uploaded),
        image_field="input_reference",
    )
    task_body = compat.build_task_create(mapped, prompt=body.prompt, images=images)
    with compat.openai_fields(mapped.origins):
        result = await service.create_tasks(
            db,
            ctx,
            user_id=principal.user_id,
            kind="video",
            body=task_body,
            upstream_key=x_api_key,
            idempotency_key=idempotency_key,
            uploaded_images=uploaded,
        )
    await commit(db)
    return (await compat.video_objects(db, runtime.encryptor, result.tasks))[0]


@router.get("", response_model=VideoList, summary="List your videos, newest first")
async def list_videos(
    principal: OpenAIPrincipal,
    db: SessionDep,
    runtime: RuntimeDep,
    after: Annotated[str | None, Query(max_length=64, description="The last id seen")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> VideoList:
    tasks, has_more = await compat.list_videos(
        db, principal.user_id, after=after, limit=limit, order=order
    )
    data = await compat.video_objects(db, runtime.encryptor, tasks)
    return VideoList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/{video_id}", response_model=VideoObject, summary="One video")
async def retrieve_video(
    video_id: str,
    principal: OpenAIPrincipal,
    db: SessionDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
    response: Response,
) -> VideoObject:
    task = await service.get_task(db, principal.user_id, video_id, "video")
    if not TaskStatus(task.status).is_terminal:
        # The openai package's poll helpers wait this long between retrievals.
        response.headers["openai-poll-after-ms"] = _poll_after_ms(settings)
    return (await compat.video_objects(db, runtime.encryptor, [task]))[0]


@router.delete("/{video_id}", response_model=VideoDeleted, summary="Delete (cancels if running)")
async def delete_video(
    video_id: str,
    principal: OpenAIPrincipal,
    db: SessionDep,
    runtime: RuntimeDep,
    ctx: ContextDep,
) -> VideoDeleted:
    task = await service.get_task(db, principal.user_id, video_id, "video")
    removed: list[str] = []
    await service.delete_task(db, ctx, task, removed)
    await commit(db)
    await delete_keys(runtime.storage, removed)
    return VideoDeleted(id=video_id)


def _openai_shaped(response: Response) -> Response:
    """`media_response` renders a 416 itself, in the /api/v1 shape."""
    if isinstance(response, JSONResponse) and response.status_code >= 400:
        error = json.loads(bytes(response.body)).get("error", {})
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return openai_error_response(
            response.status_code,
            str(error.get("message", "")),
            code=error.get("code"),
            headers=headers,
        )
    return response


async def _serve(
    request: Request,
    runtime: TaskRuntime,
    db: SessionDep,
    user_id: str,
    video_id: str,
    variant: str,
) -> Response:
    if variant == "spritesheet":
        raise OpenAIError(
            "variant 'spritesheet' is not available: use 'video' or 'thumbnail'",
            code="unsupported_parameter",
            param="variant",
        )
    task = await service.get_task(db, user_id, video_id, "video")
    if task.status != TaskStatus.COMPLETED.value:
        shown = "failed" if task.status == TaskStatus.CANCELLED.value else task.status
        raise OpenAIError(
            f"Video is not ready: its status is {shown}", code="video_not_ready", param="video_id"
        )
    task, media = await service.get_media(db, user_id, video_id, None, "video")
    await commit(db)  # don't hold a transaction while streaming
    if variant == "thumbnail":
        if not media.thumbnail_key:
            raise OpenAIError(
                "This video has no thumbnail", status_code=404, code="thumbnail_not_found"
            )
        key, size, content_type = media.thumbnail_key, media.thumbnail_bytes, "image/jpeg"
        etag, filename = f"{media.sha256}-thumb", f"video-{task.id[:8]}.jpg"
    else:
        key, size = media.storage_key or "", media.bytes
        content_type = media.content_type or "video/mp4"
        etag, filename = media.sha256 or media.id, f"video-{task.id[:8]}.mp4"
    response = await deliver_media(
        runtime.storage,
        key,
        size=size,
        content_type=content_type,
        etag=etag,
        request_headers=request.headers,
        filename=filename,
        disposition="attachment",
        method=request.method,
    )
    return _openai_shaped(response)


@router.head("/{video_id}/content", include_in_schema=False)
@router.get(
    "/{video_id}/content",
    summary="The MP4 (or `variant=thumbnail`: a JPEG poster); HTTP Range supported",
    response_class=Response,
    responses={
        200: {
            "description": "The file",
            "content": {
                "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        206: {"description": "The requested byte range (`Range` header)"},
        302: {"description": "With S3_PRESIGN: `Location` is a short-lived URL of the file"},
        304: {"description": "Not modified (`If-None-Match` matched the ETag)"},
        416: openai_error_doc("The `Range` cannot be satisfied"),
    },
)
async def download_content(
    request: Request,
    video_id: str,
    principal: OpenAIPrincipal,
    db: SessionDep,
    runtime: RuntimeDep,
    variant: Literal["video", "thumbnail", "spritesheet"] = "video",
) -> Response:
    return await _serve(request, runtime, db, principal.user_id, video_id, variant)


@router.post(
    "/{video_id}/remix",
    response_model=VideoObject,
    responses=OPENAI_CREATE_RESPONSES,
    summary="Remix a completed video with a new prompt (where the upstream supports it)",
)
async def remix_video(
    video_id: str,
    body: VideoRemixRequest,
    principal: OpenAIPrincipal,
    db: SessionDep,
    runtime: RuntimeDep,
    ctx: ContextDep,
    x_api_key: UpstreamKeyHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> VideoObject:
    plan = await compat.plan_remix(db, runtime.encryptor, principal.user_id, video_id)
    mapped = compat.MappedRequest(model=plan.source.model, params=plan.params)
    task_body = compat.build_task_create(mapped, prompt=body.prompt)
    remix_ctx = dataclasses.replace(ctx, validate=compat.remix_validator(ctx.validate, plan.source))
    with compat.openai_fields(mapped.origins):
        result = await service.create_tasks(
            db,
            remix_ctx,
            user_id=principal.user_id,
            kind="video",
            body=task_body,
            # The source lives under the upstream account that made it.
            upstream_key=x_api_key or plan.upstream_key,
            idempotency_key=idempotency_key,
        )
    await commit(db)
    return (await compat.video_objects(db, runtime.encryptor, result.tasks))[0]
