"""`/api/v1/videos` and `/api/v1/images`: one router shape, built once per kind.

Handlers stay thin: they parse, call `app.core.tasks.service`, and shape the answer.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.deps import CurrentUser, EncryptorDep, NoNulParameters, SessionDep, SettingsDep
from app.clients.base import MediaKind, TaskStatus
from app.core.config import Settings
from app.core.errors import (
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
    error_response_doc,
    error_responses,
)
from app.core.media.delivery import bytes_response, deliver_media
from app.core.tasks import service
from app.core.tasks.payload import data_uri
from app.core.tasks.posters import ensure_poster
from app.core.tasks.runtime import TaskRuntime
from app.core.tasks.service import ListQuery, TaskContext
from app.db.session import commit
from app.models.schemas.common import UtcDatetime
from app.models.schemas.tasks import (
    MAX_BATCH,
    MAX_REFERENCE_IMAGES,
    TaskCreate,
    TaskOut,
    TaskPage,
    TaskUpdate,
)

MAX_WAIT_SECONDS = 120
# Every reference image a model may take, plus one mask.
MAX_EDIT_FILES = MAX_REFERENCE_IMAGES + 1
_BINARY = {"type": "string", "format": "binary"}
# The handler reads the form itself (files and fields together); this documents it.
_EDIT_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model", "prompt", "image"],
                    "properties": {
                        "model": {"type": "string", "maxLength": 100},
                        "prompt": {"type": "string", "maxLength": 32_000},
                        "title": {"type": "string", "maxLength": 200},
                        "n": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH},
                        "webhook_url": {"type": "string", "maxLength": 2048},
                        "tags": {"type": "string", "description": "Comma-separated tags."},
                        "params": {
                            "type": "string",
                            "description": "The model's parameters as a JSON object; any "
                            "other field is taken as a parameter too.",
                        },
                        "image": {
                            "type": "array",
                            "items": _BINARY,
                            "maxItems": MAX_REFERENCE_IMAGES,
                            "description": "PNG, JPEG or WebP reference images.",
                        },
                        "mask": _BINARY,
                    },
                }
            }
        },
    }
}


async def get_runtime(request: Request) -> TaskRuntime:
    runtime: TaskRuntime = request.app.state.tasks
    return runtime


RuntimeDep = Annotated[TaskRuntime, Depends(get_runtime)]


async def get_task_context(runtime: RuntimeDep) -> TaskContext:
    return runtime.context()


ContextDep = Annotated[TaskContext, Depends(get_task_context)]
UpstreamKeyHeader = Annotated[
    str | None,
    Header(
        alias="X-API-Key",
        description="Bring your own upstream key for this request (kept encrypted).",
    ),
]
IdempotencyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Same key + same body within 24 h = same task."),
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error_response_doc(404, "No such task (or media) of yours")
}
# What a create can answer besides the task(s).
CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": TaskOut | list[TaskOut],
        "description": "An Idempotency-Key replay, or `?wait=` and every task ended",
    },
    **error_responses(400),
    409: error_response_doc(409, "Idempotency-Key already used with a different request"),
    413: error_response_doc(413, "A reference image is larger than UPLOAD_MAX_BYTES"),
    415: error_response_doc(415, "A reference image is not PNG, JPEG or WebP"),
}
# Result files are streamed as stored (any image or video type), with Range and ETag support.
MEDIA_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file",
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "video/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    206: {"description": "The requested byte range (`Range` header)"},
    302: {"description": "With S3_PRESIGN: `Location` is a short-lived URL of the file"},
    304: {"description": "Not modified (`If-None-Match` matched the ETag)"},
    **NOT_FOUND,
    416: error_response_doc(416, "The `Range` cannot be satisfied"),
}
THUMBNAIL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **MEDIA_RESPONSES,
    200: {
        "description": "A JPEG poster",
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
    },
}

WaitQuery = Annotated[
    float | None,
    Query(ge=0, le=MAX_WAIT_SECONDS, description="Block up to this many seconds for the result."),
]


async def _respond_created(
    db: SessionDep,
    runtime: TaskRuntime,
    result: service.CreateResult,
    wait: float | None,
    single: bool,
) -> JSONResponse:
    await commit(db)
    tasks = result.tasks
    if wait:
        await runtime.wait_for([t.id for t in tasks], wait, just_created=not result.replayed)
        for task in tasks:
            await db.refresh(task)
    outs = await service.tasks_out(db, runtime.encryptor, tasks)
    done = all(TaskStatus(t.status).is_terminal for t in tasks)
    status_code = 200 if (wait and done) or result.replayed else 202
    body: Any = (
        outs[0].model_dump(mode="json") if single else [o.model_dump(mode="json") for o in outs]
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return JSONResponse(body, status_code=status_code, headers=headers)


def _split_csv(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return items or None


def _statuses(values: list[str] | None) -> list[str] | None:
    items = _split_csv(values)
    if items is None:
        return None
    allowed = {s.value for s in TaskStatus}
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise ValidationFailed(
            f"Unknown status {unknown[0]!r}",
            details=[{"field": "status", "message": "unknown status", "allowed": sorted(allowed)}],
        )
    return items


async def _read_upload(upload: UploadFile, max_bytes: int, field: str) -> str:
    data = await upload.read(max_bytes + 1)
    content_type = service.check_reference_image(data, field, max_bytes)
    return data_uri(data, content_type)


async def _parse_form(request: Request, settings: Settings) -> FormData:
    """The multipart body, with the parser's refusals as our typed errors (not a bare 400)."""
    try:
        return await request.form(
            max_files=MAX_EDIT_FILES, max_fields=100, max_part_size=settings.upload_max_bytes
        )
    except StarletteHTTPException as exc:
        reason = str(exc.detail)
        if "Too many files" in reason:
            raise ValidationFailed(
                f"At most {MAX_REFERENCE_IMAGES} images and one mask",
                details=[{"field": "image", "message": reason}],
            ) from exc
        if "maximum size" in reason:
            raise PayloadTooLarge(
                f"A form field is larger than {settings.upload_max_bytes} bytes",
                details=[{"field": "form", "message": reason}],
            ) from exc
        raise


