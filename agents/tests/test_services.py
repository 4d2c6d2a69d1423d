"""The task services: enqueue, approval, rejection, cancellation, retry,
collaboration, and the agent's counters."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import services
from agents.models import Agent, AgentCollaboration, AgentTask
from agents.queue import tasks_claim
from agents.selectors import task_output, task_result_key, tasks_awaiting_approval
from agents.tests.factories import AgentFactory
from analytics.models import Event
from companyos.foundation.cache import get_layer

Status = AgentTask.Status

pytestmark = pytest.mark.django_db


def _claim_one(agent: Agent, worker_id: str = "w1") -> AgentTask:
    (task,) = tasks_claim(worker_id=worker_id, agent_ids=[agent.pk])
    return task


def test_enqueue_queues_a_task_for_the_agent(agent, user):
    task = services.task_enqueue(agent=agent, task_type="echo", title="Say hi", input={"a": 1}, created_by=user)
    task.refresh_from_db()
    assert (task.status, task.organization_id, task.input) == (Status.QUEUED, agent.organization_id, {"a": 1})
    assert (task.attempts, task.created_by) == (0, user)


def test_enqueue_with_hold_keeps_it_pending_until_released(agent):
    task = services.task_enqueue(agent=agent, task_type="echo", title="Later", hold=True)
    assert task.status == Status.PENDING
    assert tasks_claim(worker_id="w", agent_ids=[agent.pk]) == []
    services.task_release(task=task)
    assert _claim_one(agent).pk == task.pk


def test_enqueue_refuses_bad_input(agent):
    with pytest.raises(ValidationError, match="priority"):
        services.task_enqueue(agent=agent, task_type="echo", title="x", priority=9)
    with pytest.raises(ValidationError, match="title"):
        services.task_enqueue(agent=agent, task_type="echo", title="")
    agent.is_active = False
    with pytest.raises(ValidationError, match="inactive"):
        services.task_enqueue(agent=agent, task_type="echo", title="x")
    other = services.task_enqueue(agent=AgentFactory(), task_type="echo", title="elsewhere")
    agent.is_active = True
    with pytest.raises(ValidationError, match="same organization"):
        services.task_enqueue(agent=agent, task_type="echo", title="x", parent_task=other)
    assert not AgentTask.objects.filter(agent=agent).exists()


def test_completion_counts_for_the_agent(agent):
    services.task_enqueue(agent=agent, task_type="echo", title="t", input={"n": 1})
    task = services.task_complete(task=_claim_one(agent), worker_id="w1", output={"n": 1}, duration_ms=40)
    assert (task.status, task.output, task.duration_ms, task.lease_expires_at) == (Status.COMPLETED, {"n": 1}, 40, None)
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed, agent.success_rate, agent.avg_duration_ms) == (1, 0, 1.0, 40)
    assert agent.last_active_at == task.completed_at


def test_task_output_reads_through_the_cache_only_for_completed_tasks(agent):
    queued = services.task_enqueue(agent=agent, task_type="echo", title="t")
    assert task_output(task_id=queued.pk, default="none") == "none"
    assert get_layer("agent_results").get(task_result_key(queued.pk), "absent") == "absent", "not cached"
    services.task_complete(task=_claim_one(agent), worker_id="w1", output=[1, 2], duration_ms=1)
    assert task_output(task_id=queued.pk) == [1, 2]
    assert get_layer("agent_results").get(task_result_key(queued.pk)) == [1, 2]
    AgentTask.objects.filter(pk=queued.pk).update(output=[3])
    assert task_output(task_id=queued.pk) == [1, 2], "the second read comes from the cache"
    get_layer("agent_results").delete(task_result_key(queued.pk))


def test_a_task_needing_approval_waits_with_its_output_then_approval_completes_it(agent, user):
    services.task_enqueue(agent=agent, task_type="echo", title="Post it", input={"text": "hi"}, requires_approval=True)
    task = services.task_complete(task=_claim_one(agent), worker_id="w1", output={"text": "hi"}, duration_ms=7)
    assert (task.status, task.output, task.completed_at) == (Status.AWAITING_APPROVAL, {"text": "hi"}, None)
    assert list(tasks_awaiting_approval(organization=agent.organization)) == [task]
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed) == (0, 0)
    assert agent.last_active_at is not None

    task = services.task_approve(task=task, user=user)
    task.refresh_from_db()
    assert (task.status, task.approved_by, task.output) == (Status.COMPLETED, user, {"text": "hi"})
    assert task.approved_at == task.completed_at
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.avg_duration_ms) == (1, 7)


def test_rejection_fails_the_task_with_the_reason(agent, user):
    services.task_enqueue(agent=agent, task_type="echo", title="Post it", requires_approval=True)
    task = services.task_complete(task=_claim_one(agent), worker_id="w1", output={}, duration_ms=1)
    with pytest.raises(ValidationError, match="needs a reason"):
        services.task_reject(task=task, user=user, reason="  ")
    task = services.task_reject(task=task, user=user, reason="Off-brand tone.")
    task.refresh_from_db()
    assert (task.status, task.rejection_reason, task.approved_at) == (Status.FAILED, "Off-brand tone.", None)
    assert task.metadata["rejected_by"] == str(user.pk)
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed, agent.success_rate) == (0, 1, 0.0)


def test_retry_of_a_rejected_task_queues_it_with_fresh_attempts(agent, user):
    services.task_enqueue(agent=agent, task_type="echo", title="Post it", requires_approval=True)
    task = services.task_complete(task=_claim_one(agent), worker_id="w1", output={}, duration_ms=1)
    task = services.task_reject(task=task, user=user, reason="No.")
    task = services.task_retry(task=task, user=user)
    task.refresh_from_db()
    assert (task.status, task.attempts, task.rejection_reason, task.completed_at) == (Status.QUEUED, 0, "", None)
    assert _claim_one(agent).pk == task.pk


@pytest.mark.parametrize("status", [Status.PENDING, Status.QUEUED])
def test_cancel_before_running(agent, user, status):
    task = services.task_enqueue(agent=agent, task_type="echo", title="t", hold=status == Status.PENDING)
    task = services.task_cancel(task=task, user=user)
    task.refresh_from_db()
    assert task.status == Status.CANCELLED
    assert task.completed_at is not None
    assert tasks_claim(worker_id="w", agent_ids=[agent.pk]) == []
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed) == (0, 0), "a cancellation is not the agent's failure"


def test_cancelling_a_running_task_drops_the_workers_result(agent):
    services.task_enqueue(agent=agent, task_type="echo", title="t")
    claimed = _claim_one(agent)
    services.task_cancel(task=claimed)
    with pytest.raises(services.LeaseLost, match="no longer holds"):
        services.task_complete(task=claimed, worker_id="w1", output={"late": True}, duration_ms=5)
    claimed.refresh_from_db()
    assert (claimed.status, claimed.output, claimed.lease_expires_at) == (Status.CANCELLED, None, None)


def test_a_worker_cannot_finish_a_task_another_worker_holds(agent):
    services.task_enqueue(agent=agent, task_type="echo", title="t")
    claimed = _claim_one(agent, worker_id="w1")
    with pytest.raises(services.LeaseLost):
        services.task_complete(task=claimed, worker_id="w2", output={}, duration_ms=1)


@pytest.mark.parametrize(
    ("kind", "expected_type", "expected_input"),
    [
        (AgentCollaboration.Kind.HANDOFF, "draft", {"topic": "launch"}),
        (AgentCollaboration.Kind.REVIEW, "review", None),
    ],
)
def test_collaboration_creates_the_collaborators_child_task_and_follows_it(agent, kind, expected_type, expected_input):
    reviewer = AgentFactory(organization=agent.organization, slug="reviewer")
    services.task_enqueue(agent=agent, task_type="draft", title="Draft launch post", input={"topic": "launch"})
    parent = services.task_complete(task=_claim_one(agent), worker_id="w1", output={"text": "v1"}, duration_ms=3)

    collaboration = services.agent_request_collaboration(
        task=parent, initiator=agent, collaborator=reviewer, kind=kind, message="Please check the tone."
    )
    child = collaboration.child_task
    assert (collaboration.status, child.agent, child.parent_task, child.task_type) == (
        AgentCollaboration.Status.REQUESTED,
        reviewer,
        parent,
        expected_type,
    )
    review_input = {"task": str(parent.pk), "task_type": "draft", "input": {"topic": "launch"}}
    review_input["output"] = {"text": "v1"}
    assert child.input == (expected_input or review_input)
    assert collaboration.messages[0]["text"] == "Please check the tone."

    claimed = _claim_one(reviewer, worker_id="w2")
    collaboration.refresh_from_db()
    assert collaboration.status == AgentCollaboration.Status.IN_PROGRESS
    assert collaboration.started_at == claimed.started_at

    services.task_complete(task=claimed, worker_id="w2", output={"verdict": "ship it"}, duration_ms=2)
    collaboration.refresh_from_db()
    assert (collaboration.status, collaboration.result) == (AgentCollaboration.Status.COMPLETED, {"verdict": "ship it"})
    assert collaboration.completed_at is not None


def test_a_failed_child_task_declines_the_collaboration(agent):
    reviewer = AgentFactory(organization=agent.organization)
    parent = services.task_enqueue(agent=agent, task_type="draft", title="Draft")
    collaboration = services.agent_request_collaboration(
        task=parent, initiator=agent, collaborator=reviewer, kind=AgentCollaboration.Kind.REVIEW
    )
    services.task_fail(task=_claim_one(reviewer), worker_id="w1", error="model refused", permanent=True)
    collaboration.refresh_from_db()
    assert collaboration.status == AgentCollaboration.Status.DECLINED
    assert collaboration.result == {"status": "failed", "error": "model refused"}


def test_collaboration_refuses_bad_requests(agent):
    parent = services.task_enqueue(agent=agent, task_type="draft", title="Draft")
    stranger = AgentFactory()
    with pytest.raises(ValidationError, match="itself"):
        services.agent_request_collaboration(task=parent, initiator=agent, collaborator=agent, kind="review")
    with pytest.raises(ValidationError, match="share an organization"):
        services.agent_request_collaboration(task=parent, initiator=agent, collaborator=stranger, kind="review")
    with pytest.raises(ValidationError, match="Unknown collaboration kind"):
        services.agent_request_collaboration(task=parent, initiator=agent, collaborator=stranger, kind="gossip")
    assert AgentTask.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_counters_stay_exact_when_many_workers_finish_at_once(agent):
    """Eight threads (eight connections) finish 200 tasks of one agent at once;
    increments in SQL lose nothing."""
    tasks = AgentTask.objects.bulk_create(
        AgentTask(organization=agent.organization, agent=agent, task_type="echo", title=f"t{i}") for i in range(200)
    )
    claimed = tasks_claim(worker_id="w", limit=len(tasks), agent_ids=[agent.pk])
    assert len(claimed) == 200
    barrier = threading.Barrier(8)

    def finish(share: list[AgentTask]) -> None:
        barrier.wait()
        try:
            for index, task in enumerate(share):
                if index % 4 == 3:
                    services.task_fail(task=task, worker_id="w", error="no", permanent=True)
                else:
                    services.task_complete(task=task, worker_id="w", output={}, duration_ms=10)
        finally:
            connection.close()

    threads = [threading.Thread(target=finish, args=(claimed[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    agent.refresh_from_db()
    assert (agent.tasks_completed, agent.tasks_failed, agent.total_duration_ms) == (152, 48, 1520)
    assert agent.success_rate == 152 / 200
    assert agent.avg_duration_ms == 10
    assert AgentTask.objects.filter(status=Status.COMPLETED).count() == 152


def test_a_cancelled_scheduled_task_is_never_claimed(agent):
    task = services.task_enqueue(agent=agent, task_type="echo", title="t", scheduled_for=timezone.now() - timedelta(1))
    services.task_cancel(task=task)
    assert tasks_claim(worker_id="w", agent_ids=[agent.pk]) == []


def test_every_transition_path_records_its_event(agent, user):
    """Saves fire the receiver; the claim and task_complete publish their own:
    either way, one event per status change, in the same transaction."""

    def events(task):
        # Ids are UUIDv7: time-ordered, so they order events made in one millisecond too.
        return list(Event.objects.filter(subject_id=task.pk).order_by("id").values_list("event_type", flat=True))

    done = services.task_enqueue(agent=agent, task_type="echo", title="ok")
    services.task_complete(task=_claim_one(agent), worker_id="w1", output={}, duration_ms=1)
    assert events(done) == ["agent.task.queued", "agent.task.started", "agent.task.completed"]

    approval = services.task_enqueue(agent=agent, task_type="echo", title="needs a yes", requires_approval=True)
    services.task_complete(task=_claim_one(agent), worker_id="w1", output={}, duration_ms=1)
    services.task_reject(task=approval, user=user, reason="No.")
    services.task_retry(task=approval, user=user)
    services.task_cancel(task=approval, user=user)
    assert events(approval) == [
        "agent.task.queued",
        "agent.task.started",
        "agent.task.awaiting_approval",
        "agent.task.failed",
        "agent.task.queued",
        "agent.task.cancelled",
    ]

    failing = services.task_enqueue(agent=agent, task_type="echo", title="fails", max_attempts=1)
    services.task_fail(task=_claim_one(agent), worker_id="w1", error="boom")
    assert events(failing) == ["agent.task.queued", "agent.task.started", "agent.task.failed"]


def _writes(queries) -> list[str]:
    """The statements that wrote, in order (savepoints and reads left out)."""
    return [query["sql"] for query in queries if query["sql"].split()[0].upper() in ("INSERT", "UPDATE", "WITH")]


def test_enqueue_writes_the_task_and_its_event_in_one_statement(agent, django_capture_on_commit_callbacks):
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as sends:
        task = services.task_enqueue(agent=agent, task_type="echo", title="one trip", input={"a": 1})
    assert len(queries) == 1
    assert len(sends) == 1
    event = Event.objects.get(subject_id=task.pk)
    assert (event.event_type, event.payload["status"], event.payload["previous_status"]) == (
        "agent.task.queued", "queued", None,
    )  # fmt: skip
    task.save()  # the insert counts as saved: nothing to publish
    assert Event.objects.filter(subject_id=task.pk).count() == 1


def test_bulk_enqueue_writes_every_task_and_event_in_one_statement(agent, django_capture_on_commit_callbacks):
    inputs = [{"n": n} for n in range(5)]
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as sends:
        tasks = services.tasks_enqueue(agent=agent, task_type="echo", title="many", inputs=inputs)
    assert len(queries) == 1
    (send,) = sends  # one callback after commit, sending the five events
    assert len(send.args[0]) == 5
    stored = AgentTask.objects.filter(pk__in=[task.pk for task in tasks])
    assert sorted(task.input["n"] for task in stored) == list(range(5))
    events = Event.objects.filter(subject_id__in=[task.pk for task in tasks]).order_by("id")
    assert [event.subject_id for event in events] == [task.pk for task in tasks]
    assert {event.event_type for event in events} == {"agent.task.queued"}


def test_bulk_enqueue_checks_every_input_and_writes_nothing_when_one_is_bad(agent):
    inputs = [{"n": 0}, {"n": 1}, {"n": {1, 2}}]  # a set is not JSON
    with pytest.raises(ValidationError, match="input"):
        services.tasks_enqueue(agent=agent, task_type="echo", title="many", inputs=inputs)
    assert not AgentTask.objects.filter(agent=agent).exists()


def test_completion_writes_task_counters_and_event_in_one_statement(agent, django_capture_on_commit_callbacks):
    services.task_enqueue(agent=agent, task_type="echo", title="t")
    claimed = _claim_one(agent)
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as sends:
        services.task_complete(task=claimed, worker_id="w1", output={"ok": True}, duration_ms=3)
    assert len(queries) == 1
    assert len(sends) == 1
    event = Event.objects.get(subject_id=claimed.pk, event_type="agent.task.completed")
    assert (event.payload["duration_ms"], event.payload["previous_status"]) == (3, "running")


def test_a_completion_without_the_lease_writes_and_sends_nothing(agent, django_capture_on_commit_callbacks):
    services.task_enqueue(agent=agent, task_type="echo", title="t")
    claimed = _claim_one(agent)
    services.task_cancel(task=claimed)
    with django_capture_on_commit_callbacks() as sends, pytest.raises(services.LeaseLost):
        services.task_complete(task=claimed, worker_id="w1", output={}, duration_ms=1)
    assert sends == []
    assert not Event.objects.filter(subject_id=claimed.pk, event_type="agent.task.completed").exists()


def test_a_claimed_batch_writes_its_started_events_in_one_insert(agent, django_capture_on_commit_callbacks):
    queued = services.tasks_enqueue(agent=agent, task_type="echo", title="batch", inputs=[{}] * 3)
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as sends:
        claimed = tasks_claim(worker_id="w1", limit=3)
    assert len(_writes(queries)) == 2, "the claim's UPDATE, then one INSERT of the events"
    (send,) = sends  # one callback after commit, sending the three events
    assert len(send.args[0]) == 3
    started = Event.objects.filter(event_type="agent.task.started", subject_id__in=[task.pk for task in queued])
    assert started.count() == 3
    assert all(task.input == {} and task.status == Status.RUNNING for task in claimed)
