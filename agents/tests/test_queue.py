"""Claiming, leases, retries with backoff, the claim plan, and wake-ups."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, OperationalError, ProgrammingError, connection, transaction
from django.db.models.expressions import RawSQL
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import services
from agents.handlers import PermanentFailure, register, unregister
from agents.models import Agent, AgentTask
from agents.queue import TaskListener, claim_params, claim_sql, retry_delay, tasks_claim, tasks_renew_leases
from agents.tests.factories import AgentFactory, AgentTaskFactory
from agents.worker import Worker, _log_retried, _Outcome, _Recorder
from analytics.models import Event
from companyos.foundation.tests.support import current_database_url

Status = AgentTask.Status

pytestmark = pytest.mark.django_db


def _make(agent, n=1, *, task_type="echo", **fields) -> list[AgentTask]:
    return [services.task_enqueue(agent=agent, task_type=task_type, title=f"t{i}", **fields) for i in range(n)]


def test_claims_highest_priority_first_then_oldest(agent):
    low, normal_old, normal_new, urgent = (
        _make(agent, priority=AgentTask.Priority.LOW)[0],
        _make(agent)[0],
        _make(agent)[0],
        _make(agent, priority=AgentTask.Priority.URGENT)[0],
    )
    claimed = [tasks_claim(worker_id="w")[0].pk for _ in range(4)]
    assert claimed == [urgent.pk, normal_old.pk, normal_new.pk, low.pk]
    assert tasks_claim(worker_id="w") == []


def test_a_claim_takes_a_lease_and_counts_the_attempt(agent, settings):
    settings.AGENT_TASK_LEASE_SECONDS = 30
    (task,) = _make(agent)
    before = timezone.now()
    (claimed,) = tasks_claim(worker_id="host:1:ab")
    claimed.refresh_from_db()
    assert (claimed.status, claimed.worker_id, claimed.attempts) == (Status.RUNNING, "host:1:ab", 1)
    assert before <= claimed.started_at <= timezone.now()
    assert claimed.lease_expires_at == claimed.started_at + timedelta(seconds=30)


def test_tasks_scheduled_in_the_future_wait(agent):
    _make(agent, scheduled_for=timezone.now() + timedelta(minutes=5))
    (due,) = _make(agent, scheduled_for=timezone.now() - timedelta(seconds=1))
    assert [task.pk for task in tasks_claim(worker_id="w", limit=10)] == [due.pk]


def test_batches_and_filters(agent):
    other = AgentFactory(organization=agent.organization)
    mine = _make(agent, 5)
    _make(agent, 2, task_type="summarize")
    _make(other, 3)
    batch = tasks_claim(worker_id="w", limit=3, agent_ids=[agent.pk], task_types=["echo"])
    assert [task.pk for task in batch] == [task.pk for task in mine[:3]]
    assert len(tasks_claim(worker_id="w", limit=10, task_types=["summarize"])) == 2
    assert len(tasks_claim(worker_id="w", limit=10, agent_ids=[agent.pk, other.pk])) == 5


def _plan(sql: str, params: dict) -> str:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE agents_agenttask")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_claim_walks_the_claim_index(agent):
    """With a realistic table (mostly finished tasks, ten agents) the claim
    reads the partial index in claim order: no Seq Scan, no Sort."""
    agents = [agent, *(AgentFactory(organization=agent.organization) for _ in range(9))]
    now = timezone.now()
    finished = {"status": Status.COMPLETED, "started_at": now, "completed_at": now, "attempts": 1}
    AgentTask.objects.bulk_create(
        AgentTask(
            organization=agent.organization,
            agent=agents[i % 10],
            task_type="echo",
            title="t",
            **(finished if i < 3000 else {}),
        )
        for i in range(3200)
    )
    params = claim_params(worker_id="w", limit=10, lease_seconds=60, now=now)
    plan = _plan(claim_sql(), params)
    assert "task_claim_idx" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan

    params = claim_params(worker_id="w", limit=10, lease_seconds=60, now=now, agent_ids=[agent.pk])
    plan = _plan(claim_sql(agent_ids=[agent.pk]), params)
    assert "task_claim_agent_idx" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_skip_locked_rows_instead_of_waiting(agent):
    _make(agent, 2)
    with transaction.atomic():
        (first,) = tasks_claim(worker_id="w1")
        result = {}

        def claim_elsewhere():
            try:
                started = time.monotonic()
                result["tasks"] = tasks_claim(worker_id="w2", limit=5)
                result["seconds"] = time.monotonic() - started
            finally:
                connection.close()

        thread = threading.Thread(target=claim_elsewhere)
        thread.start()
        thread.join(10)
    assert [task.pk for task in result["tasks"]] != [first.pk]
    assert len(result["tasks"]) == 1
    assert result["seconds"] < 1


def test_renewing_a_lease_needs_to_hold_it(agent):
    _make(agent)
    (task,) = tasks_claim(worker_id="w1", lease_seconds=1)
    assert tasks_renew_leases(worker_id="w2", task_ids=[task.pk], lease_seconds=100) == 0
    assert tasks_renew_leases(worker_id="w1", task_ids=[task.pk], lease_seconds=100) == 1
    task.refresh_from_db()
    assert task.lease_expires_at > timezone.now() + timedelta(seconds=90)


def test_an_expired_lease_returns_the_task_with_the_attempt_counted(agent, settings):
    settings.AGENT_TASK_RETRY_BASE_SECONDS = 10
    _make(agent)
    (task,) = tasks_claim(worker_id="dead", lease_seconds=60)
    assert services.tasks_requeue_expired_leases() == [], "a live lease is left alone"
    AgentTask.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    (reaped,) = services.tasks_requeue_expired_leases()
    reaped.refresh_from_db()
    assert (reaped.status, reaped.attempts, reaped.lease_expires_at) == (Status.QUEUED, 1, None)
    assert "worker dead stopped responding" in reaped.error
    assert timedelta(seconds=4.9) < reaped.scheduled_for - timezone.now() < timedelta(seconds=10)


def test_an_expired_lease_on_the_last_attempt_fails_the_task(agent):
    _make(agent, max_attempts=1)
    (task,) = tasks_claim(worker_id="dead", lease_seconds=60)
    AgentTask.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    services.tasks_requeue_expired_leases()
    task.refresh_from_db()
    agent.refresh_from_db()
    assert (task.status, task.attempts, agent.tasks_failed) == (Status.FAILED, 1, 1)


def test_the_reaper_takes_the_agents_locks_in_id_order(agent, monkeypatch):
    """As a worker's group of outcomes does: the two cannot deadlock."""
    other = AgentFactory(organization=agent.organization)
    _make(other, max_attempts=1)
    _make(agent, max_attempts=1)
    claimed = tasks_claim(worker_id="dead", limit=2, lease_seconds=60)
    for seconds_ago, task in enumerate(sorted(claimed, key=lambda task: task.agent_id), start=1):
        # The other agent's lease expired first: the reaper selects its task first.
        AgentTask.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=seconds_ago))
    failed_agents = []
    real_fail = services._fail_attempt

    def spy(task, **kwargs):
        failed_agents.append(task.agent_id)
        return real_fail(task, **kwargs)

    monkeypatch.setattr(services, "_fail_attempt", spy)
    reaped = services.tasks_requeue_expired_leases()
    assert [task.agent_id for task in reaped] == [other.pk, agent.pk], "selected by lease expiry"
    assert failed_agents == [agent.pk, other.pk], "failed, locking each agent, in id order"


