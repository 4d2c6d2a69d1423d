"""``manage.py bench_queue``: the task queue against its peers, in one run on one database.

Measures, in one run, with the same task count on the same PostgreSQL:

* tasks/s run by 1, 2 and 4 worker processes of each queue, idle first and
  woken by the enqueue's NOTIFY (medians of ``--repeat`` runs; every queue's
  workers wait side by side and the queues take turns, so a slower spell of
  the machine falls on all of them):

  - ours: ``run_agent_worker`` (state machine, ``started`` and ``completed``
    event rows, history rows, live sends, the agent's counters);
  - Procrastinate, as the project runs it (``run_worker --without agents``):
    no-op jobs (``bench_noop``);
  - PgQueuer (``pgqueuer`` installed): a no-op entrypoint, batches of
    ``--batch-size``, as ours;
  - a minimal raw-psycopg ``SKIP LOCKED`` loop over our table (claim one,
    complete it, nothing else);

* double runs: tasks or jobs started more than once (or not completed);
* enqueue → start with one idle worker (the clock read before the enqueue
  call to the start the worker recorded), and the enqueue call itself, one
  at a time and in bulk;
* what each does per task, from PostgreSQL's own counters while one worker
  drains the queue: transactions and rows inserted, updated and deleted.

Throughput is timed from each queue's own timestamps (first start to last
finish), so process start-up is not counted. Uses the configured database:
a throwaway organization is created and deleted, and the peers' bench jobs
are deleted at the end (PgQueuer's tables are installed if missing).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import multiprocessing
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.db.models import Max, Min, QuerySet
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateWorker

from agents import services
from agents.models import Agent, AgentTask
from agents.queue import NOTIFY_CHANNEL
from companyos.foundation.jobs import bench_noop
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
# Procrastinate's bench queue: its jobs, and the events its triggers record.
JOBS_DONE = "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'bench' AND status = 'succeeded'"
JOB_SPAN = """
    SELECT count(*) FILTER (WHERE e.type = 'succeeded'),
           extract(epoch FROM max(e.at) FILTER (WHERE e.type = 'succeeded')
                              - min(e.at) FILTER (WHERE e.type = 'started'))
    FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id
    WHERE j.queue_name = 'bench'
"""
JOBS_STARTED_TWICE = """
    SELECT count(*) FROM (
        SELECT e.job_id FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id
        WHERE j.queue_name = 'bench' AND e.type = 'started' GROUP BY e.job_id HAVING count(*) > 1
    ) AS twice
"""
JOB_STARTS = """
    SELECT e.job_id, e.at FROM procrastinate_events e
    WHERE e.type = 'started' AND e.job_id = ANY(%s)
"""
# PgQueuer's log of the bench entrypoint.
PGQUEUER_ENTRYPOINT = "bench_echo"
PGQUEUER_DONE = "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = %s AND status = 'successful'"
PGQUEUER_SPAN = """
    SELECT extract(epoch FROM max(created) FILTER (WHERE status = 'successful')
                              - min(created) FILTER (WHERE status = 'picked'))
    FROM pgqueuer_log WHERE entrypoint = %s
"""
PGQUEUER_NOT_ONCE = """
    SELECT count(*) FROM (
        SELECT job_id FROM pgqueuer_log WHERE entrypoint = %s AND status = 'successful'
        GROUP BY job_id HAVING count(*) > 1
    ) AS twice
"""
PGQUEUER_STARTS = "SELECT job_id, created FROM pgqueuer_log WHERE status = 'picked' AND job_id = ANY(%s)"
# The database's own counters: what the workers did, whoever they are.
DATABASE_COUNTERS = """
    SELECT xact_commit, tup_inserted, tup_updated, tup_deleted
    FROM pg_stat_database WHERE datname = current_database()
