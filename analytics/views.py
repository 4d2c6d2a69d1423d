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

from agents.models import AgentTask
from analytics.charts import column_chart, duration_label, line_chart, stacked_column_chart
from analytics.rollups import bucket_floor
from analytics.selectors import (
    Outcome,
    deployment_outcomes,
    event_counts,
    metric_names,
    metric_series,
    newest_activity,
    task_durations,
    task_outcomes,
    webhook_outcomes,
)
from core.models import Organization
from integrations.models import WebhookDelivery

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
DEFAULT_RANGE = "24h"
# Without a chosen metric the page shows this many small charts.
MAX_CHARTS = 12
# The events chart stacks this many types, each in its own colour; the rest are "other".
STACKED_TYPES = 6


class DashboardFilters(forms.Form):
    organization = forms.ModelChoiceField(queryset=Organization.objects.order_by("name"), required=False)
    name = forms.CharField(required=False, max_length=200, label="Metric")
    range = forms.ChoiceField(choices=[(key, key) for key in RANGES], required=False)


def dashboard(request: HttpRequest) -> HttpResponse:
    form = DashboardFilters(request.GET)
    form.is_valid()
    filters = getattr(form, "cleaned_data", {})
    organization = filters.get("organization") or Organization.objects.order_by("name").first()
    if organization is not None and not filters.get("organization"):
        # Bound again so that the select shows the organization the page is about.
        form = DashboardFilters({**request.GET.dict(), "organization": organization.pk})
        form.is_valid()
    range_key = filters.get("range")
    if range_key:
        end = _range_end(timezone.now(), range_key)
    else:
        range_key, end = _opening_range(organization, timezone.now())
    span, bucket, event_bucket = RANGES[range_key]
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
        "bucket": duration_label(bucket),
        "event_bucket": duration_label(event_bucket),
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
                    series := metric_series(organization=organization, name=name, start=start, end=end, bucket=bucket),
                    start=start,
                    end=end,
                ),
                series,
            )
            for name in shown
        ]
        context.update(_event_context(organization, start=start, end=end, bucket=event_bucket))
        context.update(_activity_context(organization, start=start, end=end, bucket=event_bucket))
    return render(request, "analytics/dashboard.html", context)


def _range_end(moment: datetime, range_key: str) -> datetime:
    """The end of the range holding ``moment``: the end of its (coarser) event bucket.

    So the selectors' cache keys stay the same for a whole bucket.
    """
    event_bucket = RANGES[range_key][2]
    return bucket_floor(moment, event_bucket) + event_bucket


def _opening_range(organization: Organization | None, now: datetime) -> tuple[str, datetime]:
    """The range the page opens on, and its end: the shortest, ending now, that holds the newest data.

    The default range when it holds any data; when even the longest range
    misses the newest data, the longest range ending at that data.
    """
    newest = newest_activity(organization=organization) if organization else None
    if newest is None:
        return DEFAULT_RANGE, _range_end(now, DEFAULT_RANGE)
    longer = list(RANGES)[list(RANGES).index(DEFAULT_RANGE) :]
    for key in longer:
        if newest >= _range_end(now, key) - RANGES[key][0]:
            return key, _range_end(now, key)
    return longer[-1], _range_end(newest, longer[-1])


def _bars(outcomes: list[Outcome], model) -> list[tuple[str, int, float, str]]:
    """(label, count, percent of the largest, badge tone) rows of a horizontal bar table."""
    most = max((outcome.count for outcome in outcomes), default=1)
    labels = dict(model._meta.get_field("status").flatchoices)
    return [
        (
            labels.get(outcome.status, outcome.status),
            outcome.count,
            round(100 * outcome.count / most, 1),
            getattr(model, "status_tones", {}).get(outcome.status, "neutral"),
        )
        for outcome in outcomes
    ]


def _activity_context(organization: Organization, *, start: datetime, end: datetime, bucket: timedelta) -> dict:
    """Agent tasks, deployments and webhook deliveries of the range, as the dashboard's charts read them."""
    durations = task_durations(organization=organization, start=start, end=end)
    longest = max((count for _, count in durations.histogram), default=0) or 1
    deployments = deployment_outcomes(organization=organization, start=start, end=end, bucket=bucket)
    ready = sum(each.ready for each in deployments)
    failed = sum(each.failed for each in deployments)
    lead_times = [(each.bucket, round(each.median_lead_seconds)) for each in deployments if each.ready]
    return {
        "task_outcomes": _bars(task_outcomes(organization=organization, start=start, end=end), AgentTask),
        "task_durations": [(label, count, round(100 * count / longest, 1)) for label, count in durations.histogram]
        if any(count for _, count in durations.histogram)
        else [],
        "task_median_seconds": durations.median_ms and round(durations.median_ms / 1000, 1),
        "task_p90_seconds": durations.p90_ms and round(durations.p90_ms / 1000, 1),
        "deployments": deployments,
        "deployments_ready": ready,
        "deployments_failed": failed,
        "deployment_failure_percent": round(100 * failed / (ready + failed), 1) if ready + failed else None,
        "lead_time_chart": column_chart(lead_times, start=start, end=end, bucket=bucket),
        "webhook_outcomes": _bars(webhook_outcomes(organization=organization, start=start, end=end), WebhookDelivery),
    }


def _event_context(organization: Organization, *, start: datetime, end: datetime, bucket: timedelta) -> dict:
    counts = event_counts(organization=organization, start=start, end=end, bucket=bucket)
    per_type: dict[str, int] = defaultdict(int)
    per_bucket: dict[datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for count in counts:
        per_type[count.event_type] += count.count
    by_type = sorted(per_type.items(), key=lambda item: (-item[1], item[0]))
    stacked = [event_type for event_type, _ in by_type[:STACKED_TYPES]]
    for count in counts:
        series = count.event_type if count.event_type in stacked else "other"
        per_bucket[count.bucket][series] += count.count
    legend = stacked + (["other"] if len(by_type) > STACKED_TYPES else [])
    most = by_type[0][1] if by_type else 1
    return {
        "event_total": sum(per_type.values()),
        "event_types": [(event_type, n, round(100 * n / most, 1)) for event_type, n in by_type],
        "event_legend": list(enumerate(legend)),
        "event_chart": stacked_column_chart(
            [
                [(moment, per_bucket[moment][series]) for moment in sorted(per_bucket) if per_bucket[moment][series]]
                for series in legend
            ],
            start=start,
            end=end,
            bucket=bucket,
        ),
        # The numbers behind the chart, one row per bucket and one column per legend entry.
        "event_table": [(moment, [per_bucket[moment][series] for series in legend]) for moment in sorted(per_bucket)],
    }