def test_handing_back_does_not_count_the_attempt(agent):
    _make(agent)
    (task,) = tasks_claim(worker_id="w")
    services.task_hand_back(task=task, worker_id="w")
    task.refresh_from_db()
    assert (task.status, task.attempts, task.lease_expires_at) == (Status.QUEUED, 0, None)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 8, 20])
def test_backoff_is_exponential_with_jitter_and_capped(settings, attempt):
    settings.AGENT_TASK_RETRY_BASE_SECONDS = 2
    settings.AGENT_TASK_RETRY_MAX_SECONDS = 100
    ceiling = min(100, 2 * 2 ** (attempt - 1))
    delays = [retry_delay(attempt) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 150, "jittered"


@pytest.fixture
def flaky():
    """A handler failing its first ``fail_times`` calls; ``calls`` records them."""
    state = {"fail_times": 2, "calls": 0}

    @register("flaky")
    def handler(task):
        state["calls"] += 1
        if state["calls"] <= state["fail_times"]:
            raise ConnectionError(f"model API down (call {state['calls']})")
        return {"ok": True}

    yield state
    unregister("flaky")


def _run_due(worker: Worker, agent) -> AgentTask:
    """Claim the agent's due task as ``worker`` and run it (in this thread)."""
    (task,) = tasks_claim(worker_id=worker.worker_id, agent_ids=[agent.pk])
    worker._execute(task)
    return AgentTask.objects.get(pk=task.pk)


def _make_due(task: AgentTask) -> None:
    AgentTask.objects.filter(pk=task.pk).update(scheduled_for=timezone.now())


def test_failures_retry_with_backoff_then_succeed(agent, flaky, settings):
    settings.AGENT_TASK_RETRY_BASE_SECONDS = 4
    (task,) = _make(agent, task_type="flaky", max_attempts=3)
    worker = Worker()

    task = _run_due(worker, agent)
    assert (task.status, task.attempts, task.error) == (Status.QUEUED, 1, "ConnectionError: model API down (call 1)")
    assert timedelta(seconds=1.9) < task.scheduled_for - timezone.now() <= timedelta(seconds=4)
    assert tasks_claim(worker_id="other") == [], "not due before the backoff"

    _make_due(task)
    task = _run_due(worker, agent)
    assert (task.status, task.attempts) == (Status.QUEUED, 2)
    assert timedelta(seconds=3.9) < task.scheduled_for - timezone.now() <= timedelta(seconds=8), "doubled"

    _make_due(task)
    task = _run_due(worker, agent)
    assert (task.status, task.attempts, task.output) == (Status.COMPLETED, 3, {"ok": True})
    assert task.error == "ConnectionError: model API down (call 2)", "the last error is kept"
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed) == (1, 0)


