"""Global search: what each model declares searchable, the indexes that serve it, and the bounded queries.

A model opts in with a class attribute next to its fields::

    global_search = Searchable(exact=("id", "external_id"), text=("project_name", "url"))

- ``exact`` fields are compared whole (ids, external ids, hashes, slugs):
  each must lead a btree index (its primary key, a unique constraint, an
  index), so a lookup is one index probe whatever the table's size. A query
  is tried on a field only if it parses as the field's type: a UUID goes to
  the UUID columns, a number to the numeric ones.
- ``text`` fields are matched anywhere inside, ignoring case (Django's
  ``icontains``, ``UPPER(col) LIKE UPPER('%q%')``): each needs the trigram
  index :func:`trigram_index` builds, in the model's ``Meta.indexes``. A
  query that is a UUID skips them (it is an id, not words), and so does one
  shorter than a trigram, which no index can serve, and so does a model
  where the query matched a whole field.

The system check :func:`check_search_indexes` refuses a declared field no
index serves, so the search stays fast at millions of rows. Each model is
asked for a bounded number of rows and nothing is counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.core import checks
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Upper

from companyos.foundation.declarations import declaring_models

DECLARATION = "global_search"
# Trigram indexes serve LIKE patterns of at least one whole trigram.
SHORTEST_TEXT = 3


@dataclass(frozen=True)
class Searchable:
    """The fields of a model the global search looks in (see the module docstring)."""

    exact: tuple[str, ...] = ("id",)
    text: tuple[str, ...] = ()


def trigram_index(field: str, *, name: str) -> GinIndex:
    """The index serving case-insensitive substring search of ``field``: pg_trgm over ``UPPER(field)``."""
    return GinIndex(OpClass(Upper(field), name="gin_trgm_ops"), name=name)


def searchable_models() -> list[tuple[type[models.Model], Searchable]]:
    return declaring_models(DECLARATION, Searchable)


def _parses_as_uuid(query: str) -> bool:
    try:
        uuid.UUID(query)
    except ValueError:
        return False
    return True


def _exact_condition(model: type[models.Model], declaration: Searchable, query: str) -> models.Q | None:
    condition = None
    for name in declaration.exact:
        try:
            value = model._meta.get_field(name).to_python(query)
        except ValidationError:
            continue
        condition = models.Q(**{name: value}) if condition is None else condition | models.Q(**{name: value})
    return condition


def _text_condition(declaration: Searchable, query: str) -> models.Q | None:
    if len(query) < SHORTEST_TEXT or _parses_as_uuid(query) or not declaration.text:
        return None
    condition = models.Q()
    for name in declaration.text:
        condition |= models.Q(**{f"{name}__icontains": query})
    return condition


def matches(model: type[models.Model], declaration: Searchable, query: str, limit: int) -> list[models.Model]:
    """Up to ``limit + 1`` rows of ``model`` matching ``query``: its whole-field matches, else its text matches.

    A whole-field match (an id, an external id) is the object asked for: the
    text search, whose trigrams of a long id are in every row (``dpl``), is
    not run then. The extra row tells the caller there are more, without a
    COUNT. No ORDER BY: sorting by anything but the index's own order would
    read every match before the first row (and the model's default ordering
    could lead the planner to walk another index); text matches are sorted
    by name here.
    """
    query = query.strip()
    exact = _exact_condition(model, declaration, query)
    if exact is not None and (found := list(model._default_manager.filter(exact).order_by()[: limit + 1])):
        return found
    if (text := _text_condition(declaration, query)) is not None:
        return sorted(model._default_manager.filter(text).order_by()[: limit + 1], key=str)
    return []


def _leads_btree_index(model: type[models.Model], name: str) -> bool:
    field = model._meta.get_field(name)
    if field.primary_key or field.unique or field.db_index:
        return True
    meta = model._meta
    led = [index.fields for index in meta.indexes if type(index) is models.Index]
    led += [constraint.fields for constraint in meta.constraints if isinstance(constraint, models.UniqueConstraint)]
    return any(fields and fields[0].lstrip("-") == name for fields in led)


def _has_trigram_index(model: type[models.Model], name: str) -> bool:
    return any(
        isinstance(index, GinIndex) and index.deconstruct() == trigram_index(name, name=index.name).deconstruct()
        for index in model._meta.indexes
    )


def index_problems(model: type[models.Model], declaration: Searchable) -> list[checks.CheckMessage]:
    """An Error for each field of ``declaration`` no index of ``model`` serves: the search would scan the table."""
    label = model._meta.label
    unserved = [
        (f"{label}.global_search compares {name!r} whole, but no btree index leads with it.",
         "Add a models.Index (or a unique constraint) on it, or leave it out of exact.", "foundation.E101")
        for name in declaration.exact if not _leads_btree_index(model, name)
    ] + [
        (f"{label}.global_search matches inside {name!r}, but it has no trigram index.",
         f'Add trigram_index("{name}", name=...) to Meta.indexes and make its migration.', "foundation.E102")
        for name in declaration.text if not _has_trigram_index(model, name)
    ]  # fmt: skip
    return [checks.Error(message, hint=hint, obj=model, id=code) for message, hint, code in unserved]


@checks.register(checks.Tags.models)
def check_search_indexes(app_configs: Iterable | None = None, **kwargs) -> list[checks.CheckMessage]:
    return [
        problem
        for model, declaration in searchable_models()
        if app_configs is None or model._meta.app_config in app_configs
        for problem in index_problems(model, declaration)
    ]
