"""``manage.py run_scheduler``: defer each periodic job once per period (docs/jobs.md).

Procrastinate's periodic deferrer: at every tick of a job's cron expression
(``SCHEDULE_*`` settings) it inserts that period's job, and a unique index
on (task, period) in ``procrastinate_periodic_defers`` makes the insert a
no-op for every scheduler but the first. Any number may run (one per
host, or one in each of several containers) without a double run. A
scheduler started after an outage defers the last missed period of each job
if it is at most ``SCHEDULER_CATCH_UP_SECONDS`` old.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand
from procrastinate import periodic
from procrastinate.contrib.django import app

from companyos.foundation.jobs import waiting_connector


class Command(BaseCommand):
    help = "Defer the periodic system jobs on their schedules until SIGTERM/SIGINT; run_worker runs them."

    def handle(self, *args: Any, **options: Any) -> None:
        with app.replace_connector(waiting_connector()):
            asyncio.run(self._serve())
        self.stdout.write("Scheduler stopped.")

    async def _serve(self) -> None:
        async with app.open_async():
            app.perform_import_paths()
            deferrer = periodic.PeriodicDeferrer(registry=app.periodic_registry, **app.periodic_defaults)
            for task in app.periodic_registry.periodic_tasks.values():
                self.stdout.write(f"scheduling {task.task.name} on '{task.cron}'")
            scheduling = asyncio.create_task(deferrer.worker())
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, scheduling.cancel)
            try:
                await scheduling
            except asyncio.CancelledError:
                if not scheduling.cancelled():
                    raise
