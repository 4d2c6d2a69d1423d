"""Retention by hand: delete raw events and metrics past an age, in small transactions.

The scheduler's daily ``prune_analytics`` job does it with the defaults.
"""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from analytics.management.commands._durations import parse_age
from analytics.services import analytics_prune


class Command(BaseCommand):
    help = "Delete raw metrics and events older than --older-than (rollups are kept unless --rollups-older-than)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            default=f"{settings.ANALYTICS_RETENTION_DAYS}d",
            help="An age like 90d (default: ANALYTICS_RETENTION_DAYS).",
        )
        parser.add_argument("--rollups-older-than", default=None, help="Also delete rollup buckets past this age.")
        parser.add_argument("--batch-size", type=int, default=50_000)

    def handle(self, *args, older_than: str, rollups_older_than: str | None, batch_size: int, **options):
        now = timezone.now()
        result = analytics_prune(
            before=now - parse_age(older_than),
            rollups_before=now - parse_age(rollups_older_than) if rollups_older_than else None,
            batch_size=batch_size,
        )
        self.stdout.write(
            f"Deleted {result.metrics} metrics, {result.events} events, "
            f"{result.metric_rollups} metric rollups, {result.event_rollups} event rollups."
        )
