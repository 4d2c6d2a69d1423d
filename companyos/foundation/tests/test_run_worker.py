"""``run_worker`` keeps its jobs' worker running through database errors (a failover, a restarted server)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import psycopg
import pytest
from procrastinate import PsycopgConnector, job_context
from procrastinate import worker as procrastinate_worker
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.contrib.django.utils import connector_params
from procrastinate.exceptions import ConnectorException
from procrastinate.retry import RetryDecision

from companyos.foundation.management.commands import run_worker
from companyos.foundation.tests.support import current_database_url


class ScriptedWorker:
    """Stands in for Procrastinate's worker: its run() ends as scripted, or runs until stopped."""

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


def supervise(endings: list, *, stop_after: float) -> tuple[list[ScriptedWorker], float]:
    """Run a ``JobsSupervisor`` with workers ending as ``endings`` say, stopping it after ``stop_after`` s."""
    started: list[ScriptedWorker] = []

    def new_worker() -> ScriptedWorker:
        started.append(ScriptedWorker(endings[len(started)] if len(started) < len(endings) else None))
        return started[-1]

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        jobs = run_worker.JobsSupervisor("test", new_worker)
        loop.call_later(stop_after, jobs.stop)
        begun = loop.time()
        await jobs.run()
        return loop.time() - begun

    return started, asyncio.run(scenario())


@pytest.fixture
def short_pauses(monkeypatch):
    monkeypatch.setattr(run_worker, "RESTART_FIRST_SECONDS", 0.05)
    monkeypatch.setattr(run_worker, "RESTART_MAX_SECONDS", 0.2)


def test_a_jobs_worker_that_ends_on_a_database_error_is_started_again(short_pauses, caplog):
    lost = ConnectorException("Database error.")
    lost.__cause__ = psycopg.OperationalError("connection failed: session is read-only\nMultiple attempts failed")
    with caplog.at_level(logging.WARNING, logger="companyos.jobs"):
        started, _ = supervise(
            [lost, psycopg.OperationalError("server closed the connection"), "side task"], stop_after=1
        )

    assert len(started) == 4, "three endings, then a worker that runs until the stop"
    assert started[-1].stopped.is_set()
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == (
        "worker test: the jobs' worker ended on a database error (connection failed: session is read-only);"
        " starting it again in 0.05 s"
    )
    assert "starting it again in 0.1 s" in messages[1], "the pause doubles while it keeps failing"
    assert "ended on a failed side task; starting it again in 0.2 s" in messages[2]


def test_a_stop_during_the_pause_ends_it_at_once(monkeypatch):
    monkeypatch.setattr(run_worker, "RESTART_FIRST_SECONDS", 30)
    started, took = supervise([ConnectorException("Database error.")], stop_after=0.2)

    assert len(started) == 1, "no worker started after the stop"
    assert took < 5


def test_any_other_error_still_ends_the_worker(short_pauses):
    with pytest.raises(ZeroDivisionError):
        supervise([ZeroDivisionError("a bug")], stop_after=1)


# The jobs' worker under test reaches the database under this name, so the test can find its connections.
WORKER_APPLICATION = "cut-job-worker"
CUT_QUEUE = "test-cut"


@pytest.fixture
def locking_job() -> Iterator[tuple[str, dict]]:
    """A job that leaves its own row locked by another session as it ends: recording its outcome
    then waits on that lock, where the test can have the server end the worker's connection."""
    held: dict[str, psycopg.Connection] = {}

    def lock_own_row(context: job_context.JobContext) -> None:
        held["session"] = locker = psycopg.connect(held["url"])
        locker.execute("SELECT 1 FROM procrastinate_jobs WHERE id = %s FOR UPDATE", [context.job.id])

    held["url"] = current_database_url()
    task = app.task(name="tests.lock_own_row", queue=CUT_QUEUE, pass_context=True)(lock_own_row)
    yield task.name, held
    app.tasks.pop(task.name)
    ProcrastinateJob.objects.filter(task_name=task.name).delete()  # Procrastinate's tables are not flushed
    if "session" in held:
        held["session"].close()


def _worker_connector() -> PsycopgConnector:
    return PsycopgConnector(kwargs={**connector_params(), "application_name": WORKER_APPLICATION})


def _job_worker() -> run_worker.JobWorker:
    return run_worker.JobWorker(
        app=app, queues=[CUT_QUEUE], install_signal_handlers=False, fetch_job_polling_interval=0.2
    )


