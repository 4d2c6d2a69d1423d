"""The append-only activity stream and time-series metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib.postgres.indexes import BrinIndex, GinIndex
from django.db import models
from django.utils import timezone

from companyos.foundation.models import BaseModel, choices_check
from companyos.foundation.search import Searchable


class Category(models.TextChoices):
    CORE = "core"
    INTEGRATIONS = "integrations"
    DEVELOPMENT = "development"
    DESIGN = "design"
    SOCIAL = "social"
    AGENTS = "agents"
    ANALYTICS = "analytics"


class Source(models.TextChoices):
    GITHUB = "github"
    VERCEL = "vercel"
    FIGMA = "figma"
    TWITTER = "twitter"
    LINKEDIN = "linkedin"
    SYSTEM = "system"
    AGENT = "agent"
    USER = "user"


class Event(BaseModel):
    """Something that happened; every published real-time event is one row.

    Ids are UUIDv7, so ordering by id is ordering by insertion time: websocket
    replay ("everything after event X") is a range scan on the primary key.
    """

    Category = Category
    Source = Source

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(exact=("id",))

    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="events", db_index=False
    )
    event_type = models.CharField(max_length=100)
    category = models.CharField(max_length=16, choices=Category)
    source = models.CharField(max_length=16, choices=Source, default=Source.SYSTEM)
    actor_user = models.ForeignKey(
        "core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    actor_agent = models.ForeignKey(
        "agents.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    subject_type = models.CharField(max_length=100, blank=True, help_text="app_label.model of the subject.")
    subject_id = models.UUIDField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)

    class Meta(BaseModel.Meta):
        ordering = ["-occurred_at"]
        get_latest_by = "occurred_at"
        constraints = [
            choices_check("category", Category, "analytics_event"),
            choices_check("source", Source, "analytics_event"),
        ]
        indexes = [
            # An organization's recent activity, newest first.
            models.Index(fields=["organization", "-occurred_at"], name="event_org_recent_idx"),
            # An organization's recent events of one type.
            models.Index(fields=["organization", "event_type", "-occurred_at"], name="event_org_type_idx"),
            # Websocket replay: an organization's events after a given id.
            models.Index(fields=["organization", "id"], name="event_org_id_idx"),
            # The history of one object.
            models.Index(fields=["subject_type", "subject_id"], name="event_subject_idx"),
            # Time-range scans and retention over the whole table: tiny, append-friendly.
            BrinIndex(fields=["occurred_at"], name="event_occurred_brin", autosummarize=True),
            # SET_NULL on deleting a user or agent finds their events without a scan.
            models.Index(
                fields=["actor_user"], name="event_actor_user_idx", condition=models.Q(actor_user__isnull=False)
            ),
            models.Index(
                fields=["actor_agent"], name="event_actor_agent_idx", condition=models.Q(actor_agent__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} @ {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class Metric(BaseModel):
    """One time-series sample."""

    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="metrics", db_index=False
    )
    name = models.CharField(max_length=200)
    value = models.FloatField()
    unit = models.CharField(max_length=32, blank=True)
    dimensions = models.JSONField(default=dict, blank=True)
    timestamp = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=Source, default=Source.SYSTEM)

    class Meta(BaseModel.Meta):
        ordering = ["-timestamp"]
        get_latest_by = "timestamp"
        constraints = [
            # NaN and ±Infinity are valid doubles in PostgreSQL; refuse them.
            models.CheckConstraint(
                condition=models.Q(value__gt=float("-inf"), value__lt=float("inf")),
                name="analytics_metric_value_finite",
            ),
            choices_check("source", Source, "analytics_metric"),
        ]
        indexes = [
            # Range scans of one series: (organization, name, time).
            models.Index(fields=["organization", "name", "timestamp"], name="metric_series_idx"),
            # Time-range scans and retention over the whole table.
            BrinIndex(fields=["timestamp"], name="metric_timestamp_brin", autosummarize=True),
            # Filtering by dimension (dimensions @> '{"environment": "production"}').
            GinIndex(fields=["dimensions"], name="metric_dimensions_gin", opclasses=["jsonb_path_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value:g}{self.unit}"


# Rollup bucket widths. Widths must divide each other and the hour, so a
# coarser bucket is exactly the union of finer ones and every bucket starts on
# the same grid as `date_bin(width, ts, ROLLUP_ORIGIN)`.
ROLLUP_WIDTHS: tuple[timedelta, ...] = (timedelta(minutes=5), timedelta(hours=1))
ROLLUP_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


class MetricRollup(models.Model):
    """Count, sum, min and max of one metric series per time bucket.

    Our own continuous aggregate: `analytics.ingest` adds each batch to it in
    the ingest transaction, and `refresh_rollups` recomputes recent buckets
    from raw rows. The composite primary key is the only index: every read is
    "one series, one width, a bucket range".
    """

    pk = models.CompositePrimaryKey("organization_id", "name", "width", "bucket")
    organization = models.ForeignKey("core.Organization", on_delete=models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=200)
    width = models.DurationField()
    bucket = models.DateTimeField(help_text="Start of the bucket.")
    count = models.BigIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(width__in=ROLLUP_WIDTHS), name="analytics_metricrollup_width_valid"
            ),
            models.CheckConstraint(condition=models.Q(count__gt=0), name="analytics_metricrollup_count_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.bucket:%Y-%m-%d %H:%M} (+{self.width})"

    @property
    def avg(self) -> float:
        return self.sum / self.count


class EventRollup(models.Model):
    """Number of events of one type per time bucket (see MetricRollup)."""

    pk = models.CompositePrimaryKey("organization_id", "event_type", "width", "bucket")
    organization = models.ForeignKey("core.Organization", on_delete=models.CASCADE, related_name="+", db_index=False)
    event_type = models.CharField(max_length=100)
    width = models.DurationField()
    bucket = models.DateTimeField(help_text="Start of the bucket.")
    count = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(width__in=ROLLUP_WIDTHS), name="analytics_eventrollup_width_valid"
            ),
            models.CheckConstraint(condition=models.Q(count__gt=0), name="analytics_eventrollup_count_positive"),
        ]
        indexes = [
            # The dashboard's "events by type" reads every type of an organization.
            models.Index(fields=["organization", "width", "bucket"], name="eventrollup_org_bucket_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.bucket:%Y-%m-%d %H:%M} (+{self.width})"
