"""Deleting many rows a batch at a time (retention of logs, history and measurements)."""

from __future__ import annotations

from django.db import connections, models, transaction
from django.db.models.expressions import RawSQL


def delete_in_batches(queryset: models.QuerySet, batch_size: int) -> int:
    """Delete the rows of ``queryset``, ``batch_size`` per transaction; returns how many.

    Short transactions keep each batch's locks and WAL small on a busy table.
    Rows go by physical address (``ctid``) in one SQL statement per batch,
    which serves composite primary keys too. That skips Django's collector
    (which would load every row to look for cascades) and so sends no signals
    and cascades nothing: it is for tables nothing points at.
    """
    if batch_size < 1:
        raise ValueError("The batch size must be positive.")
    connection = connections[queryset.db]
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    address = RawSQL(f"{table}.ctid", ())  # noqa: S611 - the name comes from model metadata
    batch = queryset.annotate(row_address=address).order_by().values_list("row_address")
    select, params = batch[:batch_size].query.get_compiler(connection=connection).as_sql()
    # Within the subquery, the table's name refers to the subquery's own FROM.
    sql = f"DELETE FROM {table} WHERE ctid = ANY(ARRAY({select}))"  # noqa: S608 - the ORM built the subquery
    deleted = 0
    while True:
        with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
            cursor.execute(sql, params)
            deleted += cursor.rowcount
            if cursor.rowcount < batch_size:
                return deleted
