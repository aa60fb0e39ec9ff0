"""Storing a result later: media that was `not_stored` (quota) or failed to download."""

from __future__ import annotations

from sqlalchemy import select, update

from app.clients.base import UpstreamResult
from app.core.errors import AppError, NotFound
from app.core.media.download import DownloadPolicy
from app.core.media.inspect import extension_for
from app.core.quota import release, reserve_or_raise
from app.core.tasks.results import delete_keys, discard_temp, fetch_result
from app.core.tasks.runtime import TaskRuntime
from app.models import GenerationTask, Media


class MediaNotRefetchable(AppError):
    status_code = 409
    code = "media_not_refetchable"
    message = "This media cannot be fetched again"


async def refetch_media(runtime: TaskRuntime, task: GenerationTask, media_id: str) -> Media:
    async with runtime.database.session() as db:
        media = await db.scalar(select(Media).where(Media.id == media_id, Media.task_id == task.id))
    if media is None:
        raise NotFound("No such media for this task", code="media_not_found")
    if media.state == "stored":
        return media
    if not media.source_encrypted:
        raise MediaNotRefetchable(
            "The upstream returned this result inline; it cannot be re-fetched"
        )
    source = UpstreamResult(url=runtime.encryptor.decrypt_text(media.source_encrypted))
    policy = DownloadPolicy(
        allowed_hosts=set(runtime.settings.media_download_allowed_hosts),
        trusted_hosts=runtime.router.trusted_hosts,
    )
    credentials = await runtime.router.credentials_for(task)
    fetched = await fetch_result(
        runtime.http,
        runtime.storage,
        runtime.settings,
        policy,
        source,
        media.position,
        auth_header=await runtime.router.download_headers(task, credentials),
        transient_is_final=True,
    )
    try:
        if fetched.file is None:
            raise MediaNotRefetchable(
                fetched.failure_message or "The result could not be downloaded",
                code=f"media_{fetched.failure_reason or 'unavailable'}",
            )
        ext = extension_for(fetched.content_type or "") or ""
        key = f"{task.user_id}/{media.id}{ext}"
        thumb_key = f"{task.user_id}/{media.id}.thumb.jpg" if fetched.thumbnail_path else None
        async with runtime.database.session() as db:
            await reserve_or_raise(db, task.user_id, fetched.total_bytes)
        gone = False
        try:
            await runtime.storage.put_file(fetched.file.path, key)
            if thumb_key and fetched.thumbnail_path:
                await runtime.storage.put_file(fetched.thumbnail_path, thumb_key)
            async with runtime.database.session() as db:
                result = await db.execute(
                    update(Media)
                    .where(Media.id == media.id, Media.state != "stored")
                    .values(
                        state="stored",
                        reason=None,
                        reason_message=None,
                        storage_key=key,
                        thumbnail_key=thumb_key,
                        bytes=fetched.file.size,
                        thumbnail_bytes=fetched.thumbnail_bytes,
                        sha256=fetched.file.sha256,
                        content_type=fetched.content_type,
                        width=fetched.width,
                        height=fetched.height,
                        duration_seconds=fetched.duration_seconds,
                    )
                )
                if result.rowcount == 0:  # type: ignore[attr-defined]
                    # Stored by a concurrent fetch (same key: its file is ours too), or deleted
                    # meanwhile (then the file is an orphan): give the reservation back.
                    await release(db, task.user_id, fetched.total_bytes)
                    gone = await db.get(Media, media.id) is None
        except BaseException:
            async with runtime.database.session() as db:
                await release(db, task.user_id, fetched.total_bytes)
            raise
        if gone:
            await delete_keys(runtime.storage, [k for k in (key, thumb_key) if k])
    finally:
        discard_temp(fetched)
    async with runtime.database.session() as db:
        refreshed = await db.get(Media, media.id)
    if refreshed is None:
        raise NotFound("No such media for this task", code="media_not_found")
    return refreshed
