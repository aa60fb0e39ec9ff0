"""Generation tasks as users see them: create, list/search, update, cancel, retry, delete.

The worker (`app/core/tasks/worker.py`) drives tasks through their states; this module only
creates them and makes user-initiated transitions, each a compare-and-swap on `status`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    String,
    Subquery,
    cast,
    delete,
    func,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.clients.base import MediaKind, TaskStatus
from app.core.channels.service import ensure_model_served
from app.core.config import Settings
from app.core.encryption import DecryptionError, Encryptor
from app.core.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.core.media.inspect import SNIFF_BYTES, sniff_content_type
from app.core.tasks.events import TaskEvent, TaskEventBus
from app.core.tasks.payload import TaskPayload, image_ref
from app.core.tasks.posters import has_poster
from app.core.tasks.search import (
    few_matches,
    index_terms,
    insert_terms,
    prompt_matches,
    title_matches,
)
from app.db.base import new_uuid, utcnow
from app.db.session import after_commit
from app.models import GenerationTask, IdempotencyKey, Media
from app.models.schemas.tasks import MediaOut, TaskCreate, TaskError, TaskOut, TaskUpdate

ACTIVE_STATUSES = (TaskStatus.QUEUED.value, TaskStatus.IN_PROGRESS.value)
# Reference images (uploads and data URIs) the upstreams accept; decided by magic bytes.
UPLOAD_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
# What an upstream key may look like: it travels in an HTTP header (`Authorization: Bearer …`).
_UPSTREAM_KEY = re.compile(r"^[\x21-\x7e]{1,512}$")
IDEMPOTENCY_TTL = timedelta(hours=24)
SORTS = {"created", "-created", "title", "-title"}


@dataclass(frozen=True)
class ValidatedModelRequest:
    model: str
    adapter: str
    upstream_model: str
    params: dict[str, Any]


Validator = Callable[..., ValidatedModelRequest]


@dataclass
class TaskContext:
    """What task operations need besides the session (built per request from app.state)."""

    settings: Settings
    encryptor: Encryptor
    search_key: bytes
    events: TaskEventBus
    wake_worker: Callable[[], None]
    validate: Validator
    request_upstream_cancel: Callable[[GenerationTask], None]
    # The in-process worker, when it runs here and has free slots: new tasks are inserted
    # already leased to it and handed over after the commit (no claim query, no re-read of
    # the request, no wake-up delay). None: they wait for a claim, from any worker.
    inline_lease: Callable[[int], InlineLease | None] | None = None
    start_inline: Callable[[Sequence[GenerationTask], TaskPayload], None] | None = None


@dataclass(frozen=True)
class InlineLease:
    owner: str
    expires_at: datetime


@dataclass
class CreateResult:
    tasks: list[GenerationTask]
    replayed: bool  # an Idempotency-Key replay: the same tasks as the first time


@dataclass
class ListQuery:
    page: int = 1
    size: int = 20
    search: str | None = None
    model: str | None = None
    status: list[str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    tags: list[str] | None = None
    favorite: bool | None = None
    sort: str = "-created"


def _request_hash(kind: str, body: TaskCreate, extra: dict[str, Any] | None) -> str:
    canonical = json.dumps(
        {"kind": kind, "body": body.model_dump(mode="json"), "extra": extra or {}},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def task_event(task: GenerationTask, event_type: str) -> TaskEvent:
    """The summary every task event carries (in-process bus, NOTIFY, SSE)."""
    return TaskEvent(
        user_id=task.user_id,
        task_id=task.id,
        type=event_type,
        data={
            "id": task.id,
            "object": task.kind,
            "model": task.model,
            "status": task.status,
            "progress": task.progress,
            "title": task.title,
            "error_code": task.error_code,
            "updated_at": task.updated_at.isoformat(),
        },
    )


def announce(db: AsyncSession, ctx: TaskContext, task: GenerationTask, event_type: str) -> None:
    """Publish an event about `task` once the current transaction commits."""
    event = task_event(task, event_type)
    after_commit(db, lambda: ctx.events.publish(event))


async def _replay_idempotent(
    db: AsyncSession, user_id: str, key: str, request_hash: str
) -> list[GenerationTask] | None:
    record = await db.scalar(
        select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    )
    if record is None:
        return None
    if record.created_at < utcnow() - IDEMPOTENCY_TTL:
        await db.delete(record)
        await db.flush()
        return None
    if record.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    ids = [str(i) for i in record.task_ids]
    rows = (await db.scalars(select(GenerationTask).where(GenerationTask.id.in_(ids)))).all()
    by_id = {t.id: t for t in rows}
    return [by_id[i] for i in ids if i in by_id]


def check_reference_image(data: bytes, field: str, max_bytes: int) -> str:
    """The sniffed content type of an uploaded reference image; 413 or 415 naming `field`."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"{field} is larger than {max_bytes} bytes",
            details=[{"field": field, "max_bytes": max_bytes}],
        )
    content_type = sniff_content_type(data[:SNIFF_BYTES])
    if content_type not in UPLOAD_TYPES:
        raise UnsupportedMediaType(
            f"{field} must be a PNG, JPEG or WebP image",
            details=[{"field": field, "allowed": sorted(UPLOAD_TYPES)}],
        )
    return content_type