def test_max_attempts_fails_the_task_for_good(agent, flaky):
    flaky["fail_times"] = 10
    (task,) = _make(agent, task_type="flaky", max_attempts=2)
    worker = Worker()
    _make_due(_run_due(worker, agent))
    task = _run_due(worker, agent)
    assert (task.status, task.attempts, task.error) == (Status.FAILED, 2, "ConnectionError: model API down (call 2)")
    assert task.completed_at is not None
    assert tasks_claim(worker_id="w") == []
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed, agent.success_rate) == (0, 1, 0.0)


def test_permanent_failures_and_unknown_types_are_not_retried(agent):
    @register("picky")
    def picky(task):
        raise PermanentFailure("input has no 'url'")

    try:
        _make(agent, task_type="picky")
        _make(agent, task_type="no-such-type")
        worker = Worker()
        first, second = _run_due(worker, agent), _run_due(worker, agent)
    finally:
        unregister("picky")
    assert (first.status, first.attempts, first.error) == (Status.FAILED, 1, "input has no 'url'")
    assert (second.status, second.error) == (Status.FAILED, "No handler is registered for task type 'no-such-type'.")


def test_an_output_json_cannot_store_fails_the_task(agent):
    @register("opaque")
    def opaque(task):
        return {"when": object()}

    try:
        _make(agent, task_type="opaque")
        task = _run_due(Worker(), agent)
    finally:
        unregister("opaque")
    assert (task.status, task.output, task.attempts) == (Status.FAILED, None, 1)
    assert task.error.startswith("The handler's output cannot be stored as JSON")


