"""Write paths for agent tasks and collaborations (see docs/agents.md).

Every status change goes through :func:`agents.states.transition` on a row
locked with ``SELECT … FOR UPDATE`` and is saved with
``save(update_fields=[...])``, so the save publishes the ``agent.task.*``
events ``AgentTask`` declares: nothing here publishes them itself. An outcome
(completed, failed) updates the agent's counters in the same transaction with
``F()`` increments, never read-modify-write, so they stay exact however many
workers finish at once.

The paths that run once per task write the row and its events in as few
statements as they can, through ``companyos.foundation.events`` (an
``Outbox``, or ``insert_with_events``) rather than ``save()``: the enqueue,
the claim (in :mod:`agents.queue`) and :func:`task_complete` (:func:`tasks_complete`
for a worker's group of outcomes). The admin, the API and the worker all call
these functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone
from psycopg.types.json import Jsonb

from agents.models import Agent, AgentCollaboration, AgentTask
from agents.queue import retry_delay
from agents.states import transition
from companyos.foundation.events import Outbox, insert_with_events, sends_in_background
from core.models import User

Status = AgentTask.Status

# Longest error text kept on a task: a traceback's tail, not a novel.
MAX_ERROR_LENGTH = 4000


def kept_error(error: str) -> str:
    """The part of a failure's ``error`` a task keeps."""
    return error[-MAX_ERROR_LENGTH:]


class LeaseLost(Exception):
    """The worker no longer holds the task: it was cancelled, or its lease
    expired and the task went back to the queue. The worker drops its result."""

    @classmethod
    def of(cls, task: AgentTask, worker_id: str) -> LeaseLost:
        return cls(f"Worker {worker_id} no longer holds task {task.pk}: it was cancelled or its lease expired.")


def task_enqueue(
    *,
    agent: Agent,
    task_type: str,
    title: str,
    input: dict[str, Any] | None = None,
    priority: int = AgentTask.Priority.NORMAL,
    requires_approval: bool = False,
    scheduled_for: datetime | None = None,
    max_attempts: int = 3,
    created_by: User | None = None,
    parent_task: AgentTask | None = None,
    target: models.Model | None = None,
    metadata: dict[str, Any] | None = None,
    hold: bool = False,
) -> AgentTask:
    """Add a task to ``agent``'s queue (or, with ``hold``, keep it ``pending``).

    Inserting the row wakes idle workers at once: a trigger NOTIFYs them at
    commit (migration 0004). ``scheduled_for`` delays the first claim. The
    task and its ``agent.task.queued`` event are one statement.
    """
    (task,) = tasks_enqueue(
        agent=agent,
        task_type=task_type,
        title=title,
        inputs=[input if input is not None else {}],
        priority=priority,
        requires_approval=requires_approval,
        scheduled_for=scheduled_for,
        max_attempts=max_attempts,
        created_by=created_by,
        parent_task=parent_task,
        target=target,
        metadata=metadata,
        hold=hold,
    )
    return task


# The fields of a new task that come from the caller, validated as a form would. The
# rest is set by tasks_enqueue (the relations as instances it was given, the status)
# or by default, and the database's constraints check them: no query per relation.
_GIVEN_FIELDS = {
    "task_type", "title", "input", "priority", "requires_approval", "scheduled_for", "max_attempts", "metadata",
    "target_object_id",
}  # fmt: skip
_NOT_GIVEN = [field.name for field in AgentTask._meta.fields if field.name not in _GIVEN_FIELDS]
_ALL_BUT_INPUT = [field.name for field in AgentTask._meta.fields if field.name != "input"]


def tasks_enqueue(
    *,
    agent: Agent,
    task_type: str,
    title: str,
    inputs: Iterable[dict[str, Any]],
    priority: int = AgentTask.Priority.NORMAL,
    requires_approval: bool = False,
    scheduled_for: datetime | None = None,
    max_attempts: int = 3,
    created_by: User | None = None,
    parent_task: AgentTask | None = None,
    target: models.Model | None = None,
    metadata: dict[str, Any] | None = None,
    hold: bool = False,
) -> list[AgentTask]:
    """:func:`task_enqueue` for many tasks alike but for their input, in one
    statement with their events (a NOTIFY per agent at commit)."""
    if not agent.is_active:
        raise ValidationError(f"Agent {agent} is inactive and takes no new tasks.", code="agent_inactive")
    if parent_task is not None and parent_task.organization_id != agent.organization_id:
        raise ValidationError("A task's parent must belong to the same organization.", code="cross_organization")
    tasks = []
    for task_input in inputs:
        task = AgentTask(
            organization_id=agent.organization_id,
            agent=agent,
            task_type=task_type,
            title=title,
            input=task_input,
            priority=priority,
            requires_approval=requires_approval,
            scheduled_for=scheduled_for,
            max_attempts=max_attempts,
            created_by=created_by,
            parent_task=parent_task,
            metadata=dict(metadata) if metadata is not None else {},
            status=Status.PENDING if hold else Status.QUEUED,
        )
        if target is not None:
            task.target = target
        # The tasks differ only in their input: the other given fields are validated once.
        task.clean_fields(exclude=_ALL_BUT_INPUT if tasks else _NOT_GIVEN)
        tasks.append(task)
    # Committed here (autocommit), the events' sends go out in the background:
    # the caller (a request, the API) does not wait on Redis for them.
    with sends_in_background(wait_at_end=False):
        if tasks:
            insert_with_events(tasks)
    return tasks


