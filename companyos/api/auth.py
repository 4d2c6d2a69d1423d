"""Who is asking: an API token (``Authorization: Bearer``), else the admin session.

The token is the websocket's (``core.services.api_token_authenticate``); a
presented token decides alone, as on the websocket: a bad one is not rescued
by a session cookie. A browser's session must send its CSRF token on writes.
Every authenticated request then counts against its token's (or user's)
rate limit. Which organizations the caller sees is decided per request by
``companyos.api.access``, never cached, so a removed membership takes effect
on the next request.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja.utils import check_csrf

from companyos.api.problems import Problem
from companyos.foundation.ratelimit import hit
from core.models import User
from core.services import api_token_authenticate

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def bearer_token(request: HttpRequest) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    return None


def _refuse_large_body(request: HttpRequest) -> None:
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise Problem(400, "Content-Length is not a number.") from None
    if length > settings.API_MAX_BODY_BYTES:
        raise Problem(413, f"Request bodies are limited to {settings.API_MAX_BODY_BYTES} bytes.")


class ApiAuth:
    """The authentication of every operation; sets ``request.user`` (and ``request.api_token``)."""

    # How the OpenAPI schema (and so the docs page's "Authorize") describes it.
    openapi_security_schema = {"type": "http", "scheme": "bearer", "description": "An API token (cos_...)."}

    def __call__(self, request: HttpRequest) -> User:
        raw = bearer_token(request)
        if raw is not None:
            token = api_token_authenticate(raw=raw)
            if token is None:
                raise Problem(401, "The API token is unknown, expired or revoked.", headers=_challenge())
            request.user, request.api_token = token.user, token
            limited = f"token:{token.pk}"
        elif request.user.is_authenticated:
            if request.method not in SAFE_METHODS and check_csrf(request) is not None:
                raise Problem(403, "A session's writes must carry the CSRF token (X-CSRFToken).")
            request.api_token = None
            limited = f"user:{request.user.pk}"
        else:
            raise Problem(401, "Send an API token as 'Authorization: Bearer <token>'.", headers=_challenge())
        _refuse_large_body(request)
        if "\x00" in request.path or any("\x00" in value for value in request.GET.values()):
            # PostgreSQL text cannot hold NUL: refused here rather than failing in a query.
            raise Problem(400, "The path or query holds a NUL character.")
        retry_after = hit("api", limited, limit=settings.API_RATE_LIMIT_PER_MINUTE)
        if retry_after:
            raise Problem(
                429, f"More than {settings.API_RATE_LIMIT_PER_MINUTE} requests a minute; retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )  # fmt: skip
        return request.user


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="CompanyOS API"'}
