"""Recompute rollup buckets from raw rows now; the scheduler's ``refresh_rollups`` job does the last 2 h every 5 min."""

from django.core.management.base import BaseCommand

from analytics.management.commands._durations import parse_moment
from analytics.rollups import rollups_refresh


class Command(BaseCommand):
    help = (
        "Recompute metric and event rollups from raw rows for every bucket from --since on. "
        "Idempotent; picks up rows written outside analytics.ingest (single events, the ORM)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            default="2h",
            help="An age (2h, 7d) or an ISO 8601 timestamp; rounded down to the hour. Default: 2h.",
        )

    def handle(self, *args, since: str, **options):
        result = rollups_refresh(since=parse_moment(since))
        self.stdout.write(
            f"Refreshed rollups since {result.since.isoformat()}: "
            f"{result.metric_buckets} metric buckets, {result.event_buckets} event buckets."
        )