def task_release(*, task: AgentTask) -> AgentTask:
    """Put a ``pending`` task into the queue."""
    with transaction.atomic():
        task = _lock(task)
        transition(task, Status.QUEUED, only_from={Status.PENDING})
        task.save(update_fields=["status"])
    return task


# The worker's hot path in one statement: the task's outcome, guarded by the
# lease (still running, still this worker's), the agent's counters as SQL
# increments (unless the caller counts a group's at its end), and the event
# rows. An UPDATE or INSERT in a WITH runs whether or not the outer query
# reads it; the agent and the events are written only if the task was.
_RECORD_OUTPUT_SQL = f"""
    WITH task AS (
        UPDATE {AgentTask._meta.db_table}
        SET status = %(status)s, output = %(output)s, duration_ms = %(duration_ms)s,
            completed_at = %(completed_at)s, lease_expires_at = NULL, updated_at = %(now)s
        WHERE id = %(id)s AND status = '{Status.RUNNING}' AND worker_id = %(worker_id)s
        RETURNING agent_id
    ){{agent}}, event AS (
        {{events}}
    )
    SELECT count(*) FROM task
"""  # noqa: S608 - only table names and constants are interpolated
_COUNT_FOR_AGENT_SQL = f"""
    , agent AS (
        UPDATE {Agent._meta.db_table} AS agent
        SET tasks_completed = agent.tasks_completed + %(completed)s,
            total_duration_ms = agent.total_duration_ms + %(counted_ms)s,
            last_active_at = %(now)s, updated_at = %(now)s
        FROM task WHERE agent.id = task.agent_id
    )"""  # noqa: S608


# A group's completions counted for their agents, in one round trip. First
# the agents' rows are locked in id order (the sort comes before the locks),
# as every transaction that locks several agents does. NO KEY UPDATE is the
# lock the UPDATE takes: FOR UPDATE would also block the foreign-key checks
# other transactions make at commit (their event rows name the agent). The
# UPDATE is a statement of its own: its snapshot, taken once the rows are
# locked, sees their latest versions, where locking and updating in one
# statement can wait on a version that a third transaction replaced.
_COUNT_GROUP_SQL = f"""
    SELECT FROM {Agent._meta.db_table} WHERE id = ANY(%s::uuid[]) ORDER BY id FOR NO KEY UPDATE;
    UPDATE {Agent._meta.db_table} AS agent
    SET tasks_completed = agent.tasks_completed + counts.n,
        total_duration_ms = agent.total_duration_ms + counts.ms,
        last_active_at = %s, updated_at = %s
    FROM jsonb_to_recordset(%s::jsonb) AS counts(agent_id uuid, n int, ms bigint)
    WHERE agent.id = counts.agent_id
"""  # noqa: S608 - only table names are interpolated


def task_complete(*, task: AgentTask, worker_id: str, output: Any, duration_ms: int) -> AgentTask:
    """Record a handler's output: ``completed``, or ``awaiting_approval`` if the
    task needs a person's approval first. Raises :class:`LeaseLost` if the
    worker no longer holds the task.

    The one service that does not lock and ``save()``: it runs once per task
    in every worker, so one statement checks the lease and writes the task,
    the agent's counters and the event (an :class:`Outbox` built from the
    instance, as the claim does): one round trip, and its own transaction
    unless the caller has one. A collaborator's child task also finishes its
    collaboration, in a transaction around both.
    ``task`` must be the worker's claimed instance (status ``running``).
    """
    now = timezone.now()
    finishes_collaboration = not task.requires_approval and task.parent_task_id is not None
    with transaction.atomic() if finishes_collaboration else nullcontext():
        if not _write_output(task, worker_id=worker_id, output=output, duration_ms=duration_ms, now=now, count=True):
            raise LeaseLost.of(task, worker_id)
    return task


