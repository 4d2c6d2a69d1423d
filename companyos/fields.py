"""Model fields shared by every app."""

from __future__ import annotations

import json
from typing import Any

from django.db import models

from companyos import crypto

# Fernet tokens always start with this (version byte 0x80, base64-encoded).
FERNET_PREFIX = "gAAAAA"


class EncryptedTextField(models.TextField):
    """A text value stored as a Fernet token; the column never holds plaintext.

    Python code sees the plaintext. Serialization (``dumpdata``) emits the
    token, and deserialization accepts either a token (a dump being restored)
    or plaintext (a hand-written fixture), so both round-trip without
    double encryption.
    """

    description = "Text encrypted at rest with FIELD_ENCRYPTION_KEYS"

    def _decode(self, token: str) -> Any:
        return crypto.decrypt(token)

    def _encode(self, value: Any) -> str:
        return crypto.encrypt(value)

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return self._empty(value)
        return self._decode(value)

    def _empty(self, value):
        return value

    def to_python(self, value):
        if isinstance(value, str) and value.startswith(FERNET_PREFIX):
            try:
                return self._decode(value)
            except crypto.InvalidToken:
                return value
        return value

    def get_prep_value(self, value):
        if value is None:
            return None
        if value == "" and not isinstance(self, EncryptedJSONField):
            return ""
        return self._encode(value)

    def value_to_string(self, obj) -> str:
        value = self.value_from_object(obj)
        return "" if value in (None, "") else self.get_prep_value(value)

    def get_internal_type(self) -> str:
        return "TextField"


class EncryptedJSONField(EncryptedTextField):
    """A JSON document (e.g. OAuth credentials) encrypted as one token."""

    description = "JSON encrypted at rest with FIELD_ENCRYPTION_KEYS"

    def _decode(self, token: str) -> Any:
        return json.loads(crypto.decrypt(token))

    def _encode(self, value: Any) -> str:
        return crypto.encrypt(json.dumps(value, sort_keys=True))

    def _empty(self, value):
        return {}

    def to_python(self, value):
        value = super().to_python(value)
        if isinstance(value, str):
            return json.loads(value) if value else {}
        return value


def masked(value: str | None, visible: int = 4) -> str:
    """Show the last few characters of a secret and hide the rest."""
    if not value:
        return ""
    tail = value[-visible:] if len(value) > visible * 3 else ""
    return "•" * 8 + tail
