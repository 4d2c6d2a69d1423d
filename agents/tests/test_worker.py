"""The worker command end to end: real processes on the test database."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from agents import services
from agents.models import AgentTask
from analytics.models import Event
from companyos.foundation.tests.support import current_database_url
from companyos.foundation.topology import wait_for

Status = AgentTask.Status

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def events_of(task_ids, event_type: str) -> Counter:
    events = Event.objects.filter(event_type=event_type, subject_id__in=task_ids)
    return Counter(events.values_list("subject_id", flat=True))


def test_four_burst_workers_run_2000_echo_tasks_exactly_once(agent, spawn_worker):
    tasks = AgentTask.objects.bulk_create(
        AgentTask(organization=agent.organization, agent=agent, task_type="echo", title=f"echo {i}", input={"n": i})
        for i in range(2000)
    )
    workers = [spawn_worker("--burst", "--agent", agent.slug, env={"LOG_LEVEL": "WARNING"}) for _ in range(4)]
    for worker in workers:
        assert worker.wait(timeout=180) == 0, worker.log_path.read_text()

    rows = list(AgentTask.objects.filter(agent=agent).values("status", "attempts", "input", "output", "worker_id"))
    assert len(rows) == 2000
    assert all(row["status"] == Status.COMPLETED for row in rows)
    assert all(row["attempts"] == 1 for row in rows), "no task was claimed twice"
    assert all(row["output"] == row["input"] for row in rows)
    assert len({row["worker_id"] for row in rows}) > 1, "the work was shared"
    ids = [task.pk for task in tasks]
    assert set(events_of(ids, "agent.task.completed").values()) == {1}, "each task completed exactly once"
    assert sum(events_of(ids, "agent.task.started").values()) == 2000
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed, agent.success_rate) == (2000, 0, 1.0)


def test_a_killed_workers_task_runs_again_after_the_lease_and_completes_once(agent, spawn_worker):
    task = services.task_enqueue(agent=agent, task_type="sleep", title="slow", input={"seconds": 3})
    fast = {"AGENT_TASK_RETRY_BASE_SECONDS": "0.1", "AGENT_WORKER_POLL_SECONDS": "0.2"}
    doomed = spawn_worker("--lease-seconds", "2", env=fast)
    wait_for(
        lambda: AgentTask.objects.filter(
            pk=task.pk, status=Status.RUNNING, worker_id__contains=f":{doomed.pid}:"
        ).exists(),
        "the first worker to start the task",
        timeout=30,
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    killed_at = timezone.now()

    survivor = spawn_worker("--lease-seconds", "2", env=fast)
    task = wait_for(
        lambda: AgentTask.objects.filter(pk=task.pk, status=Status.COMPLETED).first(),
        "another worker to complete the task",
        timeout=30,
    )
    assert f":{survivor.pid}:" in task.worker_id
    assert task.attempts == 2, "the lost attempt counts"
    assert task.started_at > killed_at
    assert "stopped responding" in task.error
    assert task.output == {"seconds": 3}
    assert events_of([task.pk], "agent.task.completed") == {task.pk: 1}
    assert events_of([task.pk], "agent.task.started") == {task.pk: 2}
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed) == (1, 0)
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=10) == 0


def test_an_outcome_whose_connection_the_server_cut_is_recorded_on_a_new_one_and_not_run_again(agent, spawn_worker):
    """The server ends every connection of the worker while a handler runs (as a failover or a restart would)."""
    name = "cut-worker"
    worker = spawn_worker(
        "--lease-seconds", "60", env={"DATABASE_URL": f"{current_database_url()}?application_name={name}"}
    )  # fmt: skip
    # A first task: the recorder has its connection open when the next handler ends.
    warm_up = services.task_enqueue(agent=agent, task_type="echo", title="warm-up")
    wait_for(
        lambda: AgentTask.objects.filter(pk=warm_up.pk, status=Status.COMPLETED).exists(), "the warm-up", timeout=30
    )
    task = services.task_enqueue(agent=agent, task_type="sleep", title="cut", input={"seconds": 1})
    wait_for(lambda: AgentTask.objects.filter(pk=task.pk, status=Status.RUNNING).exists(), "the start", timeout=30)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
            " FROM pg_stat_activity WHERE application_name = %s",
            [name],
        )
        (cut,) = cursor.fetchone()
    assert cut >= 2, "the runner's and the recorder's connections, at least"

    # With a 60 s lease, only the recorder's retry completes it within seconds.
    task = wait_for(
        lambda: AgentTask.objects.filter(pk=task.pk, status=Status.COMPLETED).first(), "the completion", timeout=20
    )
    log = worker.log_path.read_text()
    assert task.attempts == 1, log
    assert task.output == {"seconds": 1}
    assert events_of([task.pk], "agent.task.started") == {task.pk: 1}
    assert events_of([task.pk], "agent.task.completed") == {task.pk: 1}
    assert f"tasks {task.pk}: could not record the outcomes; retrying in" in log
    assert "Traceback" not in log, "a lost connection is expected: a warning line, not a traceback"
    assert f"task {task.pk} type=sleep" in log and "completed in" in log
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0


def test_sigterm_finishes_the_running_task_and_hands_back_the_rest(agent, spawn_worker):
    first, second = (
        services.task_enqueue(agent=agent, task_type="sleep", title=f"slow {i}", input={"seconds": 3}) for i in range(2)
    )
    worker = spawn_worker("--batch-size", "2")
    wait_for(
        lambda: AgentTask.objects.filter(agent=agent, status=Status.RUNNING).count() == 2,
        "the worker to claim both tasks",
        timeout=30,
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    log = worker.log_path.read_text()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.output) == (Status.COMPLETED, {"seconds": 3}), log
    assert (second.status, second.attempts, second.lease_expires_at) == (Status.QUEUED, 0, None), log
    assert "handed back" in log and "completed in" in log


def test_an_idle_worker_starts_a_new_task_at_once(agent, spawn_worker):
    """With a 60 s poll, only NOTIFY can explain a start within a second."""
    worker = spawn_worker("--poll-seconds", "60")
    warm_up = services.task_enqueue(agent=agent, task_type="echo", title="warm-up")
    wait_for(
        lambda: AgentTask.objects.filter(pk=warm_up.pk, status=Status.COMPLETED).exists(),
        "the warm-up task",
        timeout=30,
    )
    time.sleep(0.5)  # idle again, waiting on LISTEN

    task = services.task_enqueue(agent=agent, task_type="echo", title="now")
    task = wait_for(
        lambda: AgentTask.objects.filter(pk=task.pk, status=Status.COMPLETED).first(), "the task", timeout=5
    )
    assert (task.started_at - task.created_at).total_seconds() < 1
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0


def test_while_one_runner_works_another_starts_a_new_task_at_once(agent, spawn_worker):
    """The idle runner waits on LISTEN itself; with a 60 s poll, only that explains a start within a second."""
    worker = spawn_worker("--poll-seconds", "60", "--concurrency", "2")
    long = services.task_enqueue(agent=agent, task_type="sleep", title="long", input={"seconds": 5})
    wait_for(lambda: AgentTask.objects.filter(pk=long.pk, status=Status.RUNNING).exists(), "the long task", timeout=30)
    time.sleep(0.5)  # the other runner is idle again, waiting on LISTEN

    task = services.task_enqueue(agent=agent, task_type="echo", title="now")
    task = wait_for(
        lambda: AgentTask.objects.filter(pk=task.pk, status=Status.COMPLETED).first(), "the task", timeout=5
    )
    assert (task.started_at - task.created_at).total_seconds() < 1
    assert AgentTask.objects.get(pk=long.pk).status == Status.RUNNING
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
