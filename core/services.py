"""Write paths for core objects: API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from companyos.foundation.events import control_on_commit
from core.models import ApiToken, User

TOKEN_PREFIX = "cos_"  # noqa: S105 -- a marker, not a secret
# Shown in lists to recognise a token: "cos_" plus 8 characters of the secret.
DISPLAY_PREFIX_LENGTH = 12
# last_used_at is a hint, not an audit log: write it at most this often per
# token, so a client reconnecting in a loop causes no write storm.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(*, user: User, name: str, expires_at: dt.datetime | None = None) -> tuple[ApiToken, str]:
    """Create a token for ``user``; return it with the raw token, which is never stored.

    Show the raw token to the user once: only its hash is kept.
    """
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user, name=name, prefix=raw[:DISPLAY_PREFIX_LENGTH], token_hash=_hash(raw), expires_at=expires_at
    )
    token.full_clean()
    token.save()
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke ``token`` (idempotent: the first revocation time is kept).

    New connections with it are refused, and after commit the websocket
    connections it authenticated are closed (code 4401).
    """
    locked = ApiToken.objects.select_for_update().get(pk=token.pk)
    if locked.revoked_at is None:
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        control_on_commit(user_id=locked.user_id, action="token_revoked", token=str(locked.pk))
    token.revoked_at = locked.revoked_at
    return token


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """The usable token ``raw`` of an active user (its ``user`` loaded), or None.

    Records ``last_used_at`` (at most once per :data:`LAST_USED_RESOLUTION`).
    """
    if not raw.startswith(TOKEN_PREFIX):
        return None
    token = ApiToken.objects.select_related("user").filter(token_hash=_hash(raw)).first()
    now = timezone.now()
    if token is None or not token.is_usable(now) or not token.user.is_active:
        return None
    stale_before = now - LAST_USED_RESOLUTION
    if token.last_used_at is None or token.last_used_at < stale_before:
        # Conditional, so concurrent connections write it once between them.
        ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before), pk=token.pk).update(
            last_used_at=now
        )
    return token
