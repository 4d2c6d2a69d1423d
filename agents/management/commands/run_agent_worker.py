"""``manage.py run_agent_worker``: run agent tasks until stopped (docs/agents.md)."""

from __future__ import annotations

import signal
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.models import Agent
from agents.worker import Worker


class Command(BaseCommand):
    help = "Claim due agent tasks and run their handlers. SIGTERM finishes the running tasks, then exits."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--concurrency", type=int, default=1, help="Tasks run at once (threads). Default 1.")
        parser.add_argument(
            "--agent", action="append", default=[], metavar="SLUG", help="Only this agent's tasks (repeatable)."
        )
        parser.add_argument(
            "--task-type", action="append", default=[], metavar="T", help="Only tasks of this type (repeatable)."
        )
        parser.add_argument("--burst", action="store_true", help="Exit as soon as no task is due.")
        parser.add_argument("--batch-size", type=int, default=1, help="Tasks claimed per query. Default 1.")
        parser.add_argument("--lease-seconds", type=float, default=None, help="Lease on a claimed task.")
        parser.add_argument("--poll-seconds", type=float, default=None, help="Fallback poll when idle.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] < 1 or options["batch_size"] < 1:
            raise CommandError("--concurrency and --batch-size must be at least 1.")
        agent_ids = self._agent_ids(options["agent"])
        worker = Worker(
            concurrency=options["concurrency"],
            agent_ids=agent_ids,
            task_types=options["task_type"],
            burst=options["burst"],
            batch_size=options["batch_size"],
            lease_seconds=options["lease_seconds"],
            poll_seconds=options["poll_seconds"],
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.stop())
        processed = worker.run()
        self.stdout.write(f"Worker {worker.worker_id} ran {processed} tasks.")

    def _agent_ids(self, slugs: list[str]) -> list[uuid.UUID]:
        """Agent slugs are unique per organization: a slug may name several agents."""
        if not slugs:
            return []
        agents = list(Agent.objects.filter(slug__in=slugs).values_list("pk", "slug"))
        missing = set(slugs) - {slug for _, slug in agents}
        if missing:
            raise CommandError(f"No agent with slug {', '.join(sorted(missing))}.")
        return [pk for pk, _ in agents]
