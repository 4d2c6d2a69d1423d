"""``run_worker``'s jobs' worker writes a job's outcome through a lost connection (a failover, a restarted server)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

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
from companyos.foundation.tests.support import CUT_WAITING_ON_A_LOCK_SQL, current_database_url

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


@pytest.fixture
def quick_job() -> Iterator[str]:
    """A job that does nothing."""
    task = app.task(name="tests.quick", queue=CUT_QUEUE)(lambda: None)
    yield task.name
    app.tasks.pop(task.name)
    ProcrastinateJob.objects.filter(task_name=task.name).delete()


def _worker_connector() -> PsycopgConnector:
    return PsycopgConnector(kwargs={**connector_params(), "application_name": WORKER_APPLICATION})


def _job_worker(**options: Any) -> run_worker.JobWorker:
    return run_worker.JobWorker(
        app=app, queues=[CUT_QUEUE], install_signal_handlers=False, fetch_job_polling_interval=0.2, **options
    )


@pytest.mark.django_db(transaction=True)
def test_a_jobs_worker_that_replaces_one_gone_returns_the_job_it_left_doing_and_runs_it(quick_job, caplog):
    """The worker before it took a job (its fetch committed) and ended on a database error without
    running it or unregistering: its heartbeat is still fresh, so ``retry_stalled_jobs`` would wait."""
    job_id = app.configure_task(quick_job).defer()

    async def scenario() -> tuple[str | None, run_worker.JobWorker]:
        observing = psycopg.AsyncConnection.connect(current_database_url(), autocommit=True)
        with app.replace_connector(_worker_connector()):
            async with app.open_async(), await observing as observer:
                gone = _job_worker()
                gone.worker_id = await app.job_manager.register_worker()
                assert (await app.job_manager.fetch_job(queues=[CUT_QUEUE], worker_id=gone.worker_id)).id == job_id
                worker = _job_worker(replaces=[gone])
                running = asyncio.create_task(worker.run())
                deadline = time.monotonic() + 20
                while (status := await _scalar(observer, _STATUS_SQL, job_id)) != "succeeded":
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                worker.stop()
                await running
        return status, gone

    with caplog.at_level(logging.WARNING, logger="companyos.jobs"):
        status, gone = asyncio.run(scenario())

    assert status == "succeeded"
    assert ProcrastinateJob.objects.get(id=job_id).attempts == 2, "the attempt the gone worker never ran counts"
    assert gone.worker_id is None
    assert f"job {job_id} (tests.quick) of a silent worker goes back to the queue" in caplog.text


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
                while not await _scalar(observer, CUT_WAITING_ON_A_LOCK_SQL, WORKER_APPLICATION):
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
