"""Dependencies of the OpenAI-compatible routes.

Only bearer credentials (a `gk_` API key, or an access token) are accepted on `/v1`, never the
session cookie: `/v1` is outside the CSRF middleware's `/api/` scope, and an SDK never sends
cookies anyway.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from app.api.deps import SessionDep, SettingsDep, bearer_token
from app.core.auth.principal import Principal, authenticate
from app.core.errors import Unauthorized


async def get_openai_principal(
    request: Request, db: SessionDep, settings: SettingsDep
) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized(
            "You didn't provide an API key: send 'Authorization: Bearer gk_…'",
            code="missing_api_key",
        )
    principal = await authenticate(
        db, bearer=token, cookie=None, jwt_secret=settings.jwt_secret_key or ""
    )
    # The request-log middleware reads this to attribute the request.
    request.state.principal = principal
    return principal


OpenAIPrincipal = Annotated[Principal, Depends(get_openai_principal)]

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
