"""Upstream channels (admins only; mounted at `/api/v1/admin/channels`).

Keys are write-only: after creation only a hint ("sk-…abcd") is shown. The list includes the
default channel (`API_BASE_URL`/`API_KEY`, id "default", read-only here) and every channel's
health: `state` healthy | cooling_down | disabled, `cooldown_until`, `last_error`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import AdminUser, EncryptorDep, SessionDep
from app.core.catalog import Catalog
from app.core.channels import ChannelView, service
from app.core.config import Settings
from app.core.errors import error_response_doc, error_responses
from app.core.tasks.upstream import UpstreamRouter
from app.db.session import after_commit
from app.models.schemas.channels import ChannelCreate, ChannelList, ChannelOut, ChannelUpdate

router = APIRouter(responses=error_responses(422))

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error_response_doc(401, "Not authenticated"),
    403: error_response_doc(403, "Caller is not an administrator (code `admin_required`)"),
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: error_response_doc(404, "Unknown channel id")}
_READ_ONLY: dict[int | str, dict[str, Any]] = {
    409: error_response_doc(
        409, "The default channel is set by API_BASE_URL/API_KEY (`default_channel_read_only`)"
    )
}
_BAD_BODY = error_responses(400)


def _router(request: Request) -> UpstreamRouter:
    upstream: UpstreamRouter = request.app.state.tasks.router
    return upstream


def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def _default(request: Request, db: AsyncSession) -> ChannelView:
    settings: Settings = request.app.state.settings
    available = await service.default_available(db, settings)
    return _router(request).default_channel(available=available)


@router.get("", response_model=ChannelList, responses=_ERRORS, summary="List channels")
async def list_channels(request: Request, _: AdminUser, db: SessionDep) -> ChannelList:
    channels = await service.list_channels(db, await _default(request, db))
    return ChannelList(items=[service.channel_out(c) for c in channels])


@router.post(
    "",
    status_code=201,
    response_model=ChannelOut,
    responses=_ERRORS | _BAD_BODY,
    summary="Add a channel",
)
async def create_channel(
    request: Request, body: ChannelCreate, _: AdminUser, db: SessionDep, encryptor: EncryptorDep
) -> ChannelOut:
    channel = await service.create_channel(db, encryptor, _catalog(request), body)
    after_commit(db, _router(request).invalidate)
    return service.channel_out(channel)


@router.get(
    "/{channel_id}", response_model=ChannelOut, responses=_ERRORS | _NOT_FOUND, summary="A channel"
)
async def get_channel(
    channel_id: str, request: Request, _: AdminUser, db: SessionDep
) -> ChannelOut:
    return service.channel_out(
        await service.get_channel(db, await _default(request, db), channel_id)
    )


@router.patch(
    "/{channel_id}",
    response_model=ChannelOut,
    responses=_ERRORS | _NOT_FOUND | _READ_ONLY | _BAD_BODY,
    summary="Change a channel (a new api_key replaces the old one; type is fixed)",
)
async def update_channel(
    channel_id: str,
    body: ChannelUpdate,
    request: Request,
    _: AdminUser,
    db: SessionDep,
    encryptor: EncryptorDep,
) -> ChannelOut:
    channel = await service.update_channel(db, encryptor, _catalog(request), channel_id, body)
    after_commit(db, _router(request).invalidate)
    return service.channel_out(channel)


@router.delete(
    "/{channel_id}",
    status_code=204,
    response_class=Response,
    responses=_ERRORS | _NOT_FOUND | _READ_ONLY,
    summary="Delete a channel (kept hidden while tasks it owns still need it)",
)
async def delete_channel(channel_id: str, request: Request, _: AdminUser, db: SessionDep) -> None:
    await service.delete_channel(db, channel_id)
    after_commit(db, _router(request).invalidate)
