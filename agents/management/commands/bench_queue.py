"""``manage.py bench_queue``: the task queue's throughput and wake-up latency.

Measures, in one run and on the same table:

* tasks/s claimed and completed by 1, 2 and 4 worker processes running
  ``run_agent_worker`` (the project's queue: state machine, events, agent
  counters, result cache), and by a minimal raw-psycopg ``SKIP LOCKED`` loop
  (claim one, complete it, nothing else), with their ratio;
* zero double claims: every task ends completed with ``attempts = 1``;
* the median time from enqueue (the service call) to start (the claim) with an
  idle worker woken by NOTIFY.

Throughput is timed from the database (first ``started_at`` to last
``completed_at``), so process start-up is not counted; workers are started
first and woken by the insert. Uses the configured database: a throwaway
organization is created and deleted.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.db.models import Max, Min, QuerySet

from agents import services
from agents.models import Agent, AgentTask
from agents.queue import NOTIFY_CHANNEL
from core.models import Organization

RAW_CLAIM = """
    UPDATE agents_agenttask
    SET status = 'running', attempts = attempts + 1, worker_id = %(worker)s,
        started_at = clock_timestamp(), lease_expires_at = clock_timestamp() + interval '60 seconds'
    WHERE id = (
        SELECT id FROM agents_agenttask WHERE status = 'queued' AND agent_id = ANY(%(agents)s)
        ORDER BY priority DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING id, input
"""
RAW_COMPLETE = """
    UPDATE agents_agenttask
    SET status = 'completed', output = %(output)s, completed_at = clock_timestamp(), lease_expires_at = NULL
    WHERE id = %(id)s
"""


def raw_worker(conninfo: dict[str, Any], agent_ids: list[uuid.UUID], go: Any) -> None:
    """The baseline: claim one task with SKIP LOCKED, complete it, repeat until none is left."""
    with psycopg.connect(**conninfo) as conn:
        worker = f"raw:{os.getpid()}"
        go.wait()
        while True:
            with conn.transaction():
                row = conn.execute(RAW_CLAIM, {"worker": worker, "agents": agent_ids}).fetchone()
            if row is None:
                return
            with conn.transaction():
                conn.execute(RAW_COMPLETE, {"id": row[0], "output": psycopg.types.json.Jsonb(row[1])})


class Command(BaseCommand):
    help = "Benchmark the agent task queue against a raw SKIP LOCKED loop (see docs/benchmarks.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tasks", type=int, default=300, help="Echo tasks per run (default 300).")
        parser.add_argument("--repeat", type=int, default=3, help="Runs per configuration; medians (default 3).")
        parser.add_argument("--workers", default="1,2,4", help="Worker process counts (default 1,2,4).")
        parser.add_argument("--batch-size", type=int, default=10, help="The project workers' --batch-size (10).")
        parser.add_argument("--agents", type=int, default=4, help="Agents the tasks are spread over (default 4).")
        parser.add_argument("--latency-samples", type=int, default=30, help="Enqueue→start samples (default 30).")

    def handle(self, *args: Any, **options: Any) -> None:
        counts = [int(n) for n in options["workers"].split(",")]
        self.organization = Organization.objects.create(name="Queue benchmark", slug=f"bench-{uuid.uuid4().hex[:8]}")
        # Each completion updates its agent's counters in the same transaction,
        # so one agent's row serialises its completions: spread the tasks.
        self.agents = [
            Agent.objects.create(
                organization=self.organization, name=f"Bench echo {index}", slug=f"bench-echo-{index}",
                agent_type=Agent.AgentType.ANALYST, model="none",
            )  # fmt: skip
            for index in range(options["agents"])
        ]
        try:
            self.stdout.write(
                f"bench_queue: {options['tasks']} echo tasks over {options['agents']} agents per run, "
                f"median of {options['repeat']} runs, project batch size {options['batch_size']}"
            )
            self.stdout.write(f"{'workers':>7} {'project tasks/s':>16} {'raw tasks/s':>12} {'ratio':>6}  double claims")
            project_rates = {}
            for count in counts:
                with _Workers(self.agents, count, options["batch_size"]):
                    project = [self._run_project(options["tasks"]) for _ in range(options["repeat"])]
                raw = [self._run_raw(count, options["tasks"]) for _ in range(options["repeat"])]
                doubles = sum(run[1] for run in project + raw)
                project_rates[count] = statistics.median(run[0] for run in project)
                raw_rate = statistics.median(run[0] for run in raw)
                self.stdout.write(
                    f"{count:>7} {project_rates[count]:>16.0f} {raw_rate:>12.0f} "
                    f"{project_rates[count] / raw_rate:>6.2f}  {doubles}"
                )
            if 1 in project_rates and 2 in project_rates:
                self.stdout.write(f"scaling: 2 workers / 1 worker = {project_rates[2] / project_rates[1]:.2f}")
            latencies, enqueue_calls = self._latency(options["latency_samples"])
            p90 = statistics.quantiles(latencies, n=10)[-1]
            self.stdout.write(
                f"enqueue→start with NOTIFY (idle worker, {len(latencies)} samples): "
                f"median {statistics.median(latencies):.1f} ms, p90 {p90:.1f} ms; "
                f"the task_enqueue call itself (INSERT, event, COMMIT, send): "
                f"median {statistics.median(enqueue_calls):.1f} ms"
            )
        finally:
            self.organization.delete()

    # -- runs ---------------------------------------------------------------

    def _tasks(self) -> QuerySet[AgentTask]:
        return AgentTask.objects.filter(agent__in=self.agents)

    def _fill(self, n: int) -> None:
        self._tasks().delete()
        AgentTask.objects.bulk_create(
            AgentTask(
                organization=self.organization, agent=self.agents[i % len(self.agents)],
                task_type="echo", title="bench", input={"n": i},
            )  # fmt: skip
            for i in range(n)
        )

    def _measure(self, n: int) -> tuple[float, int]:
        """Tasks/s from the database's own timestamps, and the double claims."""
        span = self._tasks().aggregate(first=Min("started_at"), last=Max("completed_at"))
        ok = self._tasks().filter(status=AgentTask.Status.COMPLETED, attempts=1).count()
        return n / (span["last"] - span["first"]).total_seconds(), n - ok

    def _wait_done(self, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        done = self._tasks().filter(status=AgentTask.Status.COMPLETED)
        while done.count() < n:
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not finish in time")
            time.sleep(0.05)

    def _run_project(self, n: int) -> tuple[float, int]:
        self._fill(n)  # the insert's NOTIFY wakes the idle workers at once
        self._wait_done(n)
        return self._measure(n)

    def _run_raw(self, count: int, n: int) -> tuple[float, int]:
        self._fill(n)
        db = connection.settings_dict
        conninfo = {
            "dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"],
            "host": db["HOST"], "port": db["PORT"], "autocommit": True,
        }  # fmt: skip
        # Forked children only use their own psycopg connection; closing ours
        # first keeps them from inheriting an open socket.
        connection.close()
        context = multiprocessing.get_context("fork")
        go = context.Event()
        processes = [
            context.Process(target=raw_worker, args=(conninfo, [agent.pk for agent in self.agents], go))
            for _ in range(count)
        ]
        for process in processes:
            process.start()
        time.sleep(0.5)  # let them connect
        go.set()
        for process in processes:
            process.join()
        return self._measure(n)

    def _latency(self, samples: int) -> tuple[list[float], list[float]]:
        """Enqueue→start of each sample (ms), and how long each enqueue call took."""
        self._tasks().delete()
        agent = self.agents[0]
        tasks, calls = [], []
        with _Workers([agent], 1, 1):
            for index in range(samples):
                started = time.perf_counter()
                tasks.append(services.task_enqueue(agent=agent, task_type="echo", title=f"ping {index}"))
                calls.append((time.perf_counter() - started) * 1000)
                time.sleep(0.05)  # the worker is idle again before the next one
            self._wait_done(samples)
        rows = AgentTask.objects.filter(pk__in=[task.pk for task in tasks]).values_list("created_at", "started_at")
        return [(started - created).total_seconds() * 1000 for created, started in rows], calls


class _Workers:
    """``count`` idle ``run_agent_worker`` processes serving ``agents``, LISTENing, for a ``with`` block."""

    def __init__(self, agents: list[Agent], count: int, batch_size: int) -> None:
        self.agents, self.count, self.batch_size = agents, count, batch_size

    def __enter__(self) -> _Workers:
        command = [sys.executable, "manage.py", "run_agent_worker", "--batch-size", str(self.batch_size)]
        command += ["--poll-seconds", "60", *(f"--agent={agent.slug}" for agent in self.agents)]
        self.processes = [
            subprocess.Popen(  # noqa: S603 - our own command line
                command, cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(self.count)
        ]
        deadline = time.monotonic() + 60
        while self._listening() < self.count:
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not start listening")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(timeout=30)

    def _listening(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
                [f"LISTEN {NOTIFY_CHANNEL}"],
            )
            return cursor.fetchone()[0]
