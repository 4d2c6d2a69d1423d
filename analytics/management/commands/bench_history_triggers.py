"""What the change-history trigger costs the write paths it sits on (or would).

Two measurements, each with the trigger and without it, interleaved run by
run so machine noise hits both alike, medians printed side by side:

* ingest: COPY of --rows metric samples into ``analytics_metric`` (not
  tracked; the trigger is attached for the "with" runs only), the reason
  the append-only tables are excluded from history;
* queue churn: --updates single-row status changes of ``agents_agenttask``
  (tracked; the trigger is disabled for the "without" runs).

Every run happens in a transaction that is rolled back: the configured
database is left as it was.

    python manage.py bench_history_triggers --rows 50000 --updates 2000
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from datetime import UTC, datetime

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from companyos.foundation.console.history import history_triggers, tracked


class Command(BaseCommand):
    help = "Cost of the history trigger on metric ingest (COPY) and on agent task status updates."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=20_000, help="Metric samples per COPY (default 20,000).")
        parser.add_argument("--updates", type=int, default=1_000, help="Task status updates per run (default 1,000).")
        parser.add_argument("--runs", type=int, default=5)

    def handle(self, *args, rows: int, updates: int, runs: int, **options):
        from core.models import Organization

        organization = Organization.objects.first()
        if organization is None:
            organization = Organization.objects.create(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
        results = {"ingest": {True: [], False: []}, "queue": {True: [], False: []}}
        for _ in range(runs):
            for with_trigger in (False, True):
                results["ingest"][with_trigger].append(self._ingest(organization, rows, with_trigger))
                results["queue"][with_trigger].append(self._queue(organization, updates, with_trigger))

        self.stdout.write(f"{'path':<44}{'without':>12}{'with trigger':>15}{'ratio':>8}")
        labels = {
            "ingest": f"COPY {rows:,} metrics (rows/s)",
            "queue": f"{updates:,} task status updates (updates/s)",
        }
        for path, label in labels.items():
            without = statistics.median(results[path][False])
            with_trigger = statistics.median(results[path][True])
            self.stdout.write(f"{label:<44}{without:>12,.0f}{with_trigger:>15,.0f}{without / with_trigger:>7.2f}x")

    def _ingest(self, organization, rows: int, with_trigger: bool) -> float:
        now = datetime.now(UTC)
        with transaction.atomic(), connection.cursor() as cursor:
            if with_trigger:
                from analytics.models import Metric

                # What declaring tracked() on Metric would install.
                for trigger in tracked():
                    cursor.execute(trigger.compile(Metric).install_sql)
            started = time.perf_counter()
            columns = "id, created_at, updated_at, organization_id, name, value, unit, dimensions, timestamp, source"
            with cursor.cursor.copy(f"COPY analytics_metric ({columns}) FROM STDIN") as copy:
                for n in range(rows):
                    copy.write_row((
                        uuid.uuid4(), now, now, organization.pk, "deployment.build_duration_ms", float(n), "ms",
                        json.dumps({"environment": "production"}), now, "system",
                    ))  # fmt: skip
            elapsed = time.perf_counter() - started
            transaction.set_rollback(True)
        return rows / elapsed

    def _queue(self, organization, updates: int, with_trigger: bool) -> float:
        from agents.models import Agent, AgentTask

        with transaction.atomic(), connection.cursor() as cursor:
            if not with_trigger:
                for trigger in history_triggers(AgentTask):
                    cursor.execute(trigger.compile(AgentTask).disable_sql)
            agent = Agent.objects.create(
                organization=organization,
                name="Bench",
                slug=f"b-{uuid.uuid4().hex[:8]}",
                agent_type="analyst",
                model="m",
            )
            tasks = AgentTask.objects.bulk_create(
                AgentTask(organization=organization, agent=agent, task_type="bench", title=f"t{n}", input={"n": n})
                for n in range(updates)
            )
            started = time.perf_counter()
            for task in tasks:
                cursor.execute(
                    "UPDATE agents_agenttask SET status = 'cancelled', completed_at = now() WHERE id = %s", [task.pk]
                )
            elapsed = time.perf_counter() - started
            transaction.set_rollback(True)
        return updates / elapsed
