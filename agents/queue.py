"""The queue mechanics on PostgreSQL: claiming, leases, wake-ups, backoff.

Claiming is one statement, ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED
LIMIT n) … RETURNING …``, and one INSERT of the batch's ``started`` events
in the same transaction. The inner select walks ``task_claim_idx`` (or
``task_claim_agent_idx`` for one agent) in claim order, skips rows other
workers hold, and the update takes them, so no task is handed to two workers
and claiming never waits on another worker. A claimed task is ``running``
with a lease: the worker renews it while it works; if the worker dies, the
lease runs out and :func:`agents.services.tasks_requeue_expired_leases` puts
the task back (the attempt counts).

New work wakes idle workers through LISTEN/NOTIFY: a trigger (migration
0004) notifies :data:`NOTIFY_CHANNEL` whenever a row becomes ``queued``;
:class:`TaskListener` waits for it, and its timeout is the polling fallback
(scheduled and backed-off tasks are found by that poll).
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents.models import AgentCollaboration, AgentTask
from companyos.foundation.db import connect_outside_pool, session_alias
from companyos.foundation.events import Outbox

Status = AgentTask.Status

# The channel the trigger of migration 0004 notifies; the payload is the agent id.
NOTIFY_CHANNEL = "agents_task_queued"

_TABLE = AgentTask._meta.db_table
# A claim returns every column, in this order, and builds the tasks from them
# directly: the handler gets a full task without the ORM's per-query work.
_FIELDS = AgentTask._meta.concrete_fields
_ATTNAMES = [field.attname for field in _FIELDS]
# JSON columns arrive as text; their fields decode them.
_DECODED = [(index, field) for index, field in enumerate(_FIELDS) if hasattr(field, "from_db_value")]


def retry_delay(attempt: int) -> float:
    """Seconds to wait before retrying after failed attempt number ``attempt``.

    Exponential (base · 2^(attempt-1), capped) with "equal jitter": a random
    point in the upper half, so retries of tasks that failed together (an
    outage) spread out instead of hammering the dependency in step.
    """
    ceiling = min(settings.AGENT_TASK_RETRY_MAX_SECONDS, settings.AGENT_TASK_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def claim_sql(*, agent_ids: Sequence[uuid.UUID] = (), task_types: Sequence[str] = ()) -> str:
    """The claim statement, with the filters asked for (parameters by name).

    One agent uses ``agent_id = …`` so ``task_claim_agent_idx`` returns rows
    already in claim order; several use ``= ANY(…)``.
    """
    return _claim_sql(agents=min(len(agent_ids), 2), by_type=bool(task_types))


@functools.cache
def _claim_sql(*, agents: int, by_type: bool) -> str:
    """:func:`claim_sql` for no agent filter (0), one agent (1) or several (2): built once per shape."""
    filters = []
    if agents == 1:
        filters.append("AND agent_id = %(agent_id)s")
    elif agents:
        filters.append("AND agent_id = ANY(%(agent_ids)s)")
    if by_type:
        filters.append("AND task_type = ANY(%(task_types)s)")
    return f"""
        UPDATE {_TABLE} AS task
        SET status = '{Status.RUNNING}', worker_id = %(worker_id)s, attempts = task.attempts + 1,
            started_at = %(now)s, lease_expires_at = %(lease_expires_at)s, updated_at = %(now)s
        FROM (
            SELECT id FROM {_TABLE}
            WHERE status = '{Status.QUEUED}' AND (scheduled_for IS NULL OR scheduled_for <= %(now)s)
                {" ".join(filters)}
            ORDER BY priority DESC, created_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS due
        WHERE task.id = due.id
        RETURNING {", ".join(f"task.{field.column}" for field in _FIELDS)}
    """  # noqa: S608 - only constants and placeholders are interpolated


def claim_params(
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    now: datetime,
    agent_ids: Sequence[uuid.UUID] = (),
    task_types: Sequence[str] = (),
) -> dict[str, object]:
    return {
        "worker_id": worker_id,
        "now": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "limit": limit,
        "agent_id": agent_ids[0] if agent_ids else None,
        "agent_ids": list(agent_ids),
        "task_types": list(task_types),
    }


def tasks_claim(
    *,
    worker_id: str,
    limit: int = 1,
    agent_ids: Sequence[uuid.UUID] = (),
    task_types: Sequence[str] = (),
    lease_seconds: float | None = None,
) -> list[AgentTask]:
    """Claim up to ``limit`` due tasks for ``worker_id``, in claim order.

    The bulk ``UPDATE`` bypasses ``post_save``, so this writes each task's
    ``agent.task.started`` event through an :class:`Outbox`: one INSERT for
    the batch, in the claim's transaction.
    """
    if lease_seconds is None:
        lease_seconds = settings.AGENT_TASK_LEASE_SECONDS
    sql = claim_sql(agent_ids=agent_ids, task_types=task_types)
    params = claim_params(
        worker_id=worker_id,
        limit=limit,
        lease_seconds=lease_seconds,
        now=timezone.now(),
        agent_ids=agent_ids,
        task_types=task_types,
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            tasks = [_task_from_row(row, connection) for row in cursor.fetchall()]
        children = [task.pk for task in tasks if task.parent_task_id is not None]
        if children:
            AgentCollaboration.objects.filter(
                child_task__in=children, status=AgentCollaboration.Status.REQUESTED
            ).update(status=AgentCollaboration.Status.IN_PROGRESS, started_at=params["now"], updated_at=params["now"])
        outbox = Outbox()
        for task in tasks:
            outbox.add_state_change(task, previous=Status.QUEUED)
        outbox.write()
    # RETURNING gives no order; run the batch in claim order.
    tasks.sort(key=lambda task: (-task.priority, task.created_at))
    return tasks


def _task_from_row(row: Sequence[object], db) -> AgentTask:
    values = list(row)
    for index, field in _DECODED:
        values[index] = field.from_db_value(values[index], None, db)
    return AgentTask.from_db(db.alias, _ATTNAMES, values)


def tasks_renew_leases(*, worker_id: str, task_ids: Iterable[uuid.UUID], lease_seconds: float | None = None) -> int:
    """Extend the leases ``worker_id`` holds on ``task_ids``; returns how many it
    still held. (No status changes, so ``update()`` fires no event, rightly.)"""
    if lease_seconds is None:
        lease_seconds = settings.AGENT_TASK_LEASE_SECONDS
    ids = list(task_ids)
    if not ids:
        return 0
    return AgentTask.objects.filter(pk__in=ids, status=Status.RUNNING, worker_id=worker_id).update(
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds)
    )


class TaskListener:
    """A dedicated autocommit connection LISTENing for newly queued tasks.

    It connects past PgBouncer when ``DATABASE_DIRECT_URL`` is set: a
    transaction-mode pooler hands the LISTEN to a server connection that
    other clients then use, and the notifications never arrive. Nor is it one
    of the pool's: it stays in LISTEN for the worker's life.
    """

    def __init__(self, *, agent_ids: Iterable[uuid.UUID] = ()) -> None:
        self._agent_ids = {str(agent_id) for agent_id in agent_ids}
        self._conn = self._connect()

    @staticmethod
    def _connect() -> psycopg.Connection:
        conn = connect_outside_pool(session_alias())
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn

    def reconnect(self) -> None:
        """Replace a broken connection (notifications sent meanwhile are lost: poll)."""
        self._conn.close()
        self._conn = self._connect()

    def wait(self, timeout: float) -> bool:
        """Block until a task this worker serves is queued (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            for notify in self._conn.notifies(timeout=remaining, stop_after=1):
                if not self._agent_ids or notify.payload in self._agent_ids:
                    return True
        return False

    def close(self) -> None:
        self._conn.close()
