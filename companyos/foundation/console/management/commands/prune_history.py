"""Delete change history older than HISTORY_RETENTION_DAYS, in batches, now.

The scheduler's daily ``prune_history`` job does it with the setting.
"""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from companyos.foundation.console.history import history_prune


class Command(BaseCommand):
    help = "Delete change history older than the retention (HISTORY_RETENTION_DAYS, or --days)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=settings.HISTORY_RETENTION_DAYS)
        parser.add_argument("--batch-size", type=int, default=10_000)

    def handle(self, *args, days: int, batch_size: int, **options):
        cutoff = timezone.now() - timedelta(days=days)
        deleted = history_prune(before=cutoff, batch_size=batch_size)
        self.stdout.write(f"Deleted {deleted} history row(s) recorded before {cutoff:%Y-%m-%d %H:%M} UTC.")