def _check_data_uri(value: str, field: str, max_bytes: int) -> None:
    """A data URI in a JSON request gets the same size and type limits as a multipart upload
    (without them it would be a way around `UPLOAD_MAX_BYTES` and the image-type check)."""
    header, sep, encoded = value.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ValidationFailed(
            f"{field} must be a base64 data URI (data:image/…;base64,…)",
            details=[{"field": field, "message": "expected ;base64 data"}],
        )
    encoded = "".join(encoded.split())
    # Refuse before decoding: the decoded size is known from the length.
    if len(encoded) // 4 * 3 - encoded[-2:].count("=") > max_bytes:
        raise PayloadTooLarge(
            f"{field} is larger than {max_bytes} bytes",
            details=[{"field": field, "max_bytes": max_bytes}],
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(
            f"{field} is not valid base64",
            details=[{"field": field, "message": "invalid base64"}],
        ) from None
    check_reference_image(data, field, max_bytes)


def _check_inputs(body: TaskCreate, upstream_key: str | None, settings: Settings) -> None:
    for index, ref in enumerate(body.images):
        if ref.startswith("data:"):
            _check_data_uri(ref, f"images[{index}]", settings.upload_max_bytes)
    if body.mask is not None and body.mask.startswith("data:"):
        _check_data_uri(body.mask, "mask", settings.upload_max_bytes)
    if upstream_key is not None and not _UPSTREAM_KEY.match(upstream_key):
        # Caught here, not as an opaque upstream auth failure minutes later.
        raise ValidationFailed(
            "X-API-Key must be 1 to 512 printable ASCII characters without spaces",
            details=[{"field": "X-API-Key", "message": "invalid key format"}],
        )


async def create_tasks(
    db: AsyncSession,
    ctx: TaskContext,
    *,
    user_id: str,
    kind: MediaKind,
    body: TaskCreate,
    upstream_key: str | None = None,
    idempotency_key: str | None = None,
    uploaded_images: Sequence[str] = (),
    uploaded_mask: str | None = None,
    retry_of: str | None = None,
    creator_waits: bool = False,
) -> CreateResult:
    """Validate against the catalog and insert `body.n` queued tasks (one transaction).

    `creator_waits`: the caller holds its client's connection open until the tasks end (the
    synchronous OpenAI images routes). Tasks handed over to the in-process worker are then
    inserted already `sending`, which saves the worker a write before the upstream call: if
    this process dies before it sends them, they fail as `submit_interrupted` (never sent
    twice) instead of being sent later; the client saw its connection drop either way and an
    SDK retry asks again, so resuming them would generate, and charge for, the images twice.
    """
    if upstream_key == "":
        upstream_key = None
    _check_inputs(body, upstream_key, ctx.settings)
    images = [image_ref(v) for v in body.images] + [image_ref(v) for v in uploaded_images]
    mask_value = uploaded_mask or body.mask
    validated = ctx.validate(
        model_id=body.model,
        kind=kind,
        params=body.params,
        images_count=len(images),
        has_mask=mask_value is not None,
        n=body.n,
    )
    await ensure_model_served(
        db,
        ctx.settings,
        model_id=validated.model,
        catalog_adapter=validated.adapter,
        kind=kind,
        own_key=upstream_key is not None,
    )
    if body.webhook_url is not None:
        from app.core.webhooks import check_webhook_url

        await check_webhook_url(body.webhook_url, ctx.settings)

    request_hash = None
    if idempotency_key:
        if len(idempotency_key) > 255:
            raise ValidationFailed(
                "Idempotency-Key is longer than 255 characters",
                details=[{"field": "Idempotency-Key", "message": "at most 255 characters"}],
            )
        extra = {"uploads": [hashlib.sha256(v.encode()).hexdigest() for v in uploaded_images]}
        if uploaded_mask:
            extra["mask"] = [hashlib.sha256(uploaded_mask.encode()).hexdigest()]
        request_hash = _request_hash(kind, body, extra)
        replay = await _replay_idempotent(db, user_id, idempotency_key, request_hash)
        if replay is not None:
            return CreateResult(tasks=replay, replayed=True)

    payload = TaskPayload(
        prompt=body.prompt,
        params=validated.params,
        upstream_model=validated.upstream_model,
        images=images,
        mask=image_ref(mask_value, role="mask") if mask_value else None,
        webhook_url=body.webhook_url,
    )
    now = utcnow()
    deadline = now + timedelta(minutes=ctx.settings.task_deadline_minutes)
    encrypted_payload = ctx.encryptor.encrypt_json(payload.to_json())
    encrypted_key = ctx.encryptor.encrypt_text(upstream_key) if upstream_key else None
    terms = index_terms(ctx.search_key, body.prompt)
    batch_id = new_uuid() if body.n > 1 else None
    lease = ctx.inline_lease(body.n) if ctx.inline_lease is not None else None
    tasks: list[GenerationTask] = []
    for _ in range(body.n):
        task = GenerationTask(
            id=new_uuid(),
            user_id=user_id,
            kind=kind,
            model=validated.model,
            adapter=validated.adapter,
            status=TaskStatus.QUEUED.value,
            submit_state="sending" if lease is not None and creator_waits else "pending",
            progress=0,
            title=body.title,
            tags=list(body.tags),
            favorite=False,
            batch_id=batch_id,
            retry_of=retry_of,
            request_encrypted=encrypted_payload,
            upstream_key_encrypted=encrypted_key,
            deadline_at=deadline,
            next_poll_at=now,
            has_webhook=body.webhook_url is not None,
            lease_owner=lease.owner if lease else None,
            lease_expires_at=lease.expires_at if lease else None,
            created_at=now,
            updated_at=now,
        )
        db.add(task)
        tasks.append(task)
    await db.flush()
    await insert_terms(db, ((t.id, term, user_id) for t in tasks for term in terms))
    if idempotency_key and request_hash:
        try:
            async with db.begin_nested():
                db.add(
                    IdempotencyKey(
                        user_id=user_id,
                        key=idempotency_key,
                        request_hash=request_hash,
                        task_ids=[t.id for t in tasks],
                    )
                )
        except IntegrityError:
            # A concurrent request with the same key won the race; answer as its replay.
            for task in tasks:
                await db.delete(task)
            await db.flush()
            replay = await _replay_idempotent(db, user_id, idempotency_key, request_hash)
            if replay is None:
                raise Conflict("Idempotency-Key is being used concurrently") from None
            return CreateResult(tasks=replay, replayed=True)
    for task in tasks:
        announce(db, ctx, task, "task.created")
    start_inline = ctx.start_inline
    if lease is not None and start_inline is not None:
        after_commit(db, lambda: start_inline(tasks, payload))
    else:
        after_commit(db, ctx.wake_worker)
    return CreateResult(tasks=tasks, replayed=False)


async def get_task(
    db: AsyncSession, user_id: str, task_id: str, kind: MediaKind | None = None
) -> GenerationTask:
    query = select(GenerationTask).where(
        GenerationTask.id == task_id, GenerationTask.user_id == user_id
    )
    if kind is not None:
        query = query.where(GenerationTask.kind == kind)
    task = await db.scalar(query)
    if task is None:
        raise NotFound(f"No {kind or 'task'} with id {task_id}", code="task_not_found")
    return task


def _filtered(query: Select[*tuple[Any, ...]], q: ListQuery) -> Select[*tuple[Any, ...]]:
    if q.model:
        query = query.where(GenerationTask.model == q.model)
    if q.status:
        query = query.where(GenerationTask.status.in_(q.status))
    if q.created_after:
        query = query.where(GenerationTask.created_at >= q.created_after)
    if q.created_before:
        query = query.where(GenerationTask.created_at < q.created_before)
    if q.favorite is not None:
        query = query.where(GenerationTask.favorite.is_(q.favorite))
    for tag in q.tags or []:
        # Tags are a JSON list; each is stored as its JSON string form, so look for exactly that.
        query = query.where(
            cast(GenerationTask.tags, String).contains(json.dumps(tag), autoescape=True)
        )
    return query


# `total` is exact up to this many matches (SEARCH_COUNT_CAP with a search), or up to the end of
# the requested page when that is further; past it counting stops, the page says
# `total_is_estimate` and `total` is a lower bound. An exact count of a 100,000-task history
# reads all of it on every page (docs/benchmarks.md, History).
COUNT_CAP = 10_000
SEARCH_COUNT_CAP = 1_000


@dataclass
class TaskList:
    tasks: list[GenerationTask]
    total: int
    total_is_estimate: bool  # True: at least `total` tasks match (the count stopped there)


def _sort_order(sort: str, columns: Any) -> list[Any]:
    if sort == "created":
        return [columns.created_at.asc(), columns.id.asc()]
    if sort == "-created":
        return [columns.created_at.desc(), columns.id.desc()]
    if sort == "title":
        # Untitled last; exactly the order of ix_generation_tasks_user_kind_title_id.
        return [columns.title.asc().nulls_last(), columns.id.asc()]
    # Untitled last here too: that index read backwards, then the untitled (see _page_source).
    return [columns.title.desc().nulls_last(), columns.id.desc()]


def _page_source(matching: Subquery, sort: str, first_rows: int) -> Subquery:
    """What the page is cut from: the matching tasks, or for `-title` the first `first_rows`
    titled ones (the title index read backwards) and then the first untitled ones.

    No index has `title DESC NULLS LAST` on both databases (SQLite cannot declare it), and
    otherwise the planner sorts every matching task to find one page."""
    if sort != "-title":
        return matching
    columns = (matching.c.id, matching.c.created_at, matching.c.title)
    titled = (
        select(*columns)
        .where(matching.c.title.is_not(None))
        .order_by(matching.c.title.desc(), matching.c.id.desc())
        .limit(first_rows)
        .subquery()
    )
    untitled = (
        select(*columns)
        .where(matching.c.title.is_(None))
        .order_by(matching.c.id.desc())
        .limit(first_rows)
        .subquery()
    )
    return union_all(select(titled), select(untitled)).subquery("page_source")


async def list_tasks(
    db: AsyncSession, ctx: TaskContext, user_id: str, kind: MediaKind | None, q: ListQuery
) -> TaskList:
    """One page of the user's history and its (capped) total.

    Both queries read only the id and the sort and filter columns, all in the listing indexes
    (ix_generation_tasks_user_kind_created_id / _title_id): on PostgreSQL they are index-only
    scans, in index order, that stop as soon as the page is full or the count capped. Only the
    page's rows are then read whole (by id)."""
    if q.sort not in SORTS:
        raise ValidationFailed(
            "Unknown sort",
            details=[{"field": "sort", "message": "unknown sort", "allowed": sorted(SORTS)}],
        )

    def scoped(*columns: Any) -> Select[*tuple[Any, ...]]:
        query = select(*columns).where(GenerationTask.user_id == user_id)
        if kind is not None:
            query = query.where(GenerationTask.kind == kind)
        return _filtered(query, q)

    scope = scoped(GenerationTask.id, GenerationTask.created_at, GenerationTask.title)
    matching = scope
    walked = True  # matching walks the listing index (rather than reading a few ids)
    text = (q.search or "").strip()
    if text:
        title = title_matches(text)
        prompt = prompt_matches(ctx.search_key, user_id, text)
        few_prompts = [] if prompt is None else await few_matches(db, prompt)
        few_titles = None
        if few_prompts is not None:
            titled = scoped(GenerationTask.id).where(GenerationTask.title.is_not(None), title)
            few_titles = await few_matches(db, titled)
        if few_prompts is not None and few_titles is not None:
            # A rare search: read its few matching tasks by id, instead of walking every task
            # only to find that few match.
            candidates = sorted(set(few_prompts) | set(few_titles))
            if not candidates:
                return TaskList([], 0, total_is_estimate=False)
            matching = scope.where(GenerationTask.id.in_(candidates))
            walked = False
        elif prompt is not None:
            # A common one: test each task of the walk (PostgreSQL hashes the prompt matches
            # once); the page and the capped count fill quickly.
            matching = scope.where(or_(title, GenerationTask.id.in_(prompt)))
        else:
            matching = scope.where(title)
    offset = (q.page - 1) * q.size
    # One row more than the page says whether any follow.
    ids = _page_source(matching.subquery("matching"), q.sort, offset + q.size + 1)
    page = (
        select(ids.c.id, ids.c.created_at, ids.c.title)
        .order_by(*_sort_order(q.sort, ids.c))
        .offset(offset)
        .limit(q.size + 1)
        .subquery("page")
    )
    rows = list(
        (
            await db.scalars(
                select(GenerationTask)
                .join(page, GenerationTask.id == page.c.id)
                .order_by(*_sort_order(q.sort, page.c))
            )
        ).all()
    )
    tasks = rows[: q.size]
    if len(rows) <= q.size and (rows or offset == 0):
        return TaskList(tasks, offset + len(rows), total_is_estimate=False)  # the last page
    # Exact up to the cap, or to the end of a deeper page: a page is never past `total`.
    limit = max(SEARCH_COUNT_CAP if text else COUNT_CAP, offset + q.size)
    if len(rows) > q.size and limit == offset + q.size:
        return TaskList(tasks, limit, total_is_estimate=True)  # the count would stop here
    counted = matching.limit(limit + 1)
    if walked:
        # Counting in index order makes the planner read the narrow index, stopping at the
        # cap, rather than the whole table (which it may prefer when one user owns most rows).
        counted = counted.order_by(*_sort_order("-created", GenerationTask))
    found = int(await db.scalar(select(func.count()).select_from(counted.subquery())) or 0)
    if found > limit:
        return TaskList(tasks, limit, total_is_estimate=True)
    return TaskList(tasks, found, total_is_estimate=False)


def page_count(total: int, size: int) -> int:
    return max(1, math.ceil(total / size)) if size else 1


async def media_for(db: AsyncSession, task_ids: Sequence[str]) -> dict[str, list[Media]]:
    result: dict[str, list[Media]] = {tid: [] for tid in task_ids}
    if not task_ids:
        return result
    rows = await db.scalars(
        select(Media).where(Media.task_id.in_(task_ids)).order_by(Media.task_id, Media.position)
    )
    for media in rows:
        if media.state != "pending":
            result.setdefault(media.task_id, []).append(media)
    return result


def media_out(task: GenerationTask, media: Media, api_prefix: str = "/api/v1") -> MediaOut:
    base = f"{api_prefix}/{task.kind}s/{task.id}/media/{media.id}"
    stored = media.state == "stored"
    return MediaOut(
        id=media.id,
        state=media.state,
        reason=media.reason,
        reason_message=media.reason_message,
        content_type=media.content_type,
        bytes=media.bytes,
        width=media.width,
        height=media.height,
        duration_seconds=media.duration_seconds,
        sha256=media.sha256,
        url=f"{base}/content" if stored else None,
        thumbnail_url=f"{base}/thumbnail" if has_poster(media) else None,
    )


def task_out(task: GenerationTask, media: Sequence[Media], encryptor: Encryptor) -> TaskOut:
    prompt: str | None = None
    params: dict[str, Any] = {}
    decryption_error: str | None = None
    error: TaskError | None = None
    try:
        payload = TaskPayload.from_json(encryptor.decrypt_json(task.request_encrypted))
        prompt, params = payload.prompt, payload.params
    except (DecryptionError, ValueError) as exc:
        decryption_error = str(exc)
    if task.error_code:
        message = task.error_code.replace("_", " ")
        if task.error_message_encrypted:
            try:
                message = encryptor.decrypt_text(task.error_message_encrypted)
            except DecryptionError as exc:
                decryption_error = str(exc)
        error = TaskError(code=task.error_code, message=message)
    return TaskOut(
        id=task.id,
        object=task.kind,
        model=task.model,
        status=TaskStatus(task.status),
        progress=task.progress,
        prompt=prompt,
        title=task.title,
        params=params,
        created_at=task.created_at,
        submitted_at=task.submitted_at,
        started_at=task.started_at,
        completed_at=task.completed_at,
        error=error,
        media=[media_out(task, m) for m in media],
        tags=list(task.tags or []),
        favorite=task.favorite,
        batch_id=task.batch_id,
        retry_of=task.retry_of,
        webhook=task.has_webhook,
        decryption_error=decryption_error,
    )


async def tasks_out(
    db: AsyncSession, encryptor: Encryptor, tasks: Sequence[GenerationTask]
) -> list[TaskOut]:
    media = await media_for(db, [t.id for t in tasks])
    return [task_out(t, media.get(t.id, []), encryptor) for t in tasks]


async def update_task(
    db: AsyncSession, ctx: TaskContext, task: GenerationTask, body: TaskUpdate
) -> GenerationTask:
    changes = body.model_dump(exclude_unset=True)
    if "title" in changes:
        task.title = changes["title"]
    if changes.get("tags") is not None:
        task.tags = list(changes["tags"])
    if changes.get("favorite") is not None:
        task.favorite = bool(changes["favorite"])
    task.updated_at = utcnow()
    await db.flush()
    announce(db, ctx, task, "task.updated")
    return task


async def cancel_task(db: AsyncSession, ctx: TaskContext, task: GenerationTask) -> bool:
    """Cancel a running task locally (always works). Returns False when it had already ended.

    The worker's own compare-and-swap then fails, so a late upstream result is discarded; the
    worker asks the upstream to cancel too where the adapter supports it.
    """
    now = utcnow()
    result = await db.execute(
        update(GenerationTask)
        .where(GenerationTask.id == task.id, GenerationTask.status.in_(ACTIVE_STATUSES))
        .values(
            status=TaskStatus.CANCELLED.value,
            error_code="cancelled",
            error_message_encrypted=None,
            completed_at=now,
            updated_at=now,
            next_poll_at=None,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return False
    # A worker that crashed while storing results left `pending` rows holding quota: give it
    # back now (a live worker's own compare-and-swap fails and finds nothing left to release).
    from app.core.tasks.results import release_task_media

    await release_task_media(db, task.id, task.user_id)
    await db.refresh(task)
    from app.core.webhooks import enqueue_terminal_webhook

    await enqueue_terminal_webhook(db, ctx.encryptor, task)
    announce(db, ctx, task, "task.cancelled")
    if task.upstream_id:
        snapshot = GenerationTask(
            id=task.id,
            kind=task.kind,
            model=task.model,
            adapter=task.adapter,
            channel_id=task.channel_id,
            upstream_id=task.upstream_id,
            upstream_key_encrypted=task.upstream_key_encrypted,
        )
        after_commit(db, lambda: ctx.request_upstream_cancel(snapshot))
    return True


async def delete_task(
    db: AsyncSession, ctx: TaskContext, task: GenerationTask, removed_keys: list[str]
) -> None:
    """Cancel if running, delete media rows (releasing their quota once), delete the task.

    Storage keys of deleted media are appended to `removed_keys`; the caller deletes the files
    after the commit (a crash in between leaves an orphan file, never a dangling row).
    """
    if task.status in ACTIVE_STATUSES:
        await cancel_task(db, ctx, task)
    from app.core.tasks.results import release_task_media

    removed_keys.extend(await release_task_media(db, task.id, task.user_id))
    await db.execute(delete(GenerationTask).where(GenerationTask.id == task.id))
    after_commit(
        db,
        lambda: ctx.events.publish(
            TaskEvent(task.user_id, task.id, "task.deleted", {"id": task.id, "object": task.kind})
        ),
    )


async def bulk_delete(
    db: AsyncSession, ctx: TaskContext, user_id: str, ids: Sequence[str], removed_keys: list[str]
) -> tuple[list[str], list[str]]:
    unique_ids = list(dict.fromkeys(ids))
    rows = (
        await db.scalars(
            select(GenerationTask).where(
                GenerationTask.user_id == user_id, GenerationTask.id.in_(unique_ids)
            )
        )
    ).all()
    found = {t.id: t for t in rows}
    for task in rows:
        await delete_task(db, ctx, task, removed_keys)
    return [i for i in unique_ids if i in found], [i for i in unique_ids if i not in found]


async def retry_task(db: AsyncSession, ctx: TaskContext, task: GenerationTask) -> GenerationTask:
    """A new task with the same request (same model, prompt, params, inputs)."""
    payload = TaskPayload.from_json(ctx.encryptor.decrypt_json(task.request_encrypted))
    now = utcnow()
    clone = GenerationTask(
        id=str(uuid.uuid4()),
        user_id=task.user_id,
        kind=task.kind,
        model=task.model,
        adapter=task.adapter,
        status=TaskStatus.QUEUED.value,
        submit_state="pending",
        progress=0,
        title=task.title,
        tags=list(task.tags or []),
        favorite=False,
        retry_of=task.id,
        request_encrypted=ctx.encryptor.encrypt_json(payload.to_json()),
        upstream_key_encrypted=task.upstream_key_encrypted,
        deadline_at=now + timedelta(minutes=ctx.settings.task_deadline_minutes),
        next_poll_at=now,
        has_webhook=payload.webhook_url is not None,
        created_at=now,
        updated_at=now,
    )
    db.add(clone)
    await db.flush()
    terms = index_terms(ctx.search_key, payload.prompt)
    await insert_terms(db, ((clone.id, term, task.user_id) for term in terms))
    announce(db, ctx, clone, "task.created")
    after_commit(db, ctx.wake_worker)
    return clone


async def get_media(
    db: AsyncSession, user_id: str, task_id: str, media_id: str | None, kind: MediaKind | None
) -> tuple[GenerationTask, Media]:
    task = await get_task(db, user_id, task_id, kind)
    query = select(Media).where(Media.task_id == task.id, Media.state == "stored")
    if media_id is not None:
        query = query.where(Media.id == media_id)
    media = await db.scalar(query.order_by(Media.position).limit(1))
    if media is None:
        raise NotFound("No stored media for this task", code="media_not_found")
    return task, media
