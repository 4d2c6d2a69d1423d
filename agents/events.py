"""Real-time events of agent tasks, fired from their status changes.

The ``post_save`` receiver is connected in ``AgentsConfig.ready``: any
``save()`` publishes. The queue claims and reaps tasks with bulk
``UPDATE … RETURNING``, which bypasses ``post_save``; it calls
:func:`publish_task_status_change` for every row it changed.
"""

from __future__ import annotations

from agents.models import AgentTask
from companyos.foundation.events import model_data, publish_on_commit

TASK_FIELDS = (
    "id", "agent", "created_by", "parent_task", "task_type", "title", "status", "priority", "requires_approval",
    "approved_by", "approved_at", "rejection_reason", "attempts", "max_attempts", "error", "scheduled_for",
    "started_at", "completed_at", "duration_ms", "created_at",
)  # fmt: skip
STATUS_EVENTS = {
    AgentTask.Status.QUEUED: "agent.task.queued",
    AgentTask.Status.RUNNING: "agent.task.started",
    AgentTask.Status.AWAITING_APPROVAL: "agent.task.awaiting_approval",
    AgentTask.Status.COMPLETED: "agent.task.completed",
    AgentTask.Status.FAILED: "agent.task.failed",
    AgentTask.Status.CANCELLED: "agent.task.cancelled",
}


def publish_task_status_change(task: AgentTask, *, previous_status: str | None) -> None:
    """Publish ``agent.task.<event>`` for ``task``'s status, if it changed from ``previous_status``.

    ``previous_status`` is None for a task just created. Call it inside the
    transaction that changed the row: the event is stored with it and sent
    after commit.
    """
    event_type = STATUS_EVENTS.get(task.status)
    if event_type is None or previous_status == task.status:
        return
    publish_on_commit(
        organization_id=task.organization_id,
        event_type=event_type,
        subject=task,
        data={**model_data(task, TASK_FIELDS), "previous_status": previous_status},
        source="agent",
        actor_agent_id=task.agent_id,
    )


def task_saved(sender, instance: AgentTask, created: bool, raw: bool, update_fields=None, **kwargs) -> None:
    if raw:  # fixtures
        return
    changes = instance.tracked_changes(update_fields)
    if created or "status" in changes:
        publish_task_status_change(instance, previous_status=changes.get("status"))
