"""Bulk ingest of metrics and events: validate a batch, COPY it, roll it up.

``record_metrics(rows)`` and ``record_events(rows)`` take an iterable of plain
dicts keyed by the model's field names (``organization`` etc. as ids). A batch
is all-or-nothing: every row is validated, and when any is bad nothing is
written and ``IngestError`` lists each bad row with its index and reason.
A batch is written with one binary ``COPY`` on Django's connection, inside
the caller's transaction (in a savepoint, so a refused batch leaves the
caller's transaction usable); its aggregates are added to the rollups in the
same transaction, and the organizations' analytics cache is invalidated once
it commits.

The batch is held in memory while it is validated; send batches of up to a
few hundred thousand rows.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.utils import timezone

from agents.models import Agent
from analytics import rollups
from analytics.cache import invalidate_on_commit
from analytics.models import ROLLUP_WIDTHS, Category, Event, Metric, Source
from companyos.foundation.events import topic_prefixes
from companyos.foundation.ids import uuid7
from core.models import Organization, User

_FINEST_SECONDS = int(rollups.FINEST_WIDTH.total_seconds())
_WIDTHS = [(width, int(width.total_seconds())) for width in ROLLUP_WIDTHS]


@dataclass(frozen=True)
class RowError:
    """Why one row of a batch was refused (``field`` is "" for the row as a whole)."""

    index: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.index}: {self.field or 'row'}: {self.reason}"


class IngestError(ValidationError):
    """A batch had bad rows; nothing of it was written. ``errors`` lists them all."""

    def __init__(self, errors: list[RowError]):
        super().__init__([str(error) for error in errors])
        self.errors = errors


@dataclass(frozen=True)
class IngestResult:
    """What a batch wrote: rows in total and per organization."""

    rows: int
    by_organization: dict[UUID, int] = field(default_factory=dict)


class _Invalid(Exception):
    pass


# --- Field cleaners: return the value to write, or raise _Invalid(reason) ---------


def _uuid(value: Any) -> UUID:
    if type(value) is UUID:
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise _Invalid("not a UUID") from None


def _optional_uuid(value: Any) -> UUID | None:
    return None if value is None else _uuid(value)


def _aware_datetime(value: Any) -> datetime:
    if type(value) is datetime and value.utcoffset() is not None:
        return value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid("not an ISO 8601 timestamp") from None
    if not isinstance(value, datetime):
        raise _Invalid("not a datetime")
    if value.utcoffset() is None:
        raise _Invalid("timezone-naive timestamp")
    return value


def _finite(value: Any) -> float:
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("not a number")
    value = float(value)
    if not math.isfinite(value):
        raise _Invalid("not finite")
    return value


def _json_object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise _Invalid("not a JSON object")
    return value


def _text(model: type[models.Model], name: str, *, blank: bool) -> Callable[[Any], str]:
    max_length = model._meta.get_field(name).max_length

    def clean(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid("not a string")
        if not value and not blank:
            raise _Invalid("empty")
        if len(value) > max_length:
            raise _Invalid(f"longer than {max_length} characters")
        return value

    return clean


_event_type = _text(Event, "event_type", blank=False)


def _analytics_event_type(value: Any) -> str:
    """An event type of the analytics stream's own: not one a model's state change publishes."""
    value = _event_type(value)
    if value.startswith(topic_prefixes()):
        prefix = next(prefix for prefix in topic_prefixes() if value.startswith(prefix))
        raise _Invalid(f"'{prefix}…' events are published by the platform's own changes, not ingested")
    return value


def _choice(choices: type[models.TextChoices]) -> Callable[[Any], str]:
    allowed = frozenset(choices.values)

    def clean(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise _Invalid(f"not one of {', '.join(sorted(allowed))}")
        return value

    return clean


_REQUIRED = object()
_NOW = object()  # default: the time of the call, like the model's default=timezone.now


@dataclass(frozen=True)
class _Field:
    column: str
    pg_type: str
    clean: Callable[[Any], Any]
    default: Any = _REQUIRED


@dataclass(frozen=True)
class _Table:
    """How to validate and COPY one model's rows."""

    model: type[models.Model]
    fields: dict[str, _Field]  # by input key, in COPY column order
    # Input keys whose ids must exist, with the model they point to.
    references: dict[str, type[models.Model]]
    time_field: str
    series_field: str

    @property
    def copy_sql(self) -> str:
        columns = ", ".join(f'"{f.column}"' for f in self.fields.values())
        return (
            f'COPY {self.model._meta.db_table} ("id", "created_at", "updated_at", {columns}) FROM STDIN (FORMAT BINARY)'
        )

    @property
    def pg_types(self) -> list[str]:
        return ["uuid", "timestamptz", "timestamptz", *(f.pg_type for f in self.fields.values())]


