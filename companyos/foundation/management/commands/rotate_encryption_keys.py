"""Re-encrypt every encrypted column of every model under the newest key.

Works on the raw tokens (``MultiFernet.rotate``): model ``save()`` and its
signals are not involved (a rotation is not a change anyone should be
notified about) and ``updated_at`` keeps its meaning. Rows already under the
newest key are left alone, so a second run re-encrypts nothing. The whole
run is one transaction, read in primary-key batches under ``FOR UPDATE``: a
value no key decrypts aborts it, naming the row, and changes nothing.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from companyos.foundation import crypto
from companyos.foundation.checks import encrypted_columns


class Command(BaseCommand):
    help = "Re-encrypt every encrypted value under the newest FIELD_ENCRYPTION_KEYS key (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per read/write round (default 500).")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args, batch_size: int, database: str, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        connection = connections[database]
        totals = [0, 0]
        with transaction.atomic(using=database):
            for model, fields in encrypted_columns():
                rotated, current = self._rotate_table(
                    connection, model._meta.db_table, model._meta.pk.column, [f.column for f in fields], batch_size
                )
                totals[0] += rotated
                totals[1] += current
                self.stdout.write(f"{model._meta.label}: {rotated} re-encrypted, {current} already current")
        self.stdout.write(
            self.style.SUCCESS(f"Done: {totals[0]} value(s) re-encrypted, {totals[1]} already under the newest key.")
        )

    def _rotate_table(self, connection, table: str, pk: str, columns: list[str], batch_size: int) -> tuple[int, int]:
        """Keyset-paginate the table by primary key, rotating each batch in place."""
        qn = connection.ops.quote_name
        column_list = ", ".join(qn(c) for c in columns)
        first_batch = f"SELECT {qn(pk)}, {column_list} FROM {qn(table)} ORDER BY {qn(pk)} LIMIT %s FOR UPDATE"  # noqa: S608
        next_batch = (
            f"SELECT {qn(pk)}, {column_list} FROM {qn(table)} WHERE {qn(pk)} > %s "  # noqa: S608
            f"ORDER BY {qn(pk)} LIMIT %s FOR UPDATE"
        )
        update = f"UPDATE {qn(table)} SET {', '.join(f'{qn(c)} = %s' for c in columns)} WHERE {qn(pk)} = %s"  # noqa: S608
        rotated = current = 0
        with connection.cursor() as cursor:
            cursor.execute(first_batch, [batch_size])
            while rows := cursor.fetchall():
                updates = []
                for pk_value, *tokens in rows:
                    new_tokens = [
                        self._rotated(table, column, pk_value, token)
                        for column, token in zip(columns, tokens, strict=True)
                    ]
                    changed = sum(new is not old for new, old in zip(new_tokens, tokens, strict=True))
                    current += sum(1 for t in tokens if t) - changed
                    if changed:
                        rotated += changed
                        updates.append([*new_tokens, pk_value])
                if updates:
                    cursor.executemany(update, updates)
                cursor.execute(next_batch, [rows[-1][0], batch_size])
        return rotated, current

    @staticmethod
    def _rotated(table: str, column: str, pk_value, token: str | None) -> str | None:
        """The token under the newest key; the same object when nothing needs doing."""
        if not token or crypto.is_current(token):
            return token
        try:
            return crypto.rotate(token)
        except crypto.InvalidToken as exc:
            raise CommandError(
                f"{table}.{column} of row {pk_value} cannot be decrypted with FIELD_ENCRYPTION_KEYS; "
                "nothing was changed."
            ) from exc