def test_the_echo_handler_returns_its_input(agent):
    _make(agent, input={"nested": {"list": [1, "two"]}})
    task = _run_due(Worker(), agent)
    assert (task.status, task.output) == (Status.COMPLETED, {"nested": {"list": [1, "two"]}})


@pytest.mark.django_db(transaction=True)
def test_queued_rows_notify_listeners_at_commit_from_any_path(agent):
    """The trigger fires for inserts by the service and by bulk_create, and
    for a task going back to the queue; a listener for another agent is not woken."""
    listener = TaskListener(agent_ids=[agent.pk])
    stranger = TaskListener(agent_ids=[AgentFactory().pk])
    try:
        with transaction.atomic():
            _make(agent)
            assert not listener.wait(0.2), "nothing before commit"
        assert listener.wait(2)
        AgentTask.objects.bulk_create([AgentTask(organization=agent.organization, agent=agent, task_type="e")])
        assert listener.wait(2)
        (task,) = tasks_claim(worker_id="w", limit=1)
        assert not listener.wait(0.2), "a claim does not notify"
        services.task_hand_back(task=task, worker_id="w")
        assert listener.wait(2)
        assert not stranger.wait(0.2)
    finally:
        listener.close()
        stranger.close()


@pytest.mark.django_db(transaction=True)
def test_a_listener_holds_a_connection_of_its_own_and_its_close_ends_the_session():
    """The LISTEN connection lives as long as the worker: taken from the request pool
    it would hold a slot all that time, and each reconnect would lose one for good."""

    def checked_out() -> int:
        stats = connection.pool.get_stats()
        return stats["pool_size"] - stats["pool_available"]

    connection.ensure_connection()
    before = checked_out()
    for _ in range(3):
        listener = TaskListener()
        pid = listener._conn.info.backend_pid
        listener.close()
        # The server ends the session just after the client closes it.
        deadline = time.monotonic() + 5
        while _session_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _session_alive(pid), "the listener's session outlived close()"
    assert checked_out() == before, "each listener kept a slot of the pool"


def _session_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = %s)", [pid])
        return cursor.fetchone()[0]


def test_factory_tasks_are_claimable(agent):
    task = AgentTaskFactory(agent=agent, organization=agent.organization)
    assert tasks_claim(worker_id="w")[0].pk == task.pk


def test_the_command_refuses_unknown_agents_and_bad_numbers():
    with pytest.raises(CommandError, match="No agent with slug nobody"):
        call_command("run_agent_worker", "--agent", "nobody", "--burst")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("run_agent_worker", "--concurrency", "0", "--burst")


@pytest.mark.django_db(transaction=True)
def test_a_threaded_burst_worker_drains_the_due_tasks_of_its_agents_and_types(agent):
    """Several runner threads (each its own connection) share the work; the
    filters leave other agents' and other types' tasks alone."""
    other = AgentFactory(organization=agent.organization)
    mine = _make(agent, 30, input={"x": 1})
    _make(agent, 2, task_type="summarize")
    _make(other, 2)
    _make(agent, 1, scheduled_for=timezone.now() + timedelta(hours=1))
    worker = Worker(concurrency=3, batch_size=4, burst=True, agent_ids=[agent.pk], task_types=["echo"])
    assert worker.run() == 30
    done = AgentTask.objects.filter(pk__in=[task.pk for task in mine])
    assert all(row == (Status.COMPLETED, 1, {"x": 1}) for row in done.values_list("status", "attempts", "output"))
    assert AgentTask.objects.filter(status=Status.QUEUED).count() == 5
    assert AgentTask.objects.filter(status=Status.RUNNING).count() == 0