def tasks_complete(*, worker_id: str, results: Sequence[tuple[AgentTask, Any, int]]) -> list[AgentTask | Exception]:
    """:func:`task_complete` for several ``(task, output, duration_ms)`` at once, in one transaction.

    Each task gets its own statement (task, lease check, event); the agents'
    counters come last, in one statement that locks the agents' rows in id
    order. So those rows are locked only from there to the commit, and
    always in the same order: two workers' groups neither queue behind each
    other for the whole group nor deadlock. A single result takes
    :func:`task_complete`'s one statement instead. Returns, for each result in
    order, the recorded task, its :class:`LeaseLost`, or the
    ``TypeError``/``ValueError`` of an output JSON cannot store (that task is
    not written).
    """
    if not results:
        return []
    if len(results) == 1:
        ((task, output, duration_ms),) = results
        try:
            return [task_complete(task=task, worker_id=worker_id, output=output, duration_ms=duration_ms)]
        except (LeaseLost, TypeError, ValueError) as exc:
            return [exc]
    now = timezone.now()
    recorded: list[AgentTask | Exception] = []
    counts: dict[str, dict[str, Any]] = {}
    with transaction.atomic():
        for task, output, duration_ms in results:
            try:
                written = _write_output(task, worker_id=worker_id, output=output, duration_ms=duration_ms, now=now)
            except (TypeError, ValueError) as exc:
                recorded.append(exc)
                continue
            if not written:
                recorded.append(LeaseLost.of(task, worker_id))
                continue
            recorded.append(task)
            # As the single statement: a task awaiting approval counts nothing yet, but the agent was active.
            count = counts.setdefault(str(task.agent_id), {"agent_id": str(task.agent_id), "n": 0, "ms": 0})
            if task.status == Status.COMPLETED:
                count["n"] += 1
                count["ms"] += duration_ms
        if counts:
            with connection.cursor() as cursor:
                cursor.execute(_COUNT_GROUP_SQL, [list(counts), now, now, json.dumps(list(counts.values()))])
    return recorded


def _write_output(
    task: AgentTask, *, worker_id: str, output: Any, duration_ms: int, now: datetime, count: bool = False
) -> bool:
    """The statement of :func:`task_complete` (with the agent's counters if ``count``);
    False if the worker no longer holds the task. Sends the event after commit."""
    transition(task, Status.AWAITING_APPROVAL if task.requires_approval else Status.COMPLETED)
    completed = task.status == Status.COMPLETED
    task.output = output
    task.duration_ms = duration_ms
    task.completed_at = now if completed else None
    task.lease_expires_at = None
    outbox = Outbox()
    outbox.add_state_change(task, previous=Status.RUNNING)
    events_sql, events = outbox.insert_sql(placeholder="%(events)s", only_if_rows_in="task")
    params = {
        "id": task.pk,
        "worker_id": worker_id,
        "status": task.status,
        "output": Jsonb(output),
        "duration_ms": duration_ms,
        "completed_at": task.completed_at,
        "now": now,
        "completed": int(completed),
        "counted_ms": duration_ms if completed else 0,
        "events": events,
    }
    sql = _RECORD_OUTPUT_SQL.format(agent=_COUNT_FOR_AGENT_SQL if count else "", events=events_sql)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (updated,) = cursor.fetchone()
    if not updated:
        return False
    if completed and task.parent_task_id is not None:
        _collaboration_finish(task, now=now)
    outbox.send_on_commit()
    return True


def task_fail(*, task: AgentTask, worker_id: str, error: str, permanent: bool = False) -> AgentTask:
    """Record a failed attempt: back to the queue after an exponential backoff
    with jitter while attempts remain (and the failure is not ``permanent``),
    ``failed`` otherwise. The error is kept on the task either way. Raises
    :class:`LeaseLost` if the worker no longer holds the task."""
    with transaction.atomic():
        task = _lock_lease(task, worker_id)
        _fail_attempt(task, error=error, permanent=permanent, now=timezone.now())
    return task


def task_hand_back(*, task: AgentTask, worker_id: str) -> AgentTask:
    """Return a claimed task the worker never started (it is shutting down):
    queued again at once, its attempt not counted."""
    with transaction.atomic():
        task = _lock_lease(task, worker_id)
        transition(task, Status.QUEUED)
        task.attempts -= 1
        task.lease_expires_at = None
        task.save(update_fields=["status", "attempts", "lease_expires_at"])
    return task


