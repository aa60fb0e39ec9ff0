"""ORM models. Importing this package registers every table on `Base.metadata`."""

from app.db.base import Base
from app.models.channel import Channel
from app.models.request_log import ApiRequestLog, RequestCategory
from app.models.task import (
    GenerationTask,
    IdempotencyKey,
    Media,
    TaskSearchTerm,
    WebhookDelivery,
)
from app.models.user import ApiKey, User, UserLoginLog, UserSession

__all__ = [
    "ApiKey",
    "ApiRequestLog",
    "Base",
    "Channel",
    "GenerationTask",
    "IdempotencyKey",
    "Media",
    "RequestCategory",
    "TaskSearchTerm",
    "User",
    "UserLoginLog",
    "UserSession",
    "WebhookDelivery",
]
