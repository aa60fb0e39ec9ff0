"""Signed completion webhooks (Standard Webhooks: https://www.standardwebhooks.com/).

Each terminal state of a task created with `webhook_url` is written to `webhook_deliveries` in the
same transaction as the transition (an outbox: no event is lost or sent for an uncommitted
state). The worker POSTs due deliveries with headers `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))>`, where
`secret` is the base64-decoded part of the user's `whsec_…` secret, and retries with
exponential backoff until `WEBHOOK_MAX_ATTEMPTS`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.encryption import DecryptionError, Encryptor
from app.core.errors import ValidationFailed
from app.core.media.download import CheckedURL
from app.db.base import new_uuid, utcnow
from app.db.session import Database
from app.models import GenerationTask, Media, User, WebhookDelivery

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
DELIVERY_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
DELIVERY_LEASE = timedelta(seconds=60)
MAX_BACKOFF_SECONDS = 3600
# First retry delay; doubles per failed attempt up to MAX_BACKOFF_SECONDS. Module-level so a
# test (or an embedding) can shorten it without a setting nobody else needs.
BACKOFF_BASE_SECONDS = 5.0


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def _secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """Reference verifier (what a receiver does); used by the tests and documented in the API."""
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id, timestamp = lowered.get("webhook-id"), lowered.get("webhook-timestamp")
    if not message_id or not timestamp or not timestamp.isdigit():
        return False
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = sign(secret, message_id, int(timestamp), body).split(",", 1)[1]
    for candidate in lowered.get("webhook-signature", "").split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


async def get_or_create_secret(db: AsyncSession, encryptor: Encryptor, user: User) -> str:
    if user.webhook_secret_encrypted:
        return encryptor.decrypt_text(user.webhook_secret_encrypted)
    secret = generate_secret()
    # Conditional: two concurrent first calls must not hand out two different secrets.
    await db.execute(
        update(User)
        .where(User.id == user.id, User.webhook_secret_encrypted.is_(None))
        .values(webhook_secret_encrypted=encryptor.encrypt_text(secret))
    )
    await db.refresh(user)
    return encryptor.decrypt_text(user.webhook_secret_encrypted or "")


async def rotate_secret(db: AsyncSession, encryptor: Encryptor, user: User) -> str:
    secret = generate_secret()
    user.webhook_secret_encrypted = encryptor.encrypt_text(secret)
    await db.flush()
    return secret


def _url_policy(settings: Settings) -> Any:
    from app.core.media.download import DownloadPolicy

    return DownloadPolicy(allowed_hosts=set(settings.webhook_allowed_hosts), trusted_hosts=set())


async def check_webhook_url(url: str, settings: Settings) -> CheckedURL:
    """Refuse webhook targets on private networks (SSRF) unless explicitly allowed.

    Returns the checked URL with the addresses that passed, so a delivery can connect to
    exactly those (a second DNS answer cannot point it at an internal host).
    """
    from app.core.media.download import MediaError, check_url_allowed

    try:
        return await check_url_allowed(url, _url_policy(settings))
    except MediaError as exc:
        raise ValidationFailed(
            "webhook_url is not allowed",
            code="webhook_url_forbidden",
            details=[{"field": "webhook_url", "message": str(exc)}],
        ) from exc


def event_type(task: GenerationTask) -> str:
    return f"{task.kind}.{task.status}"


async def enqueue_terminal_webhook(
    db: AsyncSession, encryptor: Encryptor, task: GenerationTask
) -> None:
    """Queue the webhook of `task`'s terminal state (call inside the transition's transaction)."""
    if not task.has_webhook:
        return
    from app.core.tasks.payload import TaskPayload
    from app.core.tasks.service import task_out

    try:
        payload = TaskPayload.from_json(encryptor.decrypt_json(task.request_encrypted))
    except DecryptionError:
        logger.warning("task %s: payload undecryptable, webhook skipped", task.id)
        return
    if not payload.webhook_url:
        return
    media = (
        await db.scalars(
            select(Media)
            .where(Media.task_id == task.id, Media.state != "pending")
            .order_by(Media.position)
        )
    ).all()
    body = {
        "type": event_type(task),
        "timestamp": utcnow().isoformat(),
        "data": task_out(task, media, encryptor).model_dump(mode="json"),
    }
    db.add(
        WebhookDelivery(
            id=new_uuid(),
            task_id=task.id,
            user_id=task.user_id,
            event_type=body["type"],
            url_encrypted=encryptor.encrypt_text(payload.webhook_url),
            payload_encrypted=encryptor.encrypt_json(body),
            state="pending",
            next_attempt_at=utcnow(),
        )
    )


def _backoff(attempts: int) -> timedelta:
    delay = BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, delay))


async def deliver_due(
    database: Database,
    encryptor: Encryptor,
    http: httpx.AsyncClient,
    settings: Settings,
    *,
    limit: int = 20,
) -> int:
    """Send due deliveries once each; returns how many were attempted."""
    now = utcnow()
    async with database.session() as db:
        due = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.state == "pending",
                WebhookDelivery.next_attempt_at <= now,
                or_(
                    WebhookDelivery.lease_expires_at.is_(None),
                    WebhookDelivery.lease_expires_at < now,
                ),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed = (
            await db.scalars(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(due.scalar_subquery()))
                .values(lease_expires_at=now + DELIVERY_LEASE)
                .returning(WebhookDelivery)
                .execution_options(synchronize_session=False)
            )
        ).all()
        secrets_by_user: dict[str, str] = {}
        jobs = []
        for delivery in claimed:
            if delivery.user_id not in secrets_by_user:
                user = await db.get(User, delivery.user_id)
                if user is None:
                    continue
                secrets_by_user[delivery.user_id] = await get_or_create_secret(db, encryptor, user)
            jobs.append((delivery, secrets_by_user[delivery.user_id]))
    # Concurrently: one slow receiver must not hold up every other delivery (or the caller).
    await asyncio.gather(
        *(_deliver_one(database, encryptor, http, settings, d, secret) for d, secret in jobs)
    )
    return len(jobs)


async def _deliver_one(
    database: Database,
    encryptor: Encryptor,
    http: httpx.AsyncClient,
    settings: Settings,
    delivery: WebhookDelivery,
    secret: str,
) -> None:
    status_code: int | None = None
    error: str | None = None
    try:
        url = encryptor.decrypt_text(delivery.url_encrypted)
        body = json.dumps(
            encryptor.decrypt_json(delivery.payload_encrypted), separators=(",", ":")
        ).encode()
        checked = await check_webhook_url(url, settings)
        target, pinned_headers, extensions = checked.request_target()
        timestamp = int(time.time())
        headers = {
            **pinned_headers,
            "content-type": "application/json",
            "user-agent": "genapi-webhooks/1",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, delivery.id, timestamp, body),
        }
        response = await http.post(
            target,
            content=body,
            headers=headers,
            extensions=extensions,
            timeout=DELIVERY_TIMEOUT,
            follow_redirects=False,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"receiver answered HTTP {status_code}"
    except ValidationFailed as exc:
        error = f"webhook_url refused: {exc.details[0]['message'] if exc.details else exc}"[:500]
    except Exception as exc:
        # Anything else (network, a URL httpx rejects, a bad stored payload) is a failed attempt
        # too: it must be counted and backed off, never leave the delivery to its lease forever.
        error = f"{type(exc).__name__}: {exc}"[:500]
        logger.info("webhook %s delivery failed: %s", delivery.id, type(exc).__name__)
    now = utcnow()
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": status_code,
        "last_error": error,
        "lease_expires_at": None,
    }
    if error is None:
        values.update(state="delivered", delivered_at=now, next_attempt_at=None)
    elif attempts >= settings.webhook_max_attempts:
        values.update(state="failed", next_attempt_at=None)
    else:
        values.update(next_attempt_at=now + _backoff(attempts))
    async with database.session() as db:
        await db.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values)
        )
