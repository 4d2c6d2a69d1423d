"""``manage.py process_webhook_deliveries``: apply stored deliveries still waiting (docs/webhooks.md)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from integrations.services import webhook_deliveries_process_pending


class Command(BaseCommand):
    help = (
        "Process received webhook deliveries, oldest first, until stopped. Any number may run at once "
        "(SKIP LOCKED). Picks up what the web process did not apply right after answering."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Process what is waiting, then exit.")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between polls when idle. Default 1.")
        parser.add_argument("--batch-size", type=int, default=100, help="Deliveries per round. Default 100.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["interval"] <= 0 or options["batch_size"] < 1:
            raise CommandError("--interval must be positive and --batch-size at least 1.")
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        total = 0
        while not stopping.is_set():
            close_old_connections()  # a long-running loop must not keep a dead connection
            processed = webhook_deliveries_process_pending(limit=options["batch_size"])
            total += processed
            if options["once"] and processed < options["batch_size"]:
                break
            if processed < options["batch_size"]:
                stopping.wait(options["interval"])
        self.stdout.write(f"Processed {total} webhook deliveries.")
