"""The agent task lifecycle: one table of legal transitions, used by every path.

Services, the admin (through the services) and the worker all move a task
with :func:`transition`, so a rule written here holds everywhere. The bulk
claim in :mod:`agents.queue` only ever selects ``queued`` rows, which makes
its ``queued → running`` move legal by construction.

In short: ``pending → queued → running → completed``, with
``running → awaiting_approval → completed | failed`` for tasks that need a
person's approval, ``running → queued`` for a retry, ``failed → queued`` for a
manual retry, and ``cancelled`` from anything not yet finished.
"""

from __future__ import annotations

from collections.abc import Collection

from django.core.exceptions import ValidationError

from agents.models import AgentTask, AgentTaskStatus

Status = AgentTaskStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    # Held back (e.g. waiting for a person); released into the queue.
    Status.PENDING: frozenset({Status.QUEUED, Status.CANCELLED}),
    # Claimed by a worker, or cancelled before that.
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    # The handler's outcome; back to queued for a retry, a lost lease or a
    # worker shutting down before it started the task.
    Status.RUNNING: frozenset(
        {Status.QUEUED, Status.AWAITING_APPROVAL, Status.COMPLETED, Status.FAILED, Status.CANCELLED}
    ),
    # A person approves (completed), rejects (failed) or withdraws it.
    Status.AWAITING_APPROVAL: frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED}),
    Status.COMPLETED: frozenset(),
    # A manual retry gives a failed task a fresh set of attempts.
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset(),
}

FINAL_STATUSES = frozenset(status for status, targets in TRANSITIONS.items() if not targets)


class IllegalTransition(ValidationError):
    """A task was asked to make a move the lifecycle (or the service) does not allow.

    A ``ValidationError``, so the admin and forms show its message as is.
    """

    def __init__(
        self, task: AgentTask | None, current: str, target: str, *, only_from: Collection[str] | None = None
    ) -> None:
        current, target = str(current), str(target)
        subject = f"Agent task {task.pk}" if task is not None else "An agent task"
        if only_from is not None and can_transition(current, target):
            reason = f"this action only applies to a task that is {' or '.join(map(str, sorted(only_from)))}."
        else:
            allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing: it is final"
            reason = f"from '{current}' it can go to {allowed}."
        super().__init__(f"{subject} cannot go from '{current}' to '{target}'; {reason}", code="illegal_transition")
        self.current = current
        self.target = target


def can_transition(current: str, target: str) -> bool:
    """Whether the lifecycle allows ``current → target``."""
    return target in TRANSITIONS[current]


def transition(task: AgentTask, target: str, *, only_from: Collection[str] | None = None) -> str:
    """Set ``task.status`` to ``target`` if legal (not saved); returns the previous status.

    ``only_from`` narrows the legal sources for one action: approving, for
    instance, is the move to ``completed`` from ``awaiting_approval`` only.
    """
    current = task.status
    if not can_transition(current, target) or (only_from is not None and current not in only_from):
        raise IllegalTransition(task, current, target, only_from=only_from)
    task.status = target
    return current