"""
COUNTERS = ("transactions", "inserted", "updated", "deleted")
# Deadlocks abort a transaction and, in a worker, leave its tasks to their leases:
# a run that has any is not measuring the queue.
DEADLOCKS = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
FLUSH_COUNTERS = "SELECT pg_stat_force_next_flush()"


def raw_worker(conninfo: dict[str, Any], agent_ids: list[uuid.UUID], go: Any) -> None:
    """The baseline: claim one task with SKIP LOCKED, complete it, repeat until none is left."""
    with psycopg.connect(**conninfo) as conn:
        worker = f"raw:{multiprocessing.current_process().pid}"
        go.wait()
        while True:
            with conn.transaction():
                row = conn.execute(RAW_CLAIM, {"worker": worker, "agents": agent_ids}).fetchone()
            if row is None:
                return
            with conn.transaction():
                conn.execute(RAW_COMPLETE, {"id": row[0], "output": psycopg.types.json.Jsonb(row[1])})


def pgqueuer_worker(conninfo: dict[str, Any], batch_size: int, drain: bool) -> None:
    """A PgQueuer queue manager running a no-op entrypoint (until killed, or with ``drain`` until empty)."""
    from pgqueuer import Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    async def serve() -> None:
        async with await psycopg.AsyncConnection.connect(**conninfo) as conn:
            manager = QueueManager(Queries.from_psycopg_connection(conn))

            @manager.entrypoint(PGQUEUER_ENTRYPOINT)
            async def echo(job) -> None:
                return None

            mode = QueueExecutionMode.drain if drain else QueueExecutionMode.continuous
            await manager.run(batch_size=batch_size, mode=mode)

    asyncio.run(serve())


def conninfo() -> dict[str, Any]:
    db = connection.settings_dict
    return {
        "dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"],
        "host": db["HOST"], "port": db["PORT"], "autocommit": True,
    }  # fmt: skip


def scalar(sql: str, params: Any = None) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def wait_until(done: Callable[[], bool], what: str, timeout: float = 300) -> None:
    """Poll ``done`` every 50 ms."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish in time")
        time.sleep(0.05)


@contextmanager
def processes(command: list[str], count: int, ready: Callable[[], bool]) -> Iterator[None]:
    """``count`` processes of ``manage.py <command>`` for the block, once ``ready()``; SIGTERM at the end."""
    started = [
        subprocess.Popen(  # noqa: S603 - our own command line
            [sys.executable, "manage.py", *command],
            cwd=settings.BASE_DIR,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        wait_until(ready, "the workers' start", timeout=60)
        yield
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(timeout=30)


@contextmanager
def forked(target: Callable[..., None], args: tuple, count: int) -> Iterator[list[Any]]:
    """``count`` forked processes running ``target(*args)``; killed at the end if still running."""
    # Forked children only use their own connections; closing ours first keeps
    # them from inheriting an open socket.
    connection.close()
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=target, args=args) for _ in range(count)]
    for child in children:
        child.start()
    try:
        yield children
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join()


