"""``manage.py prune_webhook_deliveries``: delete delivery log rows past retention (docs/webhooks.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.services import webhook_deliveries_prune


class Command(BaseCommand):
    help = (
        "Delete webhook deliveries older than WEBHOOK_DELIVERY_RETENTION_DAYS now (the scheduler's "
        "prune_webhook_deliveries job does it daily)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=float, default=None, help="Keep this many days instead of the setting's value."
        )
        parser.add_argument("--batch-size", type=int, default=5000, help="Rows per DELETE. Default 5000.")

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.WEBHOOK_DELIVERY_RETENTION_DAYS if options["days"] is None else options["days"]
        try:
            deleted = webhook_deliveries_prune(older_than=timedelta(days=days), batch_size=options["batch_size"])
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from exc
        self.stdout.write(f"Deleted {deleted} webhook deliveries older than {days:g} days.")
