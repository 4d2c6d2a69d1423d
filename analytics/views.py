"""The analytics dashboard: an admin page of metric charts and event counts.

Served under the admin (``/admin/analytics/dashboard/``) and wrapped in
``admin_view``, so it is staff-only and shares the admin's look. Every
number comes from ``analytics.selectors``, which read rollups for long
ranges and cache per organization.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from analytics.charts import column_chart, line_chart
from analytics.rollups import bucket_floor
from analytics.selectors import event_counts, metric_names, metric_series
from core.models import Organization

# Range choice -> (span, metric bucket, event bucket). Metric charts get
# 60..720 points; event columns stay under ~120 so each is wide enough to see.
RANGES: dict[str, tuple[timedelta, timedelta, timedelta]] = {
    "1h": (timedelta(hours=1), timedelta(minutes=1), timedelta(minutes=1)),
    "6h": (timedelta(hours=6), timedelta(minutes=5), timedelta(minutes=5)),
    "24h": (timedelta(hours=24), timedelta(minutes=15), timedelta(minutes=15)),
    "7d": (timedelta(days=7), timedelta(hours=1), timedelta(hours=2)),
    "30d": (timedelta(days=30), timedelta(hours=1), timedelta(hours=6)),
    "90d": (timedelta(days=90), timedelta(hours=6), timedelta(days=1)),
}
# Without a chosen metric the page shows this many small charts.
MAX_CHARTS = 12


class DashboardFilters(forms.Form):
    organization = forms.ModelChoiceField(queryset=Organization.objects.order_by("name"), required=False)
    name = forms.CharField(required=False, max_length=200, label="Metric")
    range = forms.ChoiceField(choices=[(key, key) for key in RANGES], required=False)


def dashboard(request: HttpRequest) -> HttpResponse:
    form = DashboardFilters(request.GET)
    form.is_valid()
    filters = getattr(form, "cleaned_data", {})
    organization = filters.get("organization") or Organization.objects.order_by("name").first()
    range_key = filters.get("range") or "24h"
    span, bucket, event_bucket = RANGES[range_key]
    # The range ends at the end of the current (coarser) bucket, so the
    # selectors' cache keys stay the same for a whole bucket.
    end = bucket_floor(timezone.now(), event_bucket) + event_bucket
    start = end - span

    context = {
        **admin.site.each_context(request),
        "title": "Analytics",
        "form": form,
        "organization": organization,
        "range_key": range_key,
        "ranges": list(RANGES),
        "start": start,
        "end": end,
        "bucket": bucket,
        "event_bucket": event_bucket,
    }
    if organization is not None:
        names = metric_names(organization=organization)
        chosen = filters.get("name")
        shown = [chosen] if chosen else names[:MAX_CHARTS]
        context["names"] = names
        context["chosen"] = chosen
        context["charts"] = [
            (
                name,
                line_chart(
                    metric_series(organization=organization, name=name, start=start, end=end, bucket=bucket),
                    start=start,
                    end=end,
                ),
            )
            for name in shown
        ]
        context.update(_event_context(organization, start=start, end=end, bucket=event_bucket))
    return render(request, "analytics/dashboard.html", context)


def _event_context(organization: Organization, *, start: datetime, end: datetime, bucket: timedelta) -> dict:
    counts = event_counts(organization=organization, start=start, end=end, bucket=bucket)
    per_type: dict[str, int] = defaultdict(int)
    per_bucket: dict[datetime, int] = defaultdict(int)
    for count in counts:
        per_type[count.event_type] += count.count
        per_bucket[count.bucket] += count.count
    by_type = sorted(per_type.items(), key=lambda item: (-item[1], item[0]))
    most = by_type[0][1] if by_type else 1
    return {
        "event_total": sum(per_type.values()),
        "event_types": [(event_type, n, round(100 * n / most, 1)) for event_type, n in by_type],
        "event_chart": column_chart(sorted(per_bucket.items()), start=start, end=end, bucket=bucket),
    }