class Ours:
    """The project's queue: ``run_agent_worker`` processes over echo tasks."""

    name = "ours"

    def __init__(self, agents: list[Agent], batch_size: int) -> None:
        self.agents, self.batch_size = agents, batch_size

    def tasks(self) -> QuerySet[AgentTask]:
        return AgentTask.objects.filter(agent__in=self.agents)

    def flush_counters(self) -> None:
        """Nothing: it writes through this process's Django connections, which counters() closes."""

    def command(self, *extra: str) -> list[str]:
        command = ["run_agent_worker", "--batch-size", str(self.batch_size), "--poll-seconds", "60"]
        return [*command, *(f"--agent={agent.slug}" for agent in self.agents), *extra]

    def workers(self, count: int):
        listening = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
            [f"LISTEN {NOTIFY_CHANNEL}"],
        )
        return processes(self.command(), count, lambda: scalar(*listening) >= count)

    def clear(self) -> None:
        self.tasks().delete()

    def fill(self, n: int) -> None:
        """``n`` echo tasks queued (with their events) in one transaction, task ``i`` for agent
        ``i mod agents``: in claim order the agents alternate, as the tasks of several agents
        do in a shared queue, rather than coming one agent's block at a time."""
        with transaction.atomic():
            for i in range(n):
                agent = self.agents[i % len(self.agents)]
                services.tasks_enqueue(agent=agent, task_type="echo", title="bench", inputs=[{"n": i}])

    def done(self, n: int) -> bool:
        return self.tasks().filter(status=AgentTask.Status.COMPLETED).count() >= n

    def measure(self, n: int) -> tuple[float, int]:
        """Tasks/s from the database's own timestamps, and the tasks not run exactly once."""
        span = self.tasks().aggregate(first=Min("started_at"), last=Max("completed_at"))
        once = self.tasks().filter(status=AgentTask.Status.COMPLETED, attempts=1).count()
        return n / (span["last"] - span["first"]).total_seconds(), n - once

    def run(self, n: int) -> tuple[float, int]:
        self.clear()
        self.fill(n)  # the insert's NOTIFY wakes the idle workers at once
        wait_until(lambda: self.done(n), "the tasks")
        return self.measure(n)

    def enqueue_one(self, index: int) -> AgentTask:
        return services.task_enqueue(agent=self.agents[0], task_type="echo", title=f"ping {index}")

    def enqueue_many(self, n: int) -> None:
        services.tasks_enqueue(agent=self.agents[0], task_type="echo", title="bulk", inputs=[{}] * n)

    def starts(self, enqueued: list[AgentTask]) -> list[datetime | None]:
        started = dict(self.tasks().filter(pk__in=[task.pk for task in enqueued]).values_list("pk", "started_at"))
        return [started.get(task.pk) for task in enqueued]

    def drain_once(self) -> None:
        """One worker process drains the queue and exits."""
        _call(self.command("--burst"))


class Raw(Ours):
    """The floor: forked raw-psycopg SKIP LOCKED loops over our table."""

    name = "raw"

    @contextmanager
    def workers(self, count: int) -> Iterator[None]:
        self.count = count
        yield

    def run(self, n: int) -> tuple[float, int]:
        self.clear()
        self.fill(n)
        self.drain(self.count)
        return self.measure(n)

    def drain(self, count: int) -> None:
        args = (conninfo(), [agent.pk for agent in self.agents], go := multiprocessing.get_context("fork").Event())
        with forked(raw_worker, args, count) as children:
            time.sleep(0.5)  # let them connect
            go.set()
            for child in children:
                child.join()

    def drain_once(self) -> None:
        self.drain(1)


