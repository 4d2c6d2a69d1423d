"""Read paths for agents and their tasks."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from agents.models import AgentTask
from companyos.foundation.cache import get_layer
from core.models import Organization

_MISSING: Any = object()


def task_result_key(task_id: uuid.UUID | str) -> str:
    """The ``agent_results`` cache key of a completed task's output."""
    return f"task:{task_id}:output"


def task_output(*, task_id: uuid.UUID | str, default: Any = None) -> Any:
    """A completed task's output, read through the ``agent_results`` cache.

    Only completed tasks are cached, and a completed task is final (see
    ``agents/states.py``), so an entry never goes stale and needs no
    invalidation; the layer's TTL bounds its memory. Filling on first read
    rather than at completion keeps the worker's hot path free of a Redis
    round trip for outputs nobody reads. Anything not completed (running,
    awaiting approval, unknown id) returns ``default``.
    """
    layer = get_layer("agent_results")
    key = task_result_key(task_id)
    cached = layer.get(key, _MISSING)
    if cached is not _MISSING:
        return cached
    rows = AgentTask.objects.filter(pk=task_id, status=AgentTask.Status.COMPLETED).values_list("output", flat=True)
    for output in rows:
        layer.set(key, output)
        return output
    return default


def tasks_awaiting_approval(*, organization: Organization) -> QuerySet[AgentTask]:
    """The organization's approval inbox, oldest first (``task_approval_idx``)."""
    return (
        AgentTask.objects.filter(organization=organization, status=AgentTask.Status.AWAITING_APPROVAL)
        .select_related("agent")
        .order_by("created_at")
    )