def build_router(kind: MediaKind) -> APIRouter:
    router = APIRouter(responses=error_responses(401, 422), dependencies=[NoNulParameters])
    noun = kind

    @router.post(
        "",
        status_code=202,
        response_model=TaskOut | list[TaskOut],
        responses=CREATE_RESPONSES,
        summary=f"Create a {noun} generation task",
        description=(
            f"Validates against the model catalog and queues `n` {noun} tasks. Answers 202 with "
            "the task (a list of tasks when `n > 1`); with `?wait=SECONDS` answers when the "
            "task ends (200) or the wait runs out (202)."
        ),
    )
    async def create(
        body: TaskCreate,
        user: CurrentUser,
        db: SessionDep,
        runtime: RuntimeDep,
        ctx: ContextDep,
        wait: WaitQuery = None,
        x_api_key: UpstreamKeyHeader = None,
        idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        result = await service.create_tasks(
            db,
            ctx,
            user_id=user.id,
            kind=kind,
            body=body,
            upstream_key=x_api_key,
            idempotency_key=idempotency_key,
        )
        return await _respond_created(db, runtime, result, wait, single=body.n == 1)

    if kind == "image":

        @router.post(
            "/edits",
            status_code=202,
            response_model=TaskOut | list[TaskOut],
            responses=CREATE_RESPONSES,
            summary="Edit images: reference images (and an optional mask) as multipart",
            openapi_extra=_EDIT_FORM,
        )
        async def create_edit(
            request: Request,
            user: CurrentUser,
            db: SessionDep,
            runtime: RuntimeDep,
            ctx: ContextDep,
            settings: SettingsDep,
            wait: WaitQuery = None,
            x_api_key: UpstreamKeyHeader = None,
            idempotency_key: IdempotencyHeader = None,
        ) -> JSONResponse:
            form = await _parse_form(request, settings)
            try:
                fields: dict[str, Any] = {}
                uploads: list[UploadFile] = []
                mask_upload: UploadFile | None = None
                for name, value in form.multi_items():
                    if isinstance(value, str):
                        fields[name] = value
                    elif name in ("image", "image[]", "images", "images[]"):
                        uploads.append(value)  # type: ignore[arg-type]
                    elif name == "mask":
                        mask_upload = value  # type: ignore[assignment]
                if not uploads:
                    raise ValidationFailed(
                        "At least one reference image is required",
                        details=[{"field": "image", "message": "upload one or more images"}],
                    )
                images = [
                    await _read_upload(u, settings.upload_max_bytes, f"image[{i}]")
                    for i, u in enumerate(uploads)
                ]
                mask = (
                    await _read_upload(mask_upload, settings.upload_max_bytes, "mask")
                    if mask_upload is not None
                    else None
                )
            finally:
                await form.close()  # spooled upload files
            body = _edit_body(fields)
            result = await service.create_tasks(
                db,
                ctx,
                user_id=user.id,
                kind="image",
                body=body,
                upstream_key=x_api_key,
                idempotency_key=idempotency_key,
                uploaded_images=images,
                uploaded_mask=mask,
            )
            return await _respond_created(db, runtime, result, wait, body.n == 1)

    @router.get("", response_model=TaskPage, summary=f"Search and browse {noun} history")
    async def list_(
        user: CurrentUser,
        db: SessionDep,
        ctx: ContextDep,
        encryptor: EncryptorDep,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        size: Annotated[int, Query(ge=1, le=100)] = 20,
        search: Annotated[str | None, Query(max_length=200)] = None,
        model: str | None = None,
        status: Annotated[
            list[str] | None,
            Query(description="queued, in_progress, completed, failed, cancelled (repeat or CSV)"),
        ] = None,
        created_after: UtcDatetime | None = None,
        created_before: UtcDatetime | None = None,
        tags: Annotated[list[str] | None, Query()] = None,
        favorite: bool | None = None,
        sort: str = "-created",
    ) -> TaskPage:
        query = ListQuery(
            page=page,
            size=size,
            search=search,
            model=model,
            status=_statuses(status),
            created_after=created_after,
            created_before=created_before,
            tags=_split_csv(tags),
            favorite=favorite,
            sort=sort,
        )
        listed = await service.list_tasks(db, ctx, user.id, kind, query)
        return TaskPage(
            items=await service.tasks_out(db, encryptor, listed.tasks),
            total=listed.total,
            page=page,
            size=size,
            pages=service.page_count(listed.total, size),
            total_is_estimate=listed.total_is_estimate,
        )

    @router.get("/{task_id}", response_model=TaskOut, responses=NOT_FOUND)
    async def get(
        task_id: str, user: CurrentUser, db: SessionDep, encryptor: EncryptorDep
    ) -> TaskOut:
        task = await service.get_task(db, user.id, task_id, kind)
        return (await service.tasks_out(db, encryptor, [task]))[0]

    @router.patch(
        "/{task_id}",
        response_model=TaskOut,
        summary="Rename, tag, favourite",
        responses={**NOT_FOUND, **error_responses(400)},
    )
    async def patch(
        task_id: str,
        body: TaskUpdate,
        user: CurrentUser,
        db: SessionDep,
        ctx: ContextDep,
    ) -> TaskOut:
        task = await service.get_task(db, user.id, task_id, kind)
        await service.update_task(db, ctx, task, body)
        await commit(db)  # before the answer: a client's next request must see the change
        return (await service.tasks_out(db, ctx.encryptor, [task]))[0]

    @router.delete(
        "/{task_id}",
        status_code=204,
        response_class=Response,
        summary="Delete (cancels if running)",
        responses=NOT_FOUND,
    )
    async def delete(
        task_id: str, user: CurrentUser, db: SessionDep, runtime: RuntimeDep, ctx: ContextDep
    ) -> Response:
        task = await service.get_task(db, user.id, task_id, kind)
        removed: list[str] = []
        await service.delete_task(db, ctx, task, removed)
        await commit(db)
        await _delete_files(runtime, removed)
        return Response(status_code=204)

    @router.post("/{task_id}/cancel", response_model=TaskOut, responses=NOT_FOUND)
    async def cancel(task_id: str, user: CurrentUser, db: SessionDep, ctx: ContextDep) -> TaskOut:
        task = await service.get_task(db, user.id, task_id, kind)
        await service.cancel_task(db, ctx, task)
        await commit(db)
        await db.refresh(task)
        return (await service.tasks_out(db, ctx.encryptor, [task]))[0]

    @router.post("/{task_id}/retry", status_code=202, response_model=TaskOut, responses=NOT_FOUND)
    async def retry(task_id: str, user: CurrentUser, db: SessionDep, ctx: ContextDep) -> TaskOut:
        task = await service.get_task(db, user.id, task_id, kind)
        clone = await service.retry_task(db, ctx, task)
        await commit(db)
        return (await service.tasks_out(db, ctx.encryptor, [clone]))[0]

    async def _serve(
        request: Request,
        runtime: TaskRuntime,
        db: SessionDep,
        user_id: str,
        task_id: str,
        media_id: str | None,
        thumbnail: bool,
        download: bool,
    ) -> Response:
        task, media = await service.get_media(db, user_id, task_id, media_id, kind)
        await commit(db)  # don't hold a transaction while streaming
        if thumbnail:
            poster = await ensure_poster(runtime.database, runtime.storage, media)
            if poster is None:
                raise NotFound("This media has no thumbnail", code="thumbnail_not_found")
            etag = f"{media.sha256}-thumb"
            if poster.key is None:
                return bytes_response(poster.data or b"", content_type="image/jpeg", etag=etag)
            key, size, content_type = poster.key, poster.size, "image/jpeg"
        else:
            key, size, content_type = (
                media.storage_key or "",
                media.bytes,
                media.content_type or "application/octet-stream",
            )
            etag = media.sha256 or media.id
        from app.core.media.inspect import extension_for

        filename = f"{task.kind}-{task.id[:8]}-{media.position}{extension_for(content_type)}"
        return await deliver_media(
            runtime.storage,
            key,
            size=size,
            content_type=content_type,
            etag=etag,
            request_headers=request.headers,
            filename=filename,
            disposition="attachment" if download else "inline",
            method=request.method,
        )

    @router.head("/{task_id}/content", include_in_schema=False)
    @router.get(
        "/{task_id}/content",
        summary="Stream the result (HTTP Range, ETag)",
        response_class=Response,
        responses=MEDIA_RESPONSES,
    )
    async def content(
        request: Request,
        task_id: str,
        user: CurrentUser,
        db: SessionDep,
        runtime: RuntimeDep,
        download: bool = False,
    ) -> Response:
        return await _serve(request, runtime, db, user.id, task_id, None, False, download)

    @router.get(
        "/{task_id}/thumbnail",
        summary="A small JPEG poster (first frame for video)",
        response_class=Response,
        responses=THUMBNAIL_RESPONSES,
    )
    async def thumbnail(
        request: Request, task_id: str, user: CurrentUser, db: SessionDep, runtime: RuntimeDep
    ) -> Response:
        return await _serve(request, runtime, db, user.id, task_id, None, True, False)

    @router.head("/{task_id}/media/{media_id}/content", include_in_schema=False)
    @router.get(
        "/{task_id}/media/{media_id}/content",
        summary="Stream one result file",
        response_class=Response,
        responses=MEDIA_RESPONSES,
    )
    async def media_content(
        request: Request,
        task_id: str,
        media_id: str,
        user: CurrentUser,
        db: SessionDep,
        runtime: RuntimeDep,
        download: bool = False,
    ) -> Response:
        return await _serve(request, runtime, db, user.id, task_id, media_id, False, download)

    @router.get(
        "/{task_id}/media/{media_id}/thumbnail",
        response_class=Response,
        responses=THUMBNAIL_RESPONSES,
    )
    async def media_thumbnail(
        request: Request,
        task_id: str,
        media_id: str,
        user: CurrentUser,
        db: SessionDep,
        runtime: RuntimeDep,
    ) -> Response:
        return await _serve(request, runtime, db, user.id, task_id, media_id, True, False)

    @router.post(
        "/{task_id}/media/{media_id}/fetch",
        response_model=TaskOut,
        summary="Store a result that was not stored (quota) once space is free",
        responses={
            **NOT_FOUND,
            409: error_response_doc(409, "This media cannot be fetched again"),
            413: error_response_doc(413, "It does not fit in your storage quota"),
        },
    )
    async def fetch(
        task_id: str,
        media_id: str,
        user: CurrentUser,
        db: SessionDep,
        runtime: RuntimeDep,
    ) -> TaskOut:
        from app.core.tasks.refetch import refetch_media

        task = await service.get_task(db, user.id, task_id, kind)
        await commit(db)
        await refetch_media(runtime, task, media_id)
        await db.refresh(task)
        return (await service.tasks_out(db, runtime.encryptor, [task]))[0]

    return router


def _edit_body(fields: dict[str, Any]) -> TaskCreate:
    """Form fields of an edit request: known ones, `params` as JSON, the rest as params."""
    known = {"model", "prompt", "title", "n", "webhook_url", "tags", "params"}
    params: dict[str, Any] = {}
    if fields.get("params"):
        try:
            parsed = json.loads(fields["params"])
        except json.JSONDecodeError as exc:
            raise ValidationFailed(
                "params must be a JSON object",
                details=[{"field": "params", "message": str(exc)}],
            ) from exc
        if not isinstance(parsed, dict):
            raise ValidationFailed(
                "params must be a JSON object",
                details=[{"field": "params", "message": "expected an object"}],
            )
        params.update(parsed)
    for name, value in fields.items():
        if name not in known:
            params[name] = value
    raw: dict[str, Any] = {
        "model": fields.get("model", ""),
        "prompt": fields.get("prompt", ""),
        "title": fields.get("title") or None,
        "params": params,
        "n": fields.get("n") or 1,
        "webhook_url": fields.get("webhook_url") or None,
        "tags": [t for t in (fields.get("tags") or "").split(",") if t.strip()],
    }
    from pydantic import ValidationError

    try:
        return TaskCreate.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(
            "Invalid edit request",
            details=[
                {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
                for err in exc.errors()
            ],
        ) from exc


async def _delete_files(runtime: TaskRuntime, keys: list[str]) -> None:
    from app.core.tasks.results import delete_keys

    await delete_keys(runtime.storage, keys)


videos_router = build_router("video")
images_router = build_router("image")