class Procrastinate:
    """Procrastinate as the project runs it: ``run_worker --without agents`` on the bench queue."""

    name = "procrastinate"

    def workers(self, count: int):
        before = ProcrastinateWorker.objects.count()
        command = ["run_worker", "--without", "agents", "--queue", "bench", "--concurrency", "1"]
        return processes(command, count, lambda: ProcrastinateWorker.objects.count() >= before + count)

    def clear(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM procrastinate_jobs WHERE queue_name = 'bench'")

    def flush_counters(self) -> None:
        """Nothing: it defers through this process's Django connections, which counters() closes."""

    def fill(self, n: int) -> None:
        bench_noop.batch_defer(*({} for _ in range(n)))

    def done(self, n: int) -> bool:
        return scalar(JOBS_DONE) >= n

    def measure(self, n: int) -> tuple[float, int]:
        succeeded, seconds = _row(JOB_SPAN)
        return n / float(seconds), n - succeeded + scalar(JOBS_STARTED_TWICE)

    def run(self, n: int) -> tuple[float, int]:
        self.clear()
        self.fill(n)
        wait_until(lambda: self.done(n), "the jobs")
        time.sleep(0.2)  # the last finish's event is written just after the status
        return self.measure(n)

    def enqueue_one(self, index: int) -> int:
        return bench_noop.defer()

    def enqueue_many(self, n: int) -> None:
        bench_noop.batch_defer(*({} for _ in range(n)))

    def starts(self, enqueued: list[int]) -> list[datetime | None]:
        return job_starts(JOB_STARTS, enqueued)

    def drain_once(self) -> None:
        # Procrastinate's own command: the project's run_worker has no "until empty".
        _call(["procrastinate", "worker", "--queues", "bench", "--concurrency", "1", "--one-shot"])


class PgQueuer:
    """PgQueuer (async, batched) over its own tables in the same database."""

    name = "pgqueuer"

    def __init__(self, batch_size: int) -> None:
        from pgqueuer import Queries

        self.batch_size = batch_size
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(psycopg.AsyncConnection.connect(**conninfo()))
        self.queries = Queries.from_psycopg_connection(self.conn)
        if not self.loop.run_until_complete(self.queries.schema_is_installed()):
            self.loop.run_until_complete(self.queries.install())

    def flush_counters(self) -> None:
        """Its enqueues go through a connection of its own."""
        self.loop.run_until_complete(self.conn.execute(FLUSH_COUNTERS))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()

    @contextmanager
    def workers(self, count: int) -> Iterator[None]:
        with forked(pgqueuer_worker, (conninfo(), self.batch_size, False), count):
            time.sleep(2)  # connected and listening
            yield

    def clear(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM pgqueuer WHERE entrypoint = %s", [PGQUEUER_ENTRYPOINT])
            cursor.execute("DELETE FROM pgqueuer_log WHERE entrypoint = %s", [PGQUEUER_ENTRYPOINT])

    def fill(self, n: int) -> None:
        self.enqueue_many(n)

    def done(self, n: int) -> bool:
        return scalar(PGQUEUER_DONE, [PGQUEUER_ENTRYPOINT]) >= n

    def measure(self, n: int) -> tuple[float, int]:
        done = scalar(PGQUEUER_DONE, [PGQUEUER_ENTRYPOINT])
        twice = scalar(PGQUEUER_NOT_ONCE, [PGQUEUER_ENTRYPOINT])
        return n / float(scalar(PGQUEUER_SPAN, [PGQUEUER_ENTRYPOINT])), n - done + twice

    def run(self, n: int) -> tuple[float, int]:
        self.clear()
        self.fill(n)
        wait_until(lambda: self.done(n), "PgQueuer's jobs")
        return self.measure(n)

    def enqueue_one(self, index: int) -> int:
        (job,) = self.loop.run_until_complete(self.queries.enqueue([PGQUEUER_ENTRYPOINT], [None], [0]))
        return job

    def enqueue_many(self, n: int) -> None:
        self.loop.run_until_complete(self.queries.enqueue([PGQUEUER_ENTRYPOINT] * n, [None] * n, [0] * n))

    def starts(self, enqueued: list[int]) -> list[datetime | None]:
        return job_starts(PGQUEUER_STARTS, enqueued)

    def drain_once(self) -> None:
        with forked(pgqueuer_worker, (conninfo(), self.batch_size, True), 1) as (child,):
            child.join()


def job_starts(sql: str, enqueued: list[int]) -> list[datetime | None]:
    """When each of the peer's jobs ``enqueued`` started (None: not yet), by ``sql`` (job id, start)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, [enqueued])
        started = dict(cursor.fetchall())
    return [started.get(job) for job in enqueued]


def _all_started(queue, enqueued: list) -> list[datetime]:
    """When each of ``enqueued`` started, once all have."""
    deadline = time.monotonic() + 30
    while None in (starts := queue.starts(enqueued)):
        if time.monotonic() > deadline:
            raise TimeoutError("the latency samples did not all start")
        time.sleep(0.05)
    return starts


def _row(sql: str) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


def _call(command: list[str]) -> None:
    """Run ``manage.py <command>`` to its end."""
    subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "manage.py", *command],
        cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )  # fmt: skip


def fresh_start(queue) -> None:
    """Empty ``queue`` and vacuum: every run starts from tables without the
    dead rows of the ones before (the machine's autovacuum may be off)."""
    queue.clear()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")


def counters(queues: list) -> dict[str, int]:
    """The database's counters, once what this process's connections did is counted.

    An idle backend sends its counts up to seconds late unless asked to send
    them at once, and one that ends sends them: the pool's connections (any of
    which this process may have used) are closed, the peers' own asked, and
    each worker measured has exited.
    """
    for queue in queues:
        queue.flush_counters()
    connection.close()
    connection.close_pool()
    time.sleep(0.5)  # the closed backends have ended
    with connection.cursor() as cursor:
        cursor.execute(DATABASE_COUNTERS)
        return dict(zip(COUNTERS, cursor.fetchone(), strict=True))


class Command(BaseCommand):
    help = "Benchmark the agent task queue against Procrastinate, PgQueuer and a raw SKIP LOCKED loop."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tasks", type=int, default=300, help="Tasks (or jobs) per run (default 300).")
        parser.add_argument("--repeat", type=int, default=3, help="Runs per configuration; medians (default 3).")
        parser.add_argument("--workers", default="1,2,4", help="Worker process counts (default 1,2,4).")
        parser.add_argument("--batch-size", type=int, default=10, help="Our and PgQueuer's batch size (10).")
        parser.add_argument("--agents", type=int, default=4, help="Agents our tasks are spread over (default 4).")
        parser.add_argument(
            "--latency-samples", type=int, default=30, help="Enqueue→start samples, 2 or more (default 30)."
        )
        parser.add_argument(
            "--peers", default="procrastinate,pgqueuer,raw",
            help="The queues ours is compared with (default procrastinate,pgqueuer,raw).",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.DEBUG:
            # The workers inherit it: every query would be kept and logged, as no deployment does.
            raise CommandError("bench_queue measures the project as deployed: run it with DEBUG=false.")
        n, repeat = options["tasks"], options["repeat"]
        if options["latency_samples"] < 2:
            raise CommandError("--latency-samples must be at least 2: the p90 needs two samples.")
        counts = [int(count) for count in options["workers"].split(",")]
        peers = options["peers"].split(",") if options["peers"] else []
        if "pgqueuer" in peers and importlib.util.find_spec("pgqueuer") is None:
            raise CommandError("PgQueuer is not installed (requirements-dev.txt), or leave it out of --peers.")
        # Procrastinate logs a line per defer call: the latency samples would bury the table.
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
        self.organization = Organization.objects.create(name="Queue benchmark", slug=f"bench-{uuid.uuid4().hex[:8]}")

        # Each completion updates its agent's counters in the same transaction,
        # so one agent's row serialises its completions: spread the tasks.
        def bench_agents(role: str) -> list[Agent]:
            return [
                Agent.objects.create(
                    organization=self.organization,
                    name=f"Bench {role} {index}",
                    slug=f"bench-{role}-{index}",
                    agent_type=Agent.AgentType.ANALYST,
                    model="none",
                )
                for index in range(options["agents"])
            ]

        ours = Ours(bench_agents("echo"), options["batch_size"])
        queues = [ours]
        for peer in peers:
            queues.append(
                {
                    "procrastinate": Procrastinate,
                    "pgqueuer": lambda: PgQueuer(options["batch_size"]),
                    "raw": lambda: Raw(bench_agents("raw"), options["batch_size"]),
                }[peer]()
            )
        try:
            self.stdout.write(
                f"bench_queue: {n} tasks per run, median of {repeat} runs, batch size {options['batch_size']} "
                f"(ours, PgQueuer); ours keeps every event row, history row and live send"
            )
            self._throughput(queues, counts, n, repeat)
            timed = [queue for queue in queues if not isinstance(queue, Raw)]
            self._latency(timed, options["latency_samples"], n, repeat)
            self._per_task(queues, n)
        finally:
            for queue in queues:
                queue.clear()
                if isinstance(queue, PgQueuer):
                    queue.close()
            self.organization.delete()

    def _throughput(self, queues: list, counts: list[int], n: int, repeat: int) -> None:
        names = [queue.name for queue in queues]
        ratios = [f"ours/{name[:5]}" for name in names[1:]]
        self.stdout.write(
            f"{'workers':>7} " + " ".join(f"{name:>13}" for name in names) + " "
            + " ".join(f"{ratio:>10}" for ratio in ratios) + "  not run exactly once, deadlocks (tasks/s medians)"
        )  # fmt: skip
        rates: dict[str, dict[int, float]] = {name: {} for name in names}
        for count in counts:
            runs: dict[str, list[tuple[float, int]]] = {name: [] for name in names}
            deadlocks = scalar(DEADLOCKS)
            # Every queue's workers wait side by side, and the queues take turns, one
            # run each per round: a machine that slows down for a while slows them alike.
            with ExitStack() as stack:
                for queue in queues:
                    stack.enter_context(queue.workers(count))
                for _ in range(repeat):
                    for queue in queues:
                        fresh_start(queue)
                        runs[queue.name].append(queue.run(n))
            # The workers have exited: their backends have reported their counts.
            deadlocks = scalar(DEADLOCKS) - deadlocks
            for name in names:
                rates[name][count] = statistics.median(rate for rate, _ in runs[name])
            wrong = sum(not_once for name in names for _, not_once in runs[name])
            ours = rates["ours"][count]
            self.stdout.write(
                f"{count:>7} " + " ".join(f"{rates[name][count]:>13.0f}" for name in names) + " "
                + " ".join(f"{ours / rates[name][count]:>10.2f}" for name in names[1:]) + f"  {wrong}, {deadlocks}"
            )  # fmt: skip
        if 1 in counts and 2 in counts:
            self.stdout.write(f"scaling, ours: 2 workers / 1 worker = {rates['ours'][2] / rates['ours'][1]:.2f}")

    def _latency(self, queues: list, samples: int, n: int, repeat: int) -> None:
        """Enqueue→start with one idle worker, the enqueue call one at a time, and in bulk (ms).

        The queues take turns here too: one sample of each per round, with
        every queue's idle worker waiting; then ``repeat`` rounds of the bulk
        call, with no worker running.
        """
        before: dict[str, list[datetime]] = {queue.name: [] for queue in queues}
        enqueued: dict[str, list[Any]] = {queue.name: [] for queue in queues}
        calls: dict[str, list[float]] = {queue.name: [] for queue in queues}
        with ExitStack() as stack:
            for queue in queues:
                fresh_start(queue)
                stack.enter_context(queue.workers(1))
            for index in range(samples):
                for queue in queues:
                    before[queue.name].append(timezone.now())
                    started = time.perf_counter()
                    enqueued[queue.name].append(queue.enqueue_one(index))
                    calls[queue.name].append((time.perf_counter() - started) * 1000)
                    time.sleep(0.05)  # the workers are idle again before the next one
            starts = {queue.name: _all_started(queue, enqueued[queue.name]) for queue in queues}
        bulk: dict[str, list[float]] = {queue.name: [] for queue in queues}
        for _ in range(repeat):
            for queue in queues:
                fresh_start(queue)
                started = time.perf_counter()
                queue.enqueue_many(n)
                bulk[queue.name].append((time.perf_counter() - started) * 1000)
                queue.clear()
        for queue in queues:
            pairs = zip(before[queue.name], starts[queue.name], strict=True)
            to_start = [(start - at).total_seconds() * 1000 for at, start in pairs]
            self.stdout.write(
                f"{queue.name}: enqueue→start p50 {statistics.median(to_start):.1f} ms, "
                f"p90 {statistics.quantiles(to_start, n=10)[-1]:.1f} ms ({samples} samples, idle worker); "
                f"one enqueue call p50 {statistics.median(calls[queue.name]):.2f} ms; "
                f"{n} in one call {statistics.median(bulk[queue.name]):.0f} ms (median of {repeat})"
            )

    def _per_task(self, queues: list, n: int) -> None:
        """What one worker draining ``n`` does, per task, by the database's own counters."""
        self.stdout.write(f"per task, one worker draining {n} (the database's counters, start-up included):")
        for queue in queues:
            fresh_start(queue)
            queue.fill(n)
            before = counters(queues)
            queue.drain_once()
            after = counters(queues)
            # Reading the counters is one transaction of ours.
            delta = {name: after[name] - before[name] - (1 if name == "transactions" else 0) for name in COUNTERS}
            self.stdout.write(f"  {queue.name:>13}: " + ", ".join(f"{delta[name] / n:.2f} {name}" for name in COUNTERS))
            queue.clear()