METRICS = _Table(
    model=Metric,
    fields={
        "organization": _Field("organization_id", "uuid", _uuid),
        "name": _Field("name", "text", _text(Metric, "name", blank=False)),
        "value": _Field("value", "float8", _finite),
        "unit": _Field("unit", "text", _text(Metric, "unit", blank=True), ""),
        "dimensions": _Field("dimensions", "jsonb", _json_object, {}),
        "timestamp": _Field("timestamp", "timestamptz", _aware_datetime),
        "source": _Field("source", "text", _choice(Source), Source.SYSTEM.value),
    },
    references={"organization": Organization},
    time_field="timestamp",
    series_field="name",
)

EVENTS = _Table(
    model=Event,
    fields={
        "organization": _Field("organization_id", "uuid", _uuid),
        "event_type": _Field("event_type", "text", _analytics_event_type),
        "category": _Field("category", "text", _choice(Category)),
        "source": _Field("source", "text", _choice(Source), Source.SYSTEM.value),
        "actor_user": _Field("actor_user_id", "uuid", _optional_uuid, None),
        "actor_agent": _Field("actor_agent_id", "uuid", _optional_uuid, None),
        "subject_type": _Field("subject_type", "text", _text(Event, "subject_type", blank=True), ""),
        "subject_id": _Field("subject_id", "uuid", _optional_uuid, None),
        "payload": _Field("payload", "jsonb", _json_object, {}),
        "occurred_at": _Field("occurred_at", "timestamptz", _aware_datetime, _NOW),
    },
    references={"organization": Organization, "actor_user": User, "actor_agent": Agent},
    time_field="occurred_at",
    series_field="event_type",
)
# A synthetic history (generate_data) stands for the platform's own events too.
PLATFORM_EVENTS = replace(EVENTS, fields={**EVENTS.fields, "event_type": _Field("event_type", "text", _event_type)})


def _known_ids(table: _Table, rows: Sequence[Any]) -> dict[str, set[UUID]]:
    """Which of the batch's referenced ids exist: one query per referenced model."""
    known = {}
    for key, model in table.references.items():
        values = [row.get(key) for row in rows if isinstance(row, Mapping)]
        try:
            distinct = set(values)
        except TypeError:  # an unhashable value, reported with its row
            distinct = {value for value in values if isinstance(value, Hashable)}
        wanted = set()
        for value in distinct - {None}:
            with contextlib.suppress(_Invalid, TypeError):  # reported with its row
                wanted.add(_uuid(value))
        known[key] = set(model._base_manager.filter(pk__in=wanted).values_list("pk", flat=True)) if wanted else set()
    return known


class _RowCleaner:
    """Cleans the rows of one batch; what does not depend on the row is worked out once."""

    def __init__(self, table: _Table, now: datetime, known: dict[str, set[UUID]]) -> None:
        self.keys = table.fields.keys()
        self.steps = [
            (
                key,
                spec.clean,
                now if spec.default is _NOW else spec.default,
                known.get(key),
                f"unknown {table.references[key]._meta.verbose_name}" if key in known else "",
            )
            for key, spec in table.fields.items()
        ]

    def __call__(self, row: Any) -> tuple[tuple, list[tuple[str, str]]]:
        """The row as a tuple in COPY column order, and its problems as (field, reason) pairs."""
        if type(row) is not dict and not isinstance(row, Mapping):  # the exact check first: it is the common case
            return (), [("", "not a mapping")]
        problems = []
        values = []
        for key, clean, default, known, unknown_reason in self.steps:
            value = row.get(key, _REQUIRED)
            if value is _REQUIRED:
                if default is _REQUIRED:
                    problems.append((key, "required"))
                values.append(default)
                continue
            try:
                value = clean(value)
            except _Invalid as invalid:
                problems.append((key, str(invalid)))
            else:
                if known is not None and value is not None and value not in known:
                    problems.append((key, unknown_reason))
            values.append(value)
        if not row.keys() <= self.keys:
            problems.extend((key, "unknown field") for key in sorted(row.keys() - self.keys))
        return tuple(values), problems


