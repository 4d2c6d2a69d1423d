"""Field encryption at rest with keys of their own.

``FIELD_ENCRYPTION_KEYS`` is a list of Fernet keys, newest first. The newest
encrypts; every key is tried to decrypt, so a key can be rotated in without
losing rows written under the previous one (``manage.py
rotate_encryption_keys`` then re-encrypts every row under the newest key).
The keys are independent of ``SECRET_KEY``: rotating one never loses the
other.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["InvalidToken", "build_fernet", "decrypt", "encrypt", "fernet", "rotate"]


def build_fernet(keys: list[str] | tuple[str, ...]) -> MultiFernet:
    """Build a MultiFernet from key strings, failing loudly on bad input."""
    if not keys:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is empty: set at least one Fernet key "
            "(generate one with `python manage.py generate_encryption_key`)."
        )
    fernets = []
    for position, key in enumerate(keys):
        try:
            fernets.append(Fernet(key.strip().encode()))
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS[{position}] is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)."
            ) from exc
    return MultiFernet(fernets)


@lru_cache(maxsize=1)
def fernet() -> MultiFernet:
    return build_fernet(settings.FIELD_ENCRYPTION_KEYS)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return fernet().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """Re-encrypt a token under the newest key (it must decrypt under any)."""
    return fernet().rotate(token.encode()).decode()
