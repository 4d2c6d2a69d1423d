"""``manage.py run_scheduler``: defer each periodic job once per period (docs/jobs.md).

Procrastinate's periodic deferrer: at every tick of a job's cron expression
(``SCHEDULE_*`` settings) it inserts that period's job, and a unique index
on (task, period) in ``procrastinate_periodic_defers`` makes the insert a
no-op for every scheduler but the first. Any number may run (one per
host, or one in each of several containers) without a double run. A
scheduler started after an outage defers the last missed period of each job
if it is at most ``SCHEDULER_CATCH_UP_SECONDS`` old.

The deferrer ends at its first database error (a failover, a restarted
server, an outage longer than the pool waits): it is started again in the
same process, after a pause that doubles while it keeps failing, and then
defers the periods it missed, as a restarted scheduler would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import Any

from django.core.management.base import BaseCommand
from procrastinate import periodic
from procrastinate.contrib.django import app

from companyos.foundation.jobs import Supervisor, waiting_connector


class Deferrer:
    """Procrastinate's periodic deferrer, run and stopped as a :class:`Supervisor` loop.

    A new one per run: it defers, on starting, each job's last period it may
    have missed (the database keeps a period from being deferred twice).
    """

    def __init__(self) -> None:
        self._deferring: asyncio.Task | None = None

    async def run(self) -> None:
        deferrer = periodic.PeriodicDeferrer(registry=app.periodic_registry, **app.periodic_defaults)
        self._deferring = asyncio.create_task(deferrer.worker())
        try:
            await self._deferring
        except asyncio.CancelledError:
            if not self._deferring.cancelled():
                raise

    def stop(self) -> None:
        if self._deferring is not None:
            self._deferring.cancel()


class Command(BaseCommand):
    help = "Defer the periodic system jobs on their schedules until SIGTERM/SIGINT; run_worker runs them."

    def handle(self, *args: Any, **options: Any) -> None:
        with app.replace_connector(waiting_connector()):
            asyncio.run(self._serve())
        self.stdout.write("Scheduler stopped.")

    async def _serve(self) -> None:
        async with app.open_async():
            app.perform_import_paths()
            for task in app.periodic_registry.periodic_tasks.values():
                self.stdout.write(f"scheduling {task.task.name} on '{task.cron}'")
            scheduler = Supervisor(f"scheduler {socket.gethostname()}:{os.getpid()}", "the periodic deferrer", Deferrer)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, scheduler.stop)
            await scheduler.run()
