"""``manage.py bench_worker``: throughput of ``run_worker`` for system jobs and agent tasks (docs/benchmarks.md).

In one run, at 1 and 2 worker processes, medians of ``--repeat`` runs:

* system jobs/s: no-op jobs (``bench_noop``, queue ``bench``) run by
  ``run_worker`` (Procrastinate plus the agents' Worker thread), by
  Procrastinate alone (``run_worker --without agents``), and by a raw
  ``SKIP LOCKED`` loop over the same ``procrastinate_jobs`` rows (claim one,
  mark it succeeded, nothing else);
* agent tasks/s: echo tasks run by ``run_worker`` and by bench_queue's raw
  ``SKIP LOCKED`` loop over the same table.

Rates come from the database's timestamps (first start to last finish), so
process start-up is not counted; workers are started first, idle, and woken
by the inserts' NOTIFY. Uses the configured database: the bench queue's jobs
and a throwaway organization are deleted at the end.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from contextlib import ExitStack
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from procrastinate.contrib.django.models import ProcrastinateWorker

from agents.management.commands.bench_queue import JOB_SPAN, JOBS_DONE, Ours, Raw
from agents.models import Agent
from companyos.foundation.jobs import bench_noop
from companyos.foundation.tests.support import manage_py
from core.models import Organization

RAW_JOB_CLAIM = """
    UPDATE procrastinate_jobs SET status = 'doing'
    WHERE id = (
        SELECT id FROM procrastinate_jobs WHERE queue_name = 'bench' AND status = 'todo'
        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING id
"""
RAW_JOB_FINISH = "UPDATE procrastinate_jobs SET status = 'succeeded', attempts = attempts + 1 WHERE id = %s"


def raw_job_worker(conninfo: dict[str, Any], go: Any) -> None:
    with psycopg.connect(**conninfo) as conn:
        go.wait()
        while True:
            with conn.transaction():
                row = conn.execute(RAW_JOB_CLAIM).fetchone()
            if row is None:
                return
            with conn.transaction():
                conn.execute(RAW_JOB_FINISH, row)


class Command(BaseCommand):
    help = "Benchmark run_worker (system jobs, agent tasks) against Procrastinate alone and raw SKIP LOCKED loops."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs", type=int, default=500, help="Jobs or tasks per run (default 500).")
        parser.add_argument("--repeat", type=int, default=3, help="Runs per configuration; medians (default 3).")
        parser.add_argument("--workers", default="1,2", help="Worker process counts (default 1,2).")
        parser.add_argument("--concurrency", type=int, default=2, help="run_worker --concurrency (default 2).")

    def handle(self, *args: Any, **options: Any) -> None:
        n, repeat = options["jobs"], options["repeat"]
        self.concurrency = options["concurrency"]
        organization = Organization.objects.create(name="Worker benchmark", slug=f"bench-w-{time.time_ns()}")
        agents = [
            Agent.objects.create(
                organization=organization,
                name=f"Bench echo {i}",
                slug=f"bench-echo-{i}",
                agent_type=Agent.AgentType.ANALYST,
                model="none",
            )
            for i in range(4)
        ]
        # run_worker claims agent tasks one at a time.
        self.tasks, self.raw_tasks = Ours(agents, batch_size=1), Raw(agents, batch_size=1)
        self.stdout.write(
            f"bench_worker: {n} per run, median of {repeat} runs, run_worker --concurrency {self.concurrency}"
        )
        self.stdout.write(
            f"{'workers':>7} {'jobs/s run_worker':>18} {'procrastinate':>14} {'raw':>7} {'rw/raw':>7} {'pr/raw':>7}"
            f" {'tasks/s run_worker':>19} {'raw':>7} {'rw/raw':>7}"
        )
        try:
            for count in [int(c) for c in options["workers"].split(",")]:
                with self._workers(count):
                    full = statistics.median(self._jobs_run(n) for _ in range(repeat))
                    tasks = statistics.median(self.tasks.run(n)[0] for _ in range(repeat))
                with self._workers(count, "--without", "agents"):
                    alone = statistics.median(self._jobs_run(n) for _ in range(repeat))
                raw = statistics.median(self._jobs_raw(count, n) for _ in range(repeat))
                with self.raw_tasks.workers(count):
                    raw_tasks = statistics.median(self.raw_tasks.run(n)[0] for _ in range(repeat))
                self.stdout.write(
                    f"{count:>7} {full:>18.0f} {alone:>14.0f} {raw:>7.0f} {full / raw:>7.2f} {alone / raw:>7.2f}"
                    f" {tasks:>19.0f} {raw_tasks:>7.0f} {tasks / raw_tasks:>7.2f}"
                )
        finally:
            self._clear_jobs()
            organization.delete()

    def _workers(self, count: int, *extra: str) -> ExitStack:
        """``count`` idle run_worker processes on the bench queue, registered before the block starts."""
        stack = ExitStack()
        before = ProcrastinateWorker.objects.count()
        args = ["run_worker", "--queue", "bench", "--concurrency", str(self.concurrency), *extra]
        for _ in range(count):
            stack.enter_context(manage_py(*args, env={"LOG_LEVEL": "WARNING"}))
        deadline = time.monotonic() + 60
        while ProcrastinateWorker.objects.count() < before + count:
            if time.monotonic() > deadline:
                stack.close()
                raise TimeoutError("the workers did not start")
            time.sleep(0.1)
        time.sleep(1)  # and their agent Workers are listening
        return stack

    def _clear_jobs(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM procrastinate_jobs WHERE queue_name = 'bench'")

    def _span(self, n: int) -> float:
        with connection.cursor() as cursor:
            cursor.execute(JOB_SPAN)
            done, seconds = cursor.fetchone()
        if done != n:
            raise RuntimeError(f"{done} of {n} jobs succeeded")
        return n / float(seconds)

    def _wait_jobs(self, n: int) -> float:
        deadline = time.monotonic() + 300
        while True:
            with connection.cursor() as cursor:
                cursor.execute(JOBS_DONE)
                if cursor.fetchone()[0] >= n:
                    return self._span(n)
            if time.monotonic() > deadline:
                raise TimeoutError("the jobs did not finish in time")
            time.sleep(0.05)

    def _jobs_run(self, n: int) -> float:
        self._clear_jobs()
        bench_noop.batch_defer(*({} for _ in range(n)))
        return self._wait_jobs(n)

    def _jobs_raw(self, count: int, n: int) -> float:
        self._clear_jobs()
        bench_noop.batch_defer(*({} for _ in range(n)))
        db = connection.settings_dict
        conninfo = {
            "dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"],
            "host": db["HOST"], "port": db["PORT"], "autocommit": True,
        }  # fmt: skip
        connection.close()  # forked children must not share our socket
        context = multiprocessing.get_context("fork")
        go = context.Event()
        processes = [context.Process(target=raw_job_worker, args=(conninfo, go)) for _ in range(count)]
        for process in processes:
            process.start()
        time.sleep(0.5)
        go.set()
        for process in processes:
            process.join()
        return self._wait_jobs(n)
