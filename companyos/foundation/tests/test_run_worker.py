"""``run_worker`` keeps its jobs' worker running through database errors (a failover, a restarted server)."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest
from procrastinate.exceptions import ConnectorException

from companyos.foundation.management.commands import run_worker


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
