"""Changelists for tables of millions of rows (analytics.Event, analytics.Metric).

Django's changelist costs grow with the table in three places, each replaced
here by a bounded one:

- the paginator's ``COUNT(*)``: :class:`EstimatedCountPaginator` counts
  exactly only up to a bound (an index range scan of at most
  ``exact_up_to + 1`` rows) and beyond it takes the planner's row estimate
  (``EXPLAIN``, which reads statistics, not rows);
- the date hierarchy's ``MIN``/``MAX`` and ``SELECT DISTINCT date_trunc(...)``
  (a scan of every row in the period: a BRIN index cannot answer them):
  :func:`bounded_date_range` reads the first and last primary key (UUIDv7,
  so they carry their creation time) from the B-tree's two ends, and the
  choices are generated from that range instead of queried;
- the date hierarchy's filter: it browses ``created_at`` (when the row was
  recorded), and :class:`TimeOrderedChangeList` adds the matching primary-key
  range, so a month of a billion-row table is a B-tree range scan, not a
  filter over every newer row (ordering by id) or a sort of the whole month
  (ordering by time);
- sorting by arbitrary columns, which needs a full sort: lists are ordered by
  the time-ordered primary key only, which every filter's index can serve.

The page itself then runs a fixed set of queries (session, user, the bounded
count, the estimate, the rows with their joined foreign keys, the date
range), whatever the row count and page size. ``bench_admin_changelist``
checks it against a million rows.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import json
import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections, models
from django.utils import timezone
from django.utils.functional import cached_property

from companyos.foundation.ids import uuid7_floor


class EstimatedCountPaginator(Paginator):
    """Exact counts for small results, planner estimates for large ones."""

    exact_up_to = 1000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        # Keeps the list's ordering so the bounded scan walks the same index
        # as the page query and stops after exact_up_to + 1 rows.
        exact = queryset[: self.exact_up_to + 1].count()
        # Always asked, so a page runs the same queries whatever the row count.
        estimate = planner_estimate(queryset)
        return exact if exact <= self.exact_up_to else max(exact, estimate)


def planner_estimate(queryset: models.QuerySet) -> int:
    """The number of rows PostgreSQL expects ``queryset`` to return (no rows read)."""
    try:
        sql, params = queryset.order_by().query.sql_with_params()
    except EmptyResultSet:  # .none(): nothing to ask
        return 0
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def uuid7_time(value: uuid.UUID | None) -> dt.datetime | None:
    """The creation time carried by a UUIDv7 (None for other versions)."""
    if value is None or value.version != 7:
        return None
    return dt.datetime.fromtimestamp((value.int >> 80) / 1000, tz=dt.UTC)


class TimeOrderedChangeList(ChangeList):
    """Turns the date hierarchy's time range into a primary-key range (UUIDv7 ids)."""

    def get_filters(self, request):
        filter_specs, has_filters, lookup_params, may_have_duplicates, has_active_filters = super().get_filters(request)
        if self.date_hierarchy:
            start = lookup_params.get(f"{self.date_hierarchy}__gte")
            end = lookup_params.get(f"{self.date_hierarchy}__lt")
            if start:
                lookup_params["pk__gte"] = [uuid7_floor(int(start[-1].timestamp() * 1000))]
            if end:
                lookup_params["pk__lt"] = [uuid7_floor(int(end[-1].timestamp() * 1000))]
        return filter_specs, has_filters, lookup_params, may_have_duplicates, has_active_filters


def bounded_date_range(model: type[models.Model]) -> tuple[dt.datetime, dt.datetime]:
    """First and last creation time of ``model``'s rows, from its primary key's ends.

    Two index endpoint reads in one query. Rows whose ids are not UUIDv7
    (fixtures with fixed ids) fall back to the current time.
    """
    ids = model._default_manager.values_list("pk", flat=True)
    # PostgreSQL has no min(uuid): the two ends of the index, in one query.
    ends = list(ids.order_by("pk")[:1].union(ids.order_by("-pk")[:1], all=True))
    now = timezone.now()
    times = sorted(filter(None, map(uuid7_time, ends))) or [now]
    return times[0], times[-1]


class _GeneratedDates:
    """Stands in for the changelist queryset inside Django's date_hierarchy tag.

    The tag asks the queryset for its min/max and for the distinct years,
    months or days; here they are generated from the bounded range and the
    period being browsed, without touching the table.
    """

    def __init__(self, cl, first: dt.datetime, last: dt.datetime):
        self.first, self.last = timezone.localtime(first), timezone.localtime(last)
        self.params = cl.params
        self.field = cl.date_hierarchy

    def aggregate(self, **kwargs: Any) -> dict[str, dt.datetime]:
        return {"first": self.first, "last": self.last}

    def datetimes(self, field_name: str, kind: str) -> list[dt.datetime]:
        tz = timezone.get_current_timezone()
        if kind == "year":
            return [dt.datetime(year, 1, 1, tzinfo=tz) for year in range(self.first.year, self.last.year + 1)]
        # Without a parameter, the tag has chosen the range's only year (month).
        year = int(self.params.get(f"{self.field}__year", self.first.year))
        if kind == "month":
            return [dt.datetime(year, month, 1, tzinfo=tz) for month in range(1, 13)]
        month = int(self.params.get(f"{self.field}__month", self.first.month))
        return [dt.datetime(year, month, day, tzinfo=tz) for day in range(1, calendar.monthrange(year, month)[1] + 1)]

    dates = datetimes


def bounded_date_hierarchy(cl) -> dict:
    """Django's date hierarchy, fed generated dates instead of a table scan."""
    if not cl.date_hierarchy:
        return {"show": False}
    bounded = copy.copy(cl)
    bounded.queryset = _GeneratedDates(cl, *bounded_date_range(cl.model))
    return date_hierarchy(bounded)


class RecentValuesFilter(admin.SimpleListFilter):
    """Filter on a column's values, offered once an organization is chosen.

    Its choices are the values seen in the organization's latest
    ``sample_size`` rows (an index range scan), not ``SELECT DISTINCT`` over
    millions of rows; the filter then uses the (organization, column, time)
    index.
    """

    sample_size = 1000
    field_name = ""

    def lookups(self, request, model_admin):
        organization = request.GET.get("organization__id__exact")
        if not organization:
            return ()
        recent = model_admin.model._default_manager.filter(organization_id=organization).order_by("-pk")
        values = recent.values_list(self.field_name, flat=True)[: self.sample_size]
        return [(value, value) for value in sorted(set(values))]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.field_name: self.value()})
        return queryset


def recent_values_filter(field_name: str) -> type[RecentValuesFilter]:
    return type(
        f"{field_name.title()}Filter",
        (RecentValuesFilter,),
        {"field_name": field_name, "parameter_name": field_name, "title": field_name.replace("_", " ")},
    )


class LargeTableAdmin(admin.ModelAdmin):
    """Read-only changelist settings for append-only tables of millions of rows.

    A ``date_hierarchy`` must name the creation time (``created_at``), which
    the UUIDv7 primary key carries.
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    # The UUIDv7 primary key is time-ordered: newest first without a sort.
    ordering = ("-pk",)
    sortable_by = ()
    list_per_page = 100
    change_list_template = "admin/companyos/large_change_list.html"

    def get_changelist(self, request, **kwargs):
        return TimeOrderedChangeList

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
