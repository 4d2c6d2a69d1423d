"""Start-up checks: the encryption keys must decrypt what the database holds.

``crypto.fernet()`` (called from ``core.apps.CoreConfig.ready``) already
refuses a missing or malformed key. A well-formed but *wrong* key is only
visible against data, so :func:`check_encryption_keys` reads one stored token
per encrypted column (raw SQL, newest row first) and tries to decrypt it.

It is registered as a Django system check, so ``runserver``, ``migrate``,
``check`` and every other management command refuse to run with a wrong key.
ASGI/WSGI servers run no system checks: ``companyos/asgi.py`` calls
:func:`verify_encryption_keys`, which raises instead.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, router

from companyos.foundation import crypto
from companyos.foundation.fields import EncryptedTextField


def encrypted_columns() -> Iterator[tuple[type, list[EncryptedTextField]]]:
    """Every concrete model with encrypted fields, and those fields."""
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if fields:
            yield model, fields


def _existing_columns(connection, table: str) -> set[str] | None:
    with connection.cursor() as cursor:
        if table not in connection.introspection.table_names(cursor):
            return None
        return {column.name for column in connection.introspection.get_table_description(cursor, table)}


def _sample_token(connection, table: str, column: str) -> str | None:
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        # The most recent row (UUIDv7 ids follow time): the one written under the newest key.
        cursor.execute(
            f"SELECT {qn(column)} FROM {qn(table)} WHERE {qn(column)} <> '' ORDER BY {qn('id')} DESC LIMIT 1"  # noqa: S608
        )
        row = cursor.fetchone()
    return row[0] if row else None


@checks.register("encryption")
def check_encryption_keys(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """Decrypt one stored value per encrypted column; an Error names each column that fails."""
    messages: list[checks.CheckMessage] = []
    try:
        crypto.fernet()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="companyos.E001")]
    for model, fields in encrypted_columns():
        if app_configs is not None and model._meta.app_config not in app_configs:
            continue
        connection = connections[router.db_for_read(model)]
        table = model._meta.db_table
        try:
            present = _existing_columns(connection, table)
            if present is None:  # not migrated yet: nothing to decrypt
                continue
            tokens = {f.column: _sample_token(connection, table, f.column) for f in fields if f.column in present}
        except DatabaseError as exc:
            messages.append(
                checks.Warning(
                    f"Could not verify FIELD_ENCRYPTION_KEYS against {table}: database unavailable ({exc}).",
                    id="companyos.W001",
                )
            )
            return messages
        for column, token in tokens.items():
            if token is None:
                continue
            try:
                crypto.decrypt(token)
            except crypto.InvalidToken:
                plain = not crypto.looks_like_token(token)
                messages.append(
                    checks.Error(
                        f"{table}.{column} holds a value that FIELD_ENCRYPTION_KEYS cannot decrypt"
                        + (" (it is not even encrypted)." if plain else "."),
                        hint="Set FIELD_ENCRYPTION_KEYS to the keys this database was encrypted with "
                        "(newest first; keep old keys listed until `manage.py rotate_encryption_keys` has run).",
                        obj=model,
                        id="companyos.E002",
                    )
                )
    return messages


def verify_encryption_keys() -> None:
    """Raise ImproperlyConfigured if the keys cannot decrypt the database (for ASGI/WSGI start)."""
    try:
        errors = [m for m in check_encryption_keys() if m.is_serious()]
    finally:
        # Called at import time in the server's main thread: do not leave a
        # connection behind for a thread that will never use it again (but
        # never close one that a caller's transaction is using).
        for conn in connections.all(initialized_only=True):
            if not conn.in_atomic_block:
                conn.close()
    if errors:
        raise ImproperlyConfigured("\n".join(m.msg for m in errors))