@pytest.mark.django_db(transaction=True)
def test_outcomes_recorded_together_share_one_transaction_and_keep_every_event(agent):
    """A group of outcomes (fast handlers') is one commit: each task still gets
    its own completion, its event, and its count; a lease lost meanwhile drops
    only that task's outcome, and an output JSON cannot store fails only its task."""
    worker = Worker()
    done, also_done, lost, opaque = _make(agent, 4)
    claimed = {task.pk: task for task in tasks_claim(worker_id=worker.worker_id, limit=4)}
    AgentTask.objects.filter(pk=lost.pk).update(worker_id="another")  # its lease went elsewhere
    worker._record(
        [
            _Outcome(claimed[done.pk], {"ok": 1}, "", False, 3),
            _Outcome(claimed[also_done.pk], {"ok": 0}, "", False, 0),
            _Outcome(claimed[lost.pk], {"ok": 2}, "", False, 4),
            _Outcome(claimed[opaque.pk], {"when": object()}, "", False, 5),
        ]
    )
    # A row's xmin is the transaction that wrote it.
    rows = AgentTask.objects.filter(agent=agent).annotate(xmin=RawSQL("xmin::text", []))
    fields = ("id", "status", "output", "duration_ms", "worker_id", "error", "xmin")
    by_id = {row["id"]: row for row in rows.values(*fields)}
    assert (by_id[done.pk]["status"], by_id[done.pk]["output"], by_id[done.pk]["duration_ms"]) == (
        Status.COMPLETED, {"ok": 1}, 3
    )  # fmt: skip
    assert (by_id[lost.pk]["status"], by_id[lost.pk]["worker_id"]) == (Status.RUNNING, "another")
    assert by_id[opaque.pk]["status"] == Status.FAILED
    assert by_id[opaque.pk]["error"].startswith("The handler's output cannot be stored as JSON")
    assert by_id[done.pk]["xmin"] == by_id[also_done.pk]["xmin"], "both completions were written by one transaction"
    finished = Event.objects.filter(subject_id__in=[done.pk, also_done.pk, lost.pk, opaque.pk])
    assert sorted(finished.exclude(event_type__in=["agent.task.queued", "agent.task.started"]).values_list(
        "subject_id", "event_type"
    )) == sorted([
        (done.pk, "agent.task.completed"), (also_done.pk, "agent.task.completed"), (opaque.pk, "agent.task.failed"),
    ])  # fmt: skip
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed) == (2, 1)
    assert worker.processed == 4 and not worker._in_hand


@pytest.mark.django_db(transaction=True)
def test_recording_again_after_a_lost_connection_reads_the_tasks_back_first(agent):
    """The attempt before may have committed before its connection went: what it
    recorded is reported as recorded (once: no second event), what is still
    running is recorded now, and a task running another attempt is not this outcome's."""
    worker = Worker()
    committed, running, retried = _make(agent, 3)
    claimed = {task.pk: task for task in tasks_claim(worker_id=worker.worker_id, limit=3)}
    outcomes = [
        _Outcome(claimed[task.pk], {"n": n}, "", False, n) for n, task in enumerate((committed, running, retried))
    ]
    # The attempt that lost its connection committed the first completion, and had
    # already marked the other tasks completed in memory when it failed.
    services.tasks_complete(worker_id=worker.worker_id, results=[(claimed[committed.pk], {"n": 0}, 0)])
    for task in (running, retried):
        claimed[task.pk].status = Status.COMPLETED
    AgentTask.objects.filter(pk=retried.pk).update(attempts=2)  # its lease ran out, and this worker claimed it again

    results = worker._complete(outcomes, again=True)

    assert [type(result).__name__ for result in results] == ["AgentTask", "AgentTask", "LeaseLost"]
    assert (results[0].pk, results[0].status) == (committed.pk, Status.COMPLETED)
    assert dict(AgentTask.objects.filter(agent=agent).values_list("id", "status")) == {
        committed.pk: Status.COMPLETED, running.pk: Status.COMPLETED, retried.pk: Status.RUNNING
    }  # fmt: skip
    completed = Event.objects.filter(event_type="agent.task.completed").values_list("subject_id", flat=True)
    assert sorted(completed) == sorted([committed.pk, running.pk])


