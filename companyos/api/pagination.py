"""Cursor (keyset) pagination: no ``COUNT(*)``, no ``OFFSET``.

A page is ``WHERE (ordering columns) < (the last row's) ORDER BY ... LIMIT
n + 1``: the extra row says whether a next page exists, and the cost of a
page is the same on the first and the millionth. Each list's orderings are
chosen so an index of the model serves them (companyos/api/resources.py).

A cursor is opaque to clients: base64url of the ordering's name and the last
row's values. One that does not decode, or belongs to another ordering, is
a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Model, Q, QuerySet

from companyos.api.problems import Problem


@dataclass(frozen=True)
class Ordering:
    """Columns (not null, the last one unique) read in one direction."""

    columns: tuple[str, ...]
    descending: bool = True

    def order_by(self) -> list[str]:
        return [f"-{column}" if self.descending else column for column in self.columns]

    def after(self, values: list[Any]) -> Q:
        """Rows past ``values``. The leading ``<=`` on the first column is redundant
        for the result but gives the planner an index range to start from."""
        less = "lt" if self.descending else "gt"
        first = self.columns[0]
        past = Q()
        for depth in range(len(self.columns) - 1, -1, -1):
            equal = {column: values[index] for index, column in enumerate(self.columns[:depth])}
            past |= Q(**equal, **{f"{self.columns[depth]}__{less}": values[depth]})
        return Q(**{f"{first}__{less}e": values[0]}) & past


def encode_cursor(name: str, row: Model, ordering: Ordering) -> str:
    values = [getattr(row, column) for column in ordering.columns]
    text = json.dumps([name, [value.isoformat() if hasattr(value, "isoformat") else str(value) for value in values]])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, name: str, ordering: Ordering, model: type[Model]) -> list[Any]:
    try:
        given_name, raw_values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if given_name != name or len(raw_values) != len(ordering.columns):
            raise ValueError
        return [
            model._meta.get_field(column).to_python(raw)
            for column, raw in zip(ordering.columns, raw_values, strict=True)
        ]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, ValidationError):
        raise Problem(400, "The cursor is not one this list gave for this ordering.") from None


def page(
    queryset: QuerySet, *, name: str, ordering: Ordering, cursor: str | None, limit: int
) -> tuple[list, str | None]:
    """One page of ``queryset`` and the cursor of the next one (None on the last page)."""
    if cursor:
        queryset = queryset.filter(ordering.after(decode_cursor(cursor, name, ordering, queryset.model)))
    rows = list(queryset.order_by(*ordering.order_by())[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(name, rows[-1], ordering)
