"""``run_scheduler`` keeps deferring through database errors (a failover, a restarted server)."""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from procrastinate import PsycopgConnector, periodic
from procrastinate.contrib.django import app
from procrastinate.contrib.django.utils import connector_params
from procrastinate.exceptions import ConnectorException

from companyos.foundation import jobs
from companyos.foundation.management.commands.run_scheduler import Deferrer
from companyos.foundation.tests.support import CUT_WAITING_ON_A_LOCK_SQL, current_database_url, manage_py
from companyos.foundation.topology import wait_for

SCHEDULER_APPLICATION = "test-scheduler"


@pytest.mark.django_db(transaction=True)
def test_a_deferrer_that_ends_on_a_database_error_is_started_again_and_defers_what_it_missed(monkeypatch, caplog):
    monkeypatch.setattr(jobs, "RESTART_FIRST_SECONDS", 0.05)
    deferred = periodic.PeriodicDeferrer.defer_jobs
    calls: list[list] = []

    async def lose_the_connection_once(self, jobs_to_defer):
        calls.append(list(jobs_to_defer))
        if len(calls) == 1:
            raise ConnectorException("Database error.") from psycopg.OperationalError("server closed the connection")
        await deferred(self, calls[-1])

    monkeypatch.setattr(periodic.PeriodicDeferrer, "defer_jobs", lose_the_connection_once)

    async def scenario() -> None:
        with app.replace_connector(PsycopgConnector(kwargs=connector_params())):
            async with app.open_async():
                scheduler = jobs.Supervisor("scheduler test", "the periodic deferrer", Deferrer)
                asyncio.get_running_loop().call_later(1, scheduler.stop)
                await scheduler.run()

    with caplog.at_level(logging.WARNING, logger="companyos.jobs"):
        asyncio.run(scenario())

    assert len(calls) == 2, "the deferrer that failed, then a new one, which ran until the stop"
    assert caplog.messages == [
        "scheduler test: the periodic deferrer ended on a database error (server closed the connection);"
        " starting it again in 0.05 s"
    ]
    # On starting, the new deferrer deferred each job's last period (or found it deferred already).
    missed = {(task.task.name, timestamp) for task, timestamp in calls[1]}
    scheduled = {task.task.name for task in app.periodic_registry.periodic_tasks.values()}
    assert {name for name, _ in missed} == scheduled
    with connection.cursor() as cursor:
        cursor.execute("SELECT task_name, defer_timestamp FROM procrastinate_periodic_defers")
        assert missed <= set(cursor.fetchall())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_scheduler_process_goes_on_deferring_after_the_server_cut_its_connection():
    """Without the restart, the command ended at the first database error of a deferral."""
    every_second = {name: "* * * * * */1" for name in dir(settings) if name.startswith("SCHEDULE_")}
    url = current_database_url()
    env = {**every_second, "DATABASE_URL": f"{url}?application_name={SCHEDULER_APPLICATION}"}
    latest = "SELECT coalesce(max(id), 0) FROM procrastinate_periodic_defers"
    with psycopg.connect(url, autocommit=True) as observer, manage_py("run_scheduler", env=env) as scheduler:
        before = observer.execute(latest).fetchone()[0]
        wait_for(lambda: observer.execute(latest).fetchone()[0] > before, "a first deferral", timeout=60)
        with psycopg.connect(url) as locker:
            locker.execute("LOCK TABLE procrastinate_periodic_defers IN EXCLUSIVE MODE")
            wait_for(
                lambda: observer.execute(CUT_WAITING_ON_A_LOCK_SQL, [SCHEDULER_APPLICATION]).fetchone()[0],
                "a deferral waiting on the lock",
                timeout=30,
            )
        cut_at = observer.execute(latest).fetchone()[0]
        wait_for(lambda: observer.execute(latest).fetchone()[0] > cut_at, "a deferral after the cut", timeout=30)
        time.sleep(0.5)
        assert scheduler.poll() is None, scheduler.output()
        assert "the periodic deferrer ended on a database error" in scheduler.output()
    assert scheduler.returncode == 0, scheduler.output()