class _Aggregator:
    """Partial aggregates of a batch per (organization, series, finest bucket).

    Keyed by the bucket's start in epoch seconds so the per-row work is
    arithmetic; datetimes are built once per bucket in ``finish``.
    """

    def __init__(self, table: _Table) -> None:
        names = list(table.fields)
        self.org_at = names.index("organization")
        self.series_at = names.index(table.series_field)
        self.time_at = names.index(table.time_field)
        self.value_at = names.index("value") if "value" in table.fields else None
        self.buckets: dict[tuple, Any] = {}

    def add(self, row: tuple) -> None:
        seconds = row[self.time_at].timestamp()
        key = (row[self.org_at], row[self.series_at], seconds - seconds % _FINEST_SECONDS)
        if self.value_at is None:
            self.buckets[key] = self.buckets.get(key, 0) + 1
            return
        value = row[self.value_at]
        agg = self.buckets.get(key)
        if agg is None:
            self.buckets[key] = [1, value, value, value]
            return
        agg[0] += 1
        agg[1] += value
        if value < agg[2]:
            agg[2] = value
        elif value > agg[3]:
            agg[3] = value

    def finish(self) -> tuple[dict[UUID, int], dict]:
        """(rows per organization, aggregates for every rollup width keyed by bucket datetime).

        Flooring epoch seconds matches ``date_bin(width, ts, ROLLUP_ORIGIN)``
        because the origin is a whole number of every width after the epoch.
        """
        per_org: dict[UUID, int] = {}
        rolled: dict[tuple, Any] = {}
        for (org, series, start), agg in self.buckets.items():
            per_org[org] = per_org.get(org, 0) + (agg if self.value_at is None else agg[0])
            for width, seconds in _WIDTHS:
                key = (org, series, width, start - start % seconds)
                rolled[key] = _merge(rolled.get(key), agg)
        return per_org, {
            (org, series, width, datetime.fromtimestamp(start, tz=UTC)): agg
            for (org, series, width, start), agg in rolled.items()
        }


def _merge(into: Any, agg: Any) -> Any:
    """Combine two partial aggregates: counts (events) or [count, sum, min, max] (metrics)."""
    if into is None:
        return agg if isinstance(agg, int) else list(agg)
    if isinstance(agg, int):
        return into + agg
    into[0] += agg[0]
    into[1] += agg[1]
    into[2] = min(into[2], agg[2])
    into[3] = max(into[3], agg[3])
    return into


def _record(table: _Table, rows: Iterable[Mapping[str, Any]], add_rollups: Callable[..., None]) -> IngestResult:
    rows = rows if isinstance(rows, Sequence) else list(rows)
    if not rows:
        return IngestResult(rows=0)
    now = timezone.now()
    clean = _RowCleaner(table, now, _known_ids(table, rows))
    aggregator = _Aggregator(table)
    errors: list[RowError] = []
    # Validation streams into COPY so the client's work overlaps the server's;
    # after the first bad row nothing more is sent, the rest is only checked,
    # and raising inside the savepoint takes back what was sent.
    with transaction.atomic():
        rollups.hold_ingest_lock()
        with connection.cursor() as cursor, cursor.copy(table.copy_sql) as copy:
            copy.set_types(table.pg_types)
            for index, row in enumerate(rows):
                values, problems = clean(row)
                if problems:
                    errors.extend(RowError(index, key, reason) for key, reason in problems)
                elif not errors:
                    copy.write_row((uuid7(), now, now, *values))
                    aggregator.add(values)
            if errors:
                raise IngestError(errors)
        per_org, aggregates = aggregator.finish()
        add_rollups(aggregates=aggregates)
        invalidate_on_commit(per_org)
    return IngestResult(rows=len(rows), by_organization=per_org)


def record_metrics(rows: Iterable[Mapping[str, Any]]) -> IngestResult:
    """Validate and write a batch of metric samples (all or nothing); see the module docstring.

    Keys: ``organization`` (id), ``name``, ``value`` (finite number) and
    ``timestamp`` (timezone-aware) are required; ``unit``, ``dimensions`` and
    ``source`` are optional.
    """
    return _record(METRICS, rows, rollups.metric_rollups_add)


def record_events(rows: Iterable[Mapping[str, Any]], *, as_platform: bool = False) -> IngestResult:
    """Validate and write a batch of events (all or nothing); see the module docstring.

    Keys: ``organization`` (id), ``event_type`` and ``category`` are required;
    ``source``, ``actor_user``/``actor_agent`` (ids), ``subject_type``,
    ``subject_id``, ``payload`` and ``occurred_at`` (default: now) are optional.

    An event type under a declared topic (``deployment.…``) is refused: the
    websocket delivers those as the objects' changes, so only the changes
    store them. ``as_platform`` lets a synthetic history of the platform's
    own events through (sample data).
    """
    return _record(PLATFORM_EVENTS if as_platform else EVENTS, rows, rollups.event_rollups_add)