def tasks_requeue_expired_leases(*, limit: int = 100) -> list[AgentTask]:
    """Treat running tasks whose lease expired as failed attempts (their worker
    died or hung): retried with backoff, or failed when out of attempts.

    Uses ``task_lease_idx``; ``SKIP LOCKED`` lets several workers reap at once
    and skips a task its worker is finishing right now.
    """
    with transaction.atomic():
        now = timezone.now()
        expired = list(
            AgentTask.objects.select_for_update(skip_locked=True)
            .filter(status=Status.RUNNING, lease_expires_at__lt=now)
            .order_by("lease_expires_at")[:limit]
        )
        # Each failure updates its agent's counters: the agents' rows are locked
        # in id order, as every transaction that locks several does (agents/worker.py).
        for task in sorted(expired, key=lambda task: task.agent_id):
            error = f"The lease expired: worker {task.worker_id} stopped responding."
            _fail_attempt(task, error=error, permanent=False, now=now)
    return expired


def task_approve(*, task: AgentTask, user: User) -> AgentTask:
    """Approve a task ``awaiting_approval``: it completes with the output it has."""
    with transaction.atomic():
        task = _lock(task)
        transition(task, Status.COMPLETED, only_from={Status.AWAITING_APPROVAL})
        now = timezone.now()
        task.approved_by = user
        task.approved_at = now
        task.completed_at = now
        task.save(update_fields=["status", "approved_by", "approved_at", "completed_at"])
        _record_outcome(task, now=now, by_agent=False)
    return task


def task_reject(*, task: AgentTask, user: User, reason: str) -> AgentTask:
    """Reject a task ``awaiting_approval``: it fails with ``reason``."""
    reason = reason.strip()
    if not reason:
        raise ValidationError("Rejecting a task needs a reason.", code="reason_required")
    with transaction.atomic():
        task = _lock(task)
        transition(task, Status.FAILED, only_from={Status.AWAITING_APPROVAL})
        now = timezone.now()
        task.rejection_reason = reason
        task.completed_at = now
        task.metadata = {**task.metadata, "rejected_by": str(user.pk)}
        task.save(update_fields=["status", "rejection_reason", "completed_at", "metadata"])
        _record_outcome(task, now=now, by_agent=False)
    return task


def task_retry(*, task: AgentTask, user: User | None = None) -> AgentTask:
    """Queue a ``failed`` task again, with a fresh set of attempts.

    The last error stays on the task until the next attempt's outcome.
    """
    with transaction.atomic():
        task = _lock(task)
        transition(task, Status.QUEUED, only_from={Status.FAILED})
        task.attempts = 0
        task.completed_at = None
        task.scheduled_for = None
        task.rejection_reason = ""
        if user is not None:
            task.metadata = {**task.metadata, "retried_by": str(user.pk)}
        task.save(update_fields=["status", "attempts", "completed_at", "scheduled_for", "rejection_reason", "metadata"])
    return task


def task_cancel(*, task: AgentTask, user: User | None = None) -> AgentTask:
    """Cancel a task that has not finished. A worker running it finishes the
    handler, then drops the result (:class:`LeaseLost`)."""
    with transaction.atomic():
        task = _lock(task)
        transition(task, Status.CANCELLED)
        now = timezone.now()
        task.lease_expires_at = None
        task.completed_at = now
        if user is not None:
            task.metadata = {**task.metadata, "cancelled_by": str(user.pk)}
        task.save(update_fields=["status", "lease_expires_at", "completed_at", "metadata"])
        _record_outcome(task, now=now, by_agent=False)
    return task


def agent_request_collaboration(
    *,
    task: AgentTask,
    initiator: Agent,
    collaborator: Agent,
    kind: str,
    message: str = "",
    task_type: str = "",
    title: str = "",
    input: dict[str, Any] | None = None,
    requires_approval: bool = False,
) -> AgentCollaboration:
    """``initiator`` asks ``collaborator`` to work on ``task`` with it.

    Records an :class:`AgentCollaboration` and queues the collaborator's own
    child task (``parent_task`` = ``task``); the child's outcome completes or
    declines the collaboration. A handoff (or parallel work) gives the child the
    same type and input as ``task``; a review (or consultation) gets a
    ``review``/``consult`` task whose input carries ``task``'s input and output.
    """
    if kind not in AgentCollaboration.Kind.values:
        raise ValidationError(f"Unknown collaboration kind {kind!r}.", code="invalid_kind")
    if initiator.pk == collaborator.pk:
        raise ValidationError("An agent cannot collaborate with itself.", code="same_agent")
    if not initiator.organization_id == collaborator.organization_id == task.organization_id:
        raise ValidationError(
            "Collaborating agents and the task must share an organization.", code="cross_organization"
        )
    label = AgentCollaboration.Kind(kind).label
    if kind in (AgentCollaboration.Kind.HANDOFF, AgentCollaboration.Kind.PARALLEL):
        default_type, default_input = task.task_type, task.input
    else:
        default_type = kind
        default_input = {"task": str(task.pk), "task_type": task.task_type, "input": task.input, "output": task.output}
    with transaction.atomic():
        child = task_enqueue(
            agent=collaborator,
            task_type=task_type or default_type,
            title=title or f"{label}: {task.title}"[: AgentTask._meta.get_field("title").max_length],
            input=input if input is not None else default_input,
            priority=task.priority,
            requires_approval=requires_approval,
            parent_task=task,
            target=task.target,
        )
        collaboration = AgentCollaboration(
            task=task,
            initiator=initiator,
            collaborator=collaborator,
            kind=kind,
            child_task=child,
            messages=[_message(initiator, message, at=child.created_at)] if message else [],
        )
        collaboration.full_clean()
        collaboration.save(force_insert=True)
    return collaboration


