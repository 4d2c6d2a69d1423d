"""The scheduler and the worker as processes: every periodic job once per period, however many run."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from contextlib import ExitStack

import pytest
from django.conf import settings
from django.db.models import Max
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob

from companyos.foundation.tests.support import manage_py

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PERIOD_SECONDS = 5
OBSERVED_SECONDS = 40
# How late a scheduler on a loaded machine may defer a period and the period still be required of it.
LATE_SECONDS = 2 * PERIOD_SECONDS
SCHEDULES = [name for name in dir(settings) if name.startswith("SCHEDULE_")]


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
