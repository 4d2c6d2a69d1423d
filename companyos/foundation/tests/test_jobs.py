"""The scheduler and the worker as processes: every periodic job once per period, however many run."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from contextlib import ExitStack

import pytest
from django.conf import settings
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob

from companyos.foundation.tests.support import manage_py

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PERIOD_SECONDS = 5
SCHEDULES = [name for name in dir(settings) if name.startswith("SCHEDULE_")]


def test_two_schedulers_and_three_workers_run_every_periodic_job_once_per_period():
    every_period = {name: f"* * * * * */{PERIOD_SECONDS}" for name in SCHEDULES}
    with ExitStack() as processes:
        started = time.time()
        # Entered last, the schedulers stop first: the workers are still there for their last jobs.
        workers = [processes.enter_context(manage_py("run_worker", env=every_period)) for _ in range(3)]
        schedulers = [processes.enter_context(manage_py("run_scheduler", env=every_period)) for _ in range(2)]
        time.sleep(50)
    stopped = time.time()
    for process in (*schedulers, *workers):
        assert process.returncode == 0, process.output()

    periodic = {task.task.name for task in app.periodic_registry.periodic_tasks.values()}
    assert len(periodic) == len(SCHEDULES), "each SCHEDULE_ setting schedules one job"
    jobs = ProcrastinateJob.objects.filter(task_name__in=periodic).values_list("task_name", "args", "status")
    runs = Counter((task, args["timestamp"]) for task, args, _ in jobs)
    assert runs and set(runs.values()) == {1}, [run for run, count in runs.items() if count > 1]

    periods = defaultdict(list)
    for task, timestamp in runs:
        periods[task].append(timestamp)
    assert set(periods) == periodic
    for task, timestamps in periods.items():
        timestamps.sort()
        # From the first period on (the scheduler may catch up one just before it started), none is missing.
        assert timestamps[0] >= started - PERIOD_SECONDS - 1 and timestamps[-1] <= stopped, task
        assert all(b - a == PERIOD_SECONDS for a, b in zip(timestamps, timestamps[1:], strict=False)), task
        assert len(timestamps) >= (stopped - started - 15) // PERIOD_SECONDS, f"{task}: {len(timestamps)} periods"
    # Workers ran them all, but maybe the jobs of a period that began as the processes stopped.
    last = {task: timestamps[-1] for task, timestamps in periods.items()}
    statuses = Counter(status for task, args, status in jobs if args["timestamp"] < last[task])
    assert set(statuses) == {"succeeded"}, statuses
