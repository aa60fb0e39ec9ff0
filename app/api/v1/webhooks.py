"""`/api/v1/webhooks`: the caller's signing secret and recent deliveries."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.api.deps import CurrentUser, EncryptorDep, SessionDep
from app.core import webhooks
from app.core.errors import error_responses
from app.db.session import commit
from app.models import WebhookDelivery
from app.models.schemas.tasks import WebhookDeliveryOut, WebhookSecretOut

router = APIRouter(responses=error_responses(401))


@router.get("/secret", response_model=WebhookSecretOut, summary="Your webhook signing secret")
async def get_secret(
    user: CurrentUser, db: SessionDep, encryptor: EncryptorDep
) -> WebhookSecretOut:
    secret = await webhooks.get_or_create_secret(db, encryptor, user)
    # Committed before answering: the worker must sign with the secret the caller was shown.
    await commit(db)
    return WebhookSecretOut(secret=secret)


@router.post("/secret/rotate", response_model=WebhookSecretOut, summary="Replace the secret")
async def rotate_secret(
    user: CurrentUser, db: SessionDep, encryptor: EncryptorDep
) -> WebhookSecretOut:
    secret = await webhooks.rotate_secret(db, encryptor, user)
    await commit(db)
    return WebhookSecretOut(secret=secret)


@router.get(
    "/deliveries",
    response_model=list[WebhookDeliveryOut],
    summary="Your 100 most recent webhook deliveries, newest first",
)
async def deliveries(user: CurrentUser, db: SessionDep) -> list[WebhookDeliveryOut]:
    rows = await db.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.user_id == user.id)
        .order_by(WebhookDelivery.created_at.desc())
        .limit(100)
    )
    return [WebhookDeliveryOut.model_validate(d) for d in rows]
