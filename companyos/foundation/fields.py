"""Model fields shared by every app: values encrypted at rest.

The column holds a Fernet token (``companyos.foundation.crypto``); Python code sees the
plaintext. Serialization (``dumpdata``) emits the token, never the
plaintext, and deserialization (``loaddata``) accepts either a token (a dump
being restored) or plaintext (a hand-written fixture), so both round-trip
without double encryption. A token that none of the configured keys
decrypts fails loudly instead of being stored as if it were plaintext.

Only ``isnull`` lookups are offered: every encryption uses a fresh IV, so an
equality filter on the column could never match and would only mislead.

For the same reason a value read from the column remembers its token, and
saving it unchanged writes that token back: re-encrypting would change the
column on every save, and the change history would record each save as a
change of the secret.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from companyos.foundation import crypto
from companyos.foundation.jsonbounds import BoundedJSONFormField


class _StoredStr(str):
    pass


class _StoredDict(dict):
    pass


class _StoredList(list):
    pass


# What a decrypted value becomes to remember its token (other JSON values do not).
_REMEMBERING = {str: _StoredStr, dict: _StoredDict, list: _StoredList}


class EncryptedTextField(models.TextField):
    """A text value stored as a Fernet token; the column never holds plaintext.

    The empty string is stored as is: there is nothing to hide in it, and it
    keeps "not set" visible to SQL.
    """

    description = "Text encrypted at rest with FIELD_ENCRYPTION_KEYS"
    # Whether "" is stored as "" rather than encrypted.
    stores_empty_plain = True

    def _decode(self, token: str) -> Any:
        return crypto.decrypt(token)

    def _plaintext(self, value: Any) -> str:
        return str(value)

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        if value == "":
            return self._empty()
        # A value that does not decrypt raises InvalidToken: loud, on purpose.
        decoded = self._decode(value)
        remembering = _REMEMBERING.get(type(decoded))
        if remembering is None:
            return decoded
        stored = remembering(decoded)
        # With the plaintext it had, to tell later whether it was changed in place (a dict).
        stored.stored_as = (self._plaintext(decoded), value)
        return stored

    def _empty(self) -> Any:
        return ""

    def to_python(self, value):
        if isinstance(value, str) and crypto.looks_like_token(value):
            try:
                return self._decode(value)
            except crypto.InvalidToken as exc:
                raise ValidationError(
                    f"{self.model.__name__}.{self.name}: this encrypted value cannot be decrypted with "
                    "FIELD_ENCRYPTION_KEYS (was it encrypted under another key?).",
                    code="undecryptable",
                ) from exc
        return value

    def get_prep_value(self, value):
        if value is None:
            return None
        if value == "" and self.stores_empty_plain:
            return ""
        plaintext = self._plaintext(value)
        stored_plaintext, token = getattr(value, "stored_as", (None, None))
        # A token under an older key is replaced, as rotate_encryption_keys would.
        if plaintext == stored_plaintext and crypto.is_current(token):
            return token
        return crypto.encrypt(plaintext)

    def value_to_string(self, obj) -> str:
        # dumpdata goes through here: it gets a token, never the plaintext.
        value = self.value_from_object(obj)
        return "" if value in (None, "") else self.get_prep_value(value)

    def get_lookup(self, lookup_name):
        return super().get_lookup(lookup_name) if lookup_name == "isnull" else None

    def get_internal_type(self) -> str:
        return "TextField"


class EncryptedJSONField(EncryptedTextField):
    """A JSON document (e.g. OAuth credentials) encrypted as one token."""

    description = "JSON encrypted at rest with FIELD_ENCRYPTION_KEYS"
    stores_empty_plain = False  # every document, even {}, is encrypted

    def _decode(self, token: str) -> Any:
        return json.loads(crypto.decrypt(token))

    def _plaintext(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    def _empty(self) -> Any:
        return {}

    def to_python(self, value):
        value = super().to_python(value)
        if isinstance(value, str):
            try:
                return json.loads(value) if value else {}
            except json.JSONDecodeError as exc:
                raise ValidationError(f"{self.model.__name__}.{self.name}: not valid JSON.", code="invalid") from exc
        return value

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": BoundedJSONFormField, **kwargs})


def masked(value: str | None, visible: int = 4) -> str:
    """Show the last few characters of a secret and hide the rest."""
    if not value:
        return ""
    tail = value[-visible:] if len(value) > visible * 3 else ""
    return "•" * 8 + tail