@pytest.mark.django_db(transaction=True)
def test_a_job_outcome_whose_connection_the_server_cut_is_recorded_on_a_new_one(locking_job, caplog):
    """Without the retry the job stays ``doing`` under a live worker, which nothing returns to the queue."""
    task_name, held = locking_job
    job_id = app.configure_task(task_name).defer()

    async def scenario() -> str | None:
        with app.replace_connector(_worker_connector()):
            async with (
                app.open_async(),
                await psycopg.AsyncConnection.connect(held["url"], autocommit=True) as observer,
            ):
                worker = _job_worker()
                running = asyncio.create_task(worker.run())
                deadline = time.monotonic() + 20
                # The outcome's statement waits on the row's lock: the server ends its connection, then the lock goes.
                while not await _scalar(observer, _CUT_WAITING_SQL, WORKER_APPLICATION):
                    assert time.monotonic() < deadline, "the job's outcome never waited on its row"
                    await asyncio.sleep(0.05)
                held["session"].close()
                while (status := await _scalar(observer, _STATUS_SQL, job_id)) == "doing":
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                worker.stop()
                await running
        return status

    with caplog.at_level(logging.WARNING, logger="companyos.jobs"):
        status = asyncio.run(scenario())

    assert status == "succeeded"
    assert ProcrastinateJob.objects.get(id=job_id).attempts == 1, "recorded once: not run again"
    assert f"job {job_id} (tests.lock_own_row): could not record its outcome; retrying in 0.2 s" in caplog.text


# Ends the worker's connections that wait on a lock; how many it ended.
_CUT_WAITING_SQL = """
    SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
     WHERE application_name = %s AND wait_event_type = 'Lock'
"""
_STATUS_SQL = "SELECT status::text FROM procrastinate_jobs WHERE id = %s"


async def _scalar(connection: psycopg.AsyncConnection, sql: str, param: object) -> object:
    cursor = await connection.execute(sql, [param])
    row = await cursor.fetchone()
    return row[0] if row else None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("retried", "left"),
    [(False, ("succeeded", 1)), (True, ("doing", 1))],
    ids=["finished", "retried-and-running-here-again"],
)
def test_recording_a_job_again_after_a_lost_connection_reads_it_back_first(locking_job, monkeypatch, retried, left):
    """The attempt that lost its connection had committed: the retry finds the job recorded and writes
    nothing (Procrastinate would refuse to finish a job twice), also when the job, retried, is already
    running again on this same worker: that next attempt is not this outcome's to record."""
    job_id = app.configure_task(locking_job[0]).defer()
    recorded = procrastinate_worker.Worker._persist_job_status

    async def commit_then_lose_the_connection(self, **outcome):
        await recorded(self, **outcome)
        monkeypatch.setattr(procrastinate_worker.Worker, "_persist_job_status", recorded)
        if retried:
            assert (await app.job_manager.fetch_job(queues=[CUT_QUEUE], worker_id=self.worker_id)).id == job_id
        raise ConnectorException("Database error.") from psycopg.OperationalError("server closed the connection")

    monkeypatch.setattr(procrastinate_worker.Worker, "_persist_job_status", commit_then_lose_the_connection)
    monkeypatch.setattr(run_worker, "RECORD_RETRY_FIRST_SECONDS", 0.01)

    async def scenario() -> None:
        with app.replace_connector(_worker_connector()):
            async with app.open_async():
                worker = _job_worker()
                worker.worker_id = await app.job_manager.register_worker()
                job = await app.job_manager.fetch_job(queues=[CUT_QUEUE], worker_id=worker.worker_id)
                context = job_context.JobContext(
                    app=app, job=job, abort_reason=lambda: None, start_timestamp=time.time()
                )
                await worker._persist_job_status(
                    job=job,
                    status=job_context.jobs.Status.FAILED if retried else job_context.jobs.Status.SUCCEEDED,
                    retry_decision=RetryDecision(retry_in={"seconds": 0}) if retried else None,
                    context=context,
                    job_result=job_context.JobResult(start_timestamp=context.start_timestamp),
                )
                await app.job_manager.unregister_worker(worker.worker_id)

    asyncio.run(scenario())

    job = ProcrastinateJob.objects.get(id=job_id)
    assert (job.status, job.attempts) == left