@pytest.mark.django_db(transaction=True)
def test_a_failure_whose_commit_landed_before_the_connection_went_is_reported_as_recorded(agent, monkeypatch):
    """Retried after a lost connection, a failure the attempt before committed is
    recorded once, not called lost; one the lease reaper recorded meanwhile is lost."""
    worker = Worker()
    committed, reaped = _make(agent, 2)
    claimed = {task.pk: task for task in tasks_claim(worker_id=worker.worker_id, limit=2)}
    real_fail = services.task_fail

    def commit_then_lose_the_connection(**kwargs):
        real_fail(**kwargs)
        monkeypatch.setattr(services, "task_fail", real_fail)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "task_fail", commit_then_lose_the_connection)
    result = worker._fail(_Outcome(claimed[committed.pk], None, "ValueError: bad input", False, 1))

    assert (result.pk, result.status, result.error) == (committed.pk, Status.QUEUED, "ValueError: bad input")
    assert Event.objects.filter(subject_id=committed.pk, event_type="agent.task.failed").count() == 0
    assert list(
        Event.objects.filter(subject_id=committed.pk).order_by("occurred_at", "id").values_list("event_type", flat=True)
    ) == ["agent.task.queued", "agent.task.started", "agent.task.queued"], "the failure's events written once"

    AgentTask.objects.filter(pk=reaped.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    services.tasks_requeue_expired_leases()
    with pytest.raises(services.LeaseLost):
        worker._write_failure(_Outcome(claimed[reaped.pk], None, "ValueError: bad input", False, 1), again=True)


def test_a_lost_connection_is_logged_as_a_warning_line_and_any_other_database_error_with_its_traceback(caplog):
    lost = OperationalError("consuming input failed: server closed the connection unexpectedly\nhost 2: refused")
    with caplog.at_level(logging.WARNING, logger="agents.worker"):
        _log_retried(lost, "worker %s could not claim tasks; retrying", "w")
        _log_retried(ProgrammingError('relation "agents_agenttask" does not exist'), "worker %s could not claim", "w")
    warning, error = caplog.records
    assert (warning.levelname, warning.exc_info) == ("WARNING", None)
    assert warning.getMessage() == (
        "worker w could not claim tasks; retrying (consuming input failed: server closed the connection unexpectedly)"
    )
    assert error.levelname == "ERROR" and error.exc_info[0] is ProgrammingError


def test_a_database_error_in_a_group_records_none_of_it(agent, monkeypatch, caplog):
    """The group is one transaction: if it fails, every task in it stays running
    (its lease returns it), and the log says so for each."""
    worker = Worker()
    first, second = _make(agent, 2)
    claimed = {task.pk: task for task in tasks_claim(worker_id=worker.worker_id, limit=2)}
    real_write = services._write_output

    def write_then_fail(task, **kwargs):
        if task.pk == second.pk:
            raise DatabaseError("the server went away")
        return real_write(task, **kwargs)

    monkeypatch.setattr(services, "_write_output", write_then_fail)
    worker._record([_Outcome(claimed[first.pk], {}, "", False, 1), _Outcome(claimed[second.pk], {}, "", False, 1)])
    assert set(AgentTask.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)) == {
        Status.RUNNING
    }, "the first completion was rolled back with the group"
    assert not Event.objects.filter(event_type="agent.task.completed").exists()
    assert caplog.text.count("outcome not recorded: the lease will return it to the queue") == 2


def test_the_recorder_writes_what_arrived_while_it_was_busy_as_one_group():
    """The first outcome is written at once; those submitted while it is being
    written go together next, in submission order; closing writes what is left."""
    groups: list[list[int]] = []
    writing, release = threading.Event(), threading.Event()

    def record(outcomes):
        groups.append([outcome.duration_ms for outcome in outcomes])
        writing.set()
        release.wait(5)

    recorder = _Recorder(record, limit=10, name="recorder-test", within=lambda function: function)
    recorder.submit(_Outcome(None, None, "", False, 0))
    assert writing.wait(5)
    for number in range(1, 5):
        recorder.submit(_Outcome(None, None, "", False, number))
    release.set()
    recorder.close()
    assert groups == [[0], [1, 2, 3, 4]]