def _message(sender: Agent, text: str, *, at: datetime) -> dict[str, str]:
    """One entry of a collaboration's ``messages``."""
    return {"from": str(sender.pk), "text": text, "at": at.isoformat()}


def _lock(task: AgentTask) -> AgentTask:
    """The task's current row, locked until the transaction ends."""
    return AgentTask.objects.select_for_update().get(pk=task.pk)


def _lock_lease(task: AgentTask, worker_id: str) -> AgentTask:
    """The task's row, locked, if ``worker_id`` still runs it; else :class:`LeaseLost`.

    After waiting for a lock PostgreSQL re-checks the conditions on the new
    row version, so a reaper or a cancel that got there first is seen.
    """
    locked = (
        AgentTask.objects.select_for_update().filter(pk=task.pk, status=Status.RUNNING, worker_id=worker_id).first()
    )
    if locked is None:
        raise LeaseLost.of(task, worker_id)
    return locked


def _fail_attempt(task: AgentTask, *, error: str, permanent: bool, now: datetime) -> None:
    """A running, locked task's attempt failed: retry later, or fail it."""
    task.error = kept_error(error)
    task.lease_expires_at = None
    fields = ["status", "error", "lease_expires_at"]
    if not permanent and task.attempts < task.max_attempts:
        transition(task, Status.QUEUED)
        task.scheduled_for = now + timedelta(seconds=retry_delay(task.attempts))
        task.save(update_fields=[*fields, "scheduled_for"])
        _agent_update(task, now=now, active=True)
    else:
        transition(task, Status.FAILED)
        task.completed_at = now
        task.save(update_fields=[*fields, "completed_at"])
        _record_outcome(task, now=now, by_agent=True)


def _record_outcome(task: AgentTask, *, now: datetime, by_agent: bool) -> None:
    """The effects of a task reaching a final status, in its transaction:
    the agent's counters and its collaboration."""
    if task.status == Status.COMPLETED:
        _agent_update(task, now=now, active=by_agent, completed=1, duration_ms=task.duration_ms or 0)
    elif task.status == Status.FAILED:
        _agent_update(task, now=now, active=by_agent, failed=1)
    if task.parent_task_id is not None:
        _collaboration_finish(task, now=now)


def _agent_update(
    task: AgentTask, *, now: datetime, active: bool, completed: int = 0, failed: int = 0, duration_ms: int = 0
) -> None:
    """Increment the agent's counters in SQL (generated columns recompute the
    rates); ``active`` also marks the agent as having just worked."""
    changes: dict[str, Any] = {}
    if completed:
        changes["tasks_completed"] = F("tasks_completed") + completed
        changes["total_duration_ms"] = F("total_duration_ms") + duration_ms
    if failed:
        changes["tasks_failed"] = F("tasks_failed") + failed
    if active:
        changes["last_active_at"] = now
    if changes:
        Agent.objects.filter(pk=task.agent_id).update(**changes, updated_at=now)


def _collaboration_finish(task: AgentTask, *, now: datetime) -> None:
    """A collaborator's child task finished: so did the collaboration."""
    Collab = AgentCollaboration.Status
    if task.status == Status.COMPLETED:
        status, result = Collab.COMPLETED, task.output
    else:
        status, result = Collab.DECLINED, {"status": task.status, "error": task.rejection_reason or task.error}
    AgentCollaboration.objects.filter(child_task=task).exclude(status__in=[Collab.COMPLETED, Collab.DECLINED]).update(
        status=status, result=result, completed_at=now, updated_at=now
    )
