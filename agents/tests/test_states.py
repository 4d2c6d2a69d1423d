"""The task lifecycle: every transition, legal or not, and the database's refusals."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import services
from agents.models import AgentTask
from agents.states import FINAL_STATUSES, TRANSITIONS, IllegalTransition, can_transition, transition
from agents.tests.factories import AgentTaskFactory

Status = AgentTask.Status

LEGAL = {
    (Status.PENDING, Status.QUEUED),
    (Status.PENDING, Status.CANCELLED),
    (Status.QUEUED, Status.RUNNING),
    (Status.QUEUED, Status.CANCELLED),
    (Status.RUNNING, Status.QUEUED),
    (Status.RUNNING, Status.AWAITING_APPROVAL),
    (Status.RUNNING, Status.COMPLETED),
    (Status.RUNNING, Status.FAILED),
    (Status.RUNNING, Status.CANCELLED),
    (Status.AWAITING_APPROVAL, Status.COMPLETED),
    (Status.AWAITING_APPROVAL, Status.FAILED),
    (Status.AWAITING_APPROVAL, Status.CANCELLED),
    (Status.FAILED, Status.QUEUED),
}
ALL_PAIRS = list(itertools.product(Status.values, repeat=2))


def test_the_table_is_exactly_the_documented_lifecycle():
    assert set(TRANSITIONS) == set(Status.values)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
    assert {Status.COMPLETED, Status.CANCELLED} == FINAL_STATUSES


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_every_transition(current, target):
    task = AgentTask(status=current)
    if (current, target) in LEGAL:
        assert can_transition(current, target)
        assert transition(task, target) == current
        assert task.status == target
    else:
        assert not can_transition(current, target)
        with pytest.raises(IllegalTransition) as excinfo:
            transition(task, target)
        assert task.status == current
        message = excinfo.value.messages[0]
        assert f"from {current!r} to {target!r}" in message
        assert excinfo.value.code == "illegal_transition"


def test_the_error_says_where_a_task_can_go():
    with pytest.raises(IllegalTransition, match="from 'completed' it can go to nothing: it is final"):
        transition(AgentTask(status=Status.COMPLETED), Status.RUNNING)
    with pytest.raises(IllegalTransition, match="it can go to cancelled, queued"):
        transition(AgentTask(status=Status.PENDING), Status.COMPLETED)


def _task_in(status: str, **extra) -> AgentTask:
    """A task in ``status`` with the fields the database requires of it."""
    now = timezone.now()
    fields: dict = {"status": status}
    if status == Status.RUNNING:
        fields.update(started_at=now, lease_expires_at=now + timedelta(minutes=1), worker_id="w", attempts=1)
    if status == Status.AWAITING_APPROVAL:
        fields.update(requires_approval=True, started_at=now, output={"draft": 1}, attempts=1)
    if status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
        fields.update(started_at=now, completed_at=now, attempts=1)
    return AgentTaskFactory(**{**fields, **extra})


# Each service, and the statuses it may start from.
SERVICES = {
    "task_release": (lambda task, user: services.task_release(task=task), {Status.PENDING}),
    "task_approve": (lambda task, user: services.task_approve(task=task, user=user), {Status.AWAITING_APPROVAL}),
    "task_reject": (
        lambda task, user: services.task_reject(task=task, user=user, reason="Off-brand."),
        {Status.AWAITING_APPROVAL},
    ),
    "task_retry": (lambda task, user: services.task_retry(task=task, user=user), {Status.FAILED}),
    "task_cancel": (
        lambda task, user: services.task_cancel(task=task, user=user),
        {Status.PENDING, Status.QUEUED, Status.RUNNING, Status.AWAITING_APPROVAL},
    ),
    "task_complete": (
        lambda task, user: services.task_complete(task=task, worker_id="w", output={}, duration_ms=1),
        {Status.RUNNING},
    ),
    "task_fail": (lambda task, user: services.task_fail(task=task, worker_id="w", error="boom"), {Status.RUNNING}),
    "task_hand_back": (lambda task, user: services.task_hand_back(task=task, worker_id="w"), {Status.RUNNING}),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "status"), list(itertools.product(SERVICES, Status.values)))
def test_every_service_from_every_status(name, status, user):
    call, allowed = SERVICES[name]
    task = _task_in(status, requires_approval=True)
    if status in allowed:
        result = call(task, user)
        assert result.status != status
        task.refresh_from_db()
        assert task.status == result.status
    else:
        # The worker's services need the lease, which only a running task has.
        worker_side = name in ("task_complete", "task_fail", "task_hand_back")
        with pytest.raises((services.LeaseLost, IllegalTransition) if worker_side else IllegalTransition):
            call(task, user)
        task.refresh_from_db()
        assert task.status == status


IMPOSSIBLE_ROWS = {
    "agents_task_running_has_started_at": {
        "status": Status.RUNNING,
        "lease_expires_at": timezone.now(),
        "worker_id": "w",
    },
    "agents_task_lease_iff_running": {"status": Status.QUEUED, "lease_expires_at": timezone.now()},
    "agents_task_attempts_within_max": {"status": Status.FAILED, "attempts": 4, "max_attempts": 3},
    "agents_task_queued_has_attempt_left": {"status": Status.QUEUED, "attempts": 3, "max_attempts": 3},
    "agents_task_completed_has_completed_at": {"status": Status.COMPLETED},
    "agents_task_completed_at_when_finished": {"status": Status.QUEUED, "completed_at": timezone.now()},
    "agents_task_awaiting_requires_approval": {"status": Status.AWAITING_APPROVAL, "requires_approval": False},
    "agents_task_approved_when_completed": {
        "status": Status.FAILED,
        "requires_approval": True,
        "approved_at": timezone.now(),
    },
    "agents_task_rejected_when_failed": {"status": Status.QUEUED, "rejection_reason": "No."},
    "agents_task_completes_after_start": {
        "status": Status.COMPLETED,
        "started_at": timezone.now(),
        "completed_at": timezone.now() - timedelta(seconds=1),
    },
    "agents_task_status_valid": {"status": "lost"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("constraint", list(IMPOSSIBLE_ROWS))
def test_the_database_refuses_impossible_rows(constraint, agent):
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        AgentTask.objects.create(
            organization=agent.organization, agent=agent, task_type="echo", title="t", **IMPOSSIBLE_ROWS[constraint]
        )


@pytest.mark.django_db
def test_a_service_names_the_status_its_action_needs(user):
    running = _task_in(Status.RUNNING, requires_approval=True)
    with pytest.raises(IllegalTransition, match="only applies to a task that is awaiting_approval"):
        services.task_approve(task=running, user=user)