def test_a_group_counts_for_its_agents_once_after_its_tasks(agent):
    """Each completion counts for its agent, locking the agent's row until the
    group commits: the group counts once per group, after its tasks, so the
    agents' rows stay locked only from there to the commit."""
    other = AgentFactory(organization=agent.organization)
    worker = Worker()
    tasks = _make(other, 2) + _make(agent, 2)
    claimed = {task.pk: task for task in tasks_claim(worker_id=worker.worker_id, limit=4)}
    with CaptureQueriesContext(connection) as queries:
        worker._record([_Outcome(claimed[task.pk], {}, "", False, 5) for task in tasks])
    writes = [query["sql"] for query in queries if "UPDATE" in query["sql"]]
    counting = [index for index, sql in enumerate(writes) if f"UPDATE {Agent._meta.db_table} AS agent" in sql]
    assert counting == [len(writes) - 1], "one statement, the last"
    agent.refresh_from_db()
    other.refresh_from_db()
    assert (agent.tasks_completed, agent.total_duration_ms, other.tasks_completed) == (2, 10, 2)
    assert AgentTask.objects.filter(status=Status.COMPLETED).count() == 4


def _group_thread(worker: Worker, tasks: list[AgentTask]) -> threading.Thread:
    """Claim ``tasks`` as ``worker`` now; the thread returned records their
    outcomes as one group on a connection of its own."""
    claimed = {task.pk: task for task in tasks_claim(worker_id=worker.worker_id, limit=len(tasks))}

    def record():
        worker._record([_Outcome(claimed[task.pk], {}, "", False, 1) for task in tasks])
        connection.close()

    return threading.Thread(target=record)


@pytest.mark.django_db(transaction=True)
def test_a_group_locks_its_agents_in_id_order(agent):
    """Two groups (or a group and the reaper) lock the agents they count in
    one order, so they cannot deadlock: while the group waits for the first
    agent's row, it holds no later one."""
    later = AgentFactory(organization=agent.organization)
    assert agent.pk < later.pk  # UUIDv7: created first
    group = _group_thread(Worker(), _make(later, 1) + _make(agent, 1))
    table = Agent._meta.db_table
    with psycopg.connect(current_database_url()) as holder:
        holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [agent.pk])  # noqa: S608
        group.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = %s"
        deadline = time.monotonic() + 10
        while holder.execute(waiting, ["Lock"]).fetchone()[0] == 0:
            assert time.monotonic() < deadline, "the group never waited for the first agent"
            time.sleep(0.02)
        # The later agent's row is free: NOWAIT would raise if the group held it.
        holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [later.pk])  # noqa: S608
        holder.rollback()
        group.join(10)
    assert not group.is_alive()
    assert AgentTask.objects.filter(status=Status.COMPLETED).count() == 2
    agent.refresh_from_db()
    later.refresh_from_db()
    assert (agent.tasks_completed, later.tasks_completed) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_a_groups_counting_lets_foreign_key_checks_through(agent):
    """Another transaction's event row naming the agent takes a KEY SHARE lock
    on it at commit: the group's counting must not wait for that transaction,
    nor make it wait (two such waits crossed are a deadlock)."""
    group = _group_thread(Worker(), _make(agent, 2))
    with psycopg.connect(current_database_url()) as holder:
        holder.execute(f"SELECT 1 FROM {Agent._meta.db_table} WHERE id = %s FOR KEY SHARE", [agent.pk])  # noqa: S608
        group.start()
        group.join(10)
        assert not group.is_alive(), "the group waited for the key share"
    agent.refresh_from_db()
    assert agent.tasks_completed == 2
