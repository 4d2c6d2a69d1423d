"""The jobs' loops: restarted after database errors; and the scheduler and the worker as processes,
every periodic job once per period however many run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from contextlib import ExitStack

import psycopg
import psycopg_pool
import pytest
from django.conf import settings
from django.db.models import Max
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.exceptions import ConnectorException

from companyos.foundation import jobs
from companyos.foundation.tests.support import manage_py


class ScriptedLoop:
    """Stands in for a loop of Procrastinate's: its run() ends as scripted, or runs until stopped."""

    def __init__(self, ending: BaseException | str | None) -> None:
        self.ending = ending
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        if isinstance(self.ending, BaseException):
            raise self.ending
        if self.ending is None:
            await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


def supervise(endings: list, *, stop_after: float) -> tuple[list[ScriptedLoop], float]:
    """Run a ``Supervisor`` with loops ending as ``endings`` say, stopping it after ``stop_after`` s."""
    started: list[ScriptedLoop] = []

    def new_loop() -> ScriptedLoop:
        started.append(ScriptedLoop(endings[len(started)] if len(started) < len(endings) else None))
        return started[-1]

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        supervisor = jobs.Supervisor("worker test", "the jobs' worker", new_loop)
        loop.call_later(stop_after, supervisor.stop)
        begun = loop.time()
        await supervisor.run()
        return loop.time() - begun

    return started, asyncio.run(scenario())


@pytest.fixture
def short_pauses(monkeypatch):
    monkeypatch.setattr(jobs, "RESTART_FIRST_SECONDS", 0.05)
    monkeypatch.setattr(jobs, "RESTART_MAX_SECONDS", 0.2)


def test_a_loop_that_ends_on_a_database_error_is_started_again(short_pauses, caplog):
    lost = ConnectorException("Database error.")
    lost.__cause__ = psycopg.OperationalError("connection failed: session is read-only\nMultiple attempts failed")
    with caplog.at_level(logging.WARNING, logger="companyos.jobs"):
        started, _ = supervise(
            [lost, psycopg.OperationalError("server closed the connection"), "side task"], stop_after=1
        )

    assert len(started) == 4, "three endings, then a loop that runs until the stop"
    assert started[-1].stopped.is_set()
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == (
        "worker test: the jobs' worker ended on a database error (connection failed: session is read-only);"
        " starting it again in 0.05 s"
    )
    assert "starting it again in 0.1 s" in messages[1], "the pause doubles while it keeps failing"
    assert "ended on a failed side task; starting it again in 0.2 s" in messages[2]


def test_a_stop_during_the_pause_ends_it_at_once(monkeypatch):
    monkeypatch.setattr(jobs, "RESTART_FIRST_SECONDS", 30)
    started, took = supervise([ConnectorException("Database error.")], stop_after=0.2)

    assert len(started) == 1, "no loop started after the stop"
    assert took < 5


def test_any_other_error_still_ends_the_loop(short_pauses):
    with pytest.raises(ZeroDivisionError):
        supervise([ZeroDivisionError("a bug")], stop_after=1)


@pytest.mark.django_db
def test_the_waiting_processes_pool_gives_up_on_a_connection_as_soon_as_django_s_does(settings):
    """A worker stopped while the database is down waits that long for each statement of its own
    still to go (a fetch, unregistering): psycopg's default, 30 s, held such a stop for a minute."""
    settings.DATABASE_POOL_TIMEOUT = 0.5

    async def wait_for_one_more_connection() -> float:
        connector = jobs.waiting_connector()
        await connector.open_async()
        pool = connector.pool
        held = [await pool.getconn() for _ in range(pool.max_size)]
        started = time.monotonic()
        try:
            with pytest.raises(psycopg_pool.PoolTimeout):
                await pool.getconn()
            return time.monotonic() - started
        finally:
            for connection in held:
                await pool.putconn(connection)
            await connector.close_async()

    assert asyncio.run(wait_for_one_more_connection()) < 5


PERIOD_SECONDS = 5
OBSERVED_SECONDS = 40
# How late a scheduler on a loaded machine may defer a period and the period still be required of it.
LATE_SECONDS = 2 * PERIOD_SECONDS
SCHEDULES = [name for name in dir(settings) if name.startswith("SCHEDULE_")]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_schedulers_and_three_workers_run_every_periodic_job_once_per_period():
    every_period = {name: f"* * * * * */{PERIOD_SECONDS}" for name in SCHEDULES}
    periodic = {task.task.name for task in app.periodic_registry.periodic_tasks.values()}
    assert len(periodic) == len(SCHEDULES), "each SCHEDULE_ setting schedules one job"
    # Procrastinate's tables are not Django's to flush between transactional tests: an earlier test's
    # scheduler (on the default periods) leaves its jobs there. Only the jobs deferred from here on count.
    before = ProcrastinateJob.objects.aggregate(last=Max("id"))["last"] or 0
    ours = ProcrastinateJob.objects.filter(task_name__in=periodic, id__gt=before)
    with ExitStack() as processes:
        started = time.time()
        # Entered last, the schedulers stop first: the workers are still there for their last jobs.
        workers = [processes.enter_context(manage_py("run_worker", env=every_period)) for _ in range(3)]
        schedulers = [processes.enter_context(manage_py("run_scheduler", env=every_period)) for _ in range(2)]
        # Five processes start slowly on a busy machine: watch from the moment a scheduler has deferred
        # every job once (it then defers each later period, late or not, until it is stopped).
        deadline = time.monotonic() + 120
        while set(ours.values_list("task_name", flat=True).distinct()) != periodic:
            assert time.monotonic() < deadline, "no scheduler deferred every job within 120 s"
            time.sleep(0.2)
        watched_from = time.time()
        time.sleep(OBSERVED_SECONDS)
        watched_to = time.time()
    stopped = time.time()
    for process in (*schedulers, *workers):
        assert process.returncode == 0, process.output()

    jobs = list(ours.values_list("task_name", "args", "status"))
    runs = Counter((task, args["timestamp"]) for task, args, _ in jobs)
    assert runs and set(runs.values()) == {1}, [run for run, count in runs.items() if count > 1]

    periods = defaultdict(list)
    for task, timestamp in runs:
        periods[task].append(timestamp)
    assert set(periods) == periodic
    # The periods that began while we watched, but those a loaded scheduler may not have reached
    # when it was stopped: it defers a period once it has begun (0.5 s after, or later if it was slow).
    first = (int(watched_from) // PERIOD_SECONDS + 1) * PERIOD_SECONDS
    required = set(range(first, int(watched_to - LATE_SECONDS) + 1, PERIOD_SECONDS))
    assert len(required) >= (OBSERVED_SECONDS - LATE_SECONDS) // PERIOD_SECONDS - 1, "enough periods to prove it"
    for task, timestamps in periods.items():
        timestamps.sort()
        # Nothing older than the period in progress when the first scheduler started (the one it catches
        # up), nothing not yet begun, no period twice (above) and none missed in between.
        assert timestamps[0] >= started - PERIOD_SECONDS - 1 and timestamps[-1] <= stopped, (task, timestamps)
        assert all(b - a == PERIOD_SECONDS for a, b in zip(timestamps, timestamps[1:], strict=False)), task
        assert required <= set(timestamps), (task, sorted(required - set(timestamps)))
    # Workers ran every job of those periods; later ones may still wait for a worker, but none failed.
    statuses = Counter(status for task, args, status in jobs if args["timestamp"] <= max(required))
    assert set(statuses) == {"succeeded"}, statuses
    assert {status for *_, status in jobs} <= {"succeeded", "todo"}, Counter(status for *_, status in jobs)
