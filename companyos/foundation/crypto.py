"""Field encryption at rest with keys of their own.

``FIELD_ENCRYPTION_KEYS`` is a list of Fernet keys, newest first. The newest
encrypts; every key is tried to decrypt, so a key can be rotated in without
losing rows written under the previous one (``manage.py
rotate_encryption_keys`` then re-encrypts every row under the newest key).
The keys are independent of ``SECRET_KEY``: rotating one never loses the
other.

The keys are validated when Django starts (``core.apps.CoreConfig.ready``
calls :func:`fernet`), so a missing or malformed key stops the process
before it serves anything; ``companyos.foundation.checks`` then verifies that the keys
actually decrypt the rows in the database.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = [
    "InvalidToken",
    "build_fernet",
    "decrypt",
    "encrypt",
    "fernet",
    "generate_key",
    "is_current",
    "looks_like_token",
    "rotate",
]

# Django cannot start without a valid key, so the hint must not need Django.
_HOW_TO_GENERATE = (
    'generate one with `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
)

# Version byte 0x80 + 8-byte timestamp + 16-byte IV + one AES block + 32-byte HMAC.
_MIN_TOKEN_BYTES = 1 + 8 + 16 + 16 + 32


def generate_key() -> str:
    """A new random Fernet key, as the string FIELD_ENCRYPTION_KEYS expects."""
    return Fernet.generate_key().decode()


def build_fernet(keys: list[str] | tuple[str, ...]) -> MultiFernet:
    """Build a MultiFernet from key strings, failing loudly on bad input."""
    if not keys or not any(key.strip() for key in keys):
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS is empty: set at least one Fernet key ({_HOW_TO_GENERATE}).")
    fernets = []
    for position, key in enumerate(keys):
        try:
            fernets.append(Fernet(key.strip().encode()))
        except (ValueError, TypeError, binascii.Error) as exc:
            # The key itself is never echoed: it may be a real secret with a typo.
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS[{position}] is not a valid Fernet key "
                f"(32 url-safe base64-encoded bytes; {_HOW_TO_GENERATE})."
            ) from exc
    return MultiFernet(fernets)


@lru_cache(maxsize=1)
def fernet() -> MultiFernet:
    """The MultiFernet for the configured keys (built once per process)."""
    return build_fernet(settings.FIELD_ENCRYPTION_KEYS)


@lru_cache(maxsize=1)
def _newest() -> Fernet:
    return Fernet(settings.FIELD_ENCRYPTION_KEYS[0].strip().encode())


@receiver(setting_changed)
def _reset_on_key_change(*, setting: str, **kwargs) -> None:
    # Tests switch keys with override_settings; the cached Fernets must follow.
    if setting == "FIELD_ENCRYPTION_KEYS":
        fernet.cache_clear()
        _newest.cache_clear()


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return fernet().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """Re-encrypt a token under the newest key (it must decrypt under any)."""
    return fernet().rotate(token.encode()).decode()


def is_current(token: str) -> bool:
    """Whether the token is already encrypted under the newest key."""
    try:
        _newest().decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def looks_like_token(value: str) -> bool:
    """Whether a string has the shape of a Fernet token (not whether it decrypts)."""
    if not value.startswith("gAAAAA"):
        return False
    try:
        raw = base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= _MIN_TOKEN_BYTES and raw[0] == 0x80
