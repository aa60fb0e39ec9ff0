"""Who may read `/metrics`: an allowlisted client address, the METRICS_TOKEN bearer, or an
administrator (JWT, session cookie or `gk_` API key).

Checked in that order, cheapest first: a scraper on an allowlisted address never touches the
database. The address is the one the ASGI server reports; behind a reverse proxy that is the
proxy's unless it is trusted for X-Forwarded-For (uvicorn's FORWARDED_ALLOW_IPS), so never
allowlist a proxy's address that untrusted clients come through.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from app.core.auth.principal import authenticate
from app.core.errors import Forbidden, Unauthorized
from app.core.observability.logging import IPNetwork, ObservabilitySettings
from app.core.security import constant_time_equals
from app.db.session import Database


def client_allowed(host: str | None, allowlist: list[IPNetwork]) -> bool:
    if not host:
        return False
    try:
        address: IPv4Address | IPv6Address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        candidates: list[IPv4Address | IPv6Address] = [address, address.ipv4_mapped]
    else:
        candidates = [address]
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in allowlist
    )


async def authorize_scrape(
    *,
    client_host: str | None,
    bearer: str | None,
    cookie: str | None,
    settings: ObservabilitySettings,
    database: Database,
    jwt_secret: str,
) -> None:
    """Return when the caller may scrape; raise Unauthorized (401) or Forbidden (403)."""
    if client_allowed(client_host, settings.metrics_allowlist):
        return
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if token and bearer and constant_time_equals(bearer, token):
        return
    if not bearer and not cookie:
        raise Unauthorized(
            "Metrics need the METRICS_TOKEN or an administrator's credentials as a bearer "
            "token, or a client address in METRICS_ALLOWLIST",
            code="metrics_unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    async with database.session() as db:
        principal = await authenticate(db, bearer=bearer, cookie=cookie, jwt_secret=jwt_secret)
        is_admin = bool(principal.user.is_admin)
    if not is_admin:
        raise Forbidden("Metrics are for administrators", code="admin_required")
