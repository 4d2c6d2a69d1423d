"""Websocket authentication: the Django session, or an API token.

Browsers authenticate with the session cookie, so their ``Origin`` must be
one of ``ALLOWED_HOSTS`` (no cross-site websocket hijacking). Other clients
send no ``Origin``; they authenticate with a token, as
``Authorization: Bearer <token>`` or ``?token=<token>``. A presented token
decides alone: a bad one is not rescued by a session cookie.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from core.services import api_token_authenticate


class BrowserOriginValidator(OriginValidator):
    """Like ``AllowedHostsOriginValidator``, but lets through clients sending no ``Origin``.

    Every browser sends ``Origin`` on a websocket handshake, so a missing one
    is a non-browser client, which cannot ride on a victim's cookies.
    """

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


def allowed_hosts_origin_validator(application) -> BrowserOriginValidator:
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)


def presented_token(scope) -> str | None:
    """The token of the ``Authorization: Bearer`` header, else of the ``token`` query parameter."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get("token")
    return values[0] if values else None


class WebsocketSessionMiddleware(SessionMiddleware):
    """Channels' session middleware without its wrapper around every frame sent.

    The wrapper saves the session on an HTTP response, which a websocket never
    sends; it cost two lazy-object lookups for each frame to each client.
    """

    async def __call__(self, scope, receive, send):
        session = InstanceSessionWrapper(scope, send)
        await session.resolve_session()
        return await self.inner(session.scope, receive, send)


class TokenAuthMiddleware:
    """Replaces the session user with the token's user when a token is presented."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        raw = presented_token(scope)
        if raw is not None:
            token = await database_sync_to_async(api_token_authenticate)(raw=raw)
            user = token.user if token is not None else AnonymousUser()
            scope = {
                **scope,
                "user": user,
                "api_token_id": str(token.pk) if token is not None else None,
                # The consumer closes the connection when the token expires.
                "api_token_expires_at": token.expires_at if token is not None else None,
            }
        return await self.inner(scope, receive, send)


def EventsAuthStack(inner):  # noqa: N802 -- named like channels' AuthMiddlewareStack
    """Session authentication, then token authentication, then origin checking outside both."""
    session_auth = CookieMiddleware(WebsocketSessionMiddleware(AuthMiddleware(TokenAuthMiddleware(inner))))
    return allowed_hosts_origin_validator(session_auth)
