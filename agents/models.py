"""AI agents, their task queue, and their collaborations."""

from __future__ import annotations

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Cast

from companyos.foundation.console.history import tracked
from companyos.foundation.events import StateEvents
from companyos.foundation.models import BaseModel, choices_check
from companyos.foundation.search import Searchable, trigram_index
from companyos.foundation.tracking import TrackedFieldsMixin


class AgentAgentType(models.TextChoices):
    CODE_REVIEWER = "code_reviewer"
    DESIGNER = "designer"
    SOCIAL_MEDIA = "social_media"
    DEVOPS = "devops"
    ANALYST = "analyst"
    COORDINATOR = "coordinator"


# The track record: counters the queue keeps in SQL and the columns PostgreSQL
# derives from them. They move with traffic, not decisions: history ignores
# them, and the admin shows them read-only.
TRACK_RECORD_FIELDS = (
    "tasks_completed",
    "tasks_failed",
    "total_duration_ms",
    "success_rate",
    "avg_duration_ms",
    "last_active_at",
)


class Agent(BaseModel):
    """An AI agent's configuration and its track record.

    ``success_rate`` and ``avg_duration_ms`` are generated columns computed by
    PostgreSQL from the counters, so they can never disagree with them, even
    when many workers finish tasks at once: the counters are only ever
    incremented in SQL (``F() + 1``), never read-modified-written in Python.
    """

    operators_may_change = True

    AgentType = AgentAgentType

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(text=("name", "slug"))

    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="agents", db_index=False
    )
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, db_index=False)
    agent_type = models.CharField(max_length=20, choices=AgentType)
    description = models.TextField(blank=True)
    model = models.CharField(max_length=100, help_text="The language model the agent runs on.")
    system_prompt = models.TextField(blank=True)
    config = models.JSONField(default=dict, blank=True)
    capabilities = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    is_active = models.BooleanField(default=True)
    max_concurrent_tasks = models.PositiveSmallIntegerField(default=1)
    tasks_completed = models.PositiveIntegerField(default=0)
    tasks_failed = models.PositiveIntegerField(default=0)
    total_duration_ms = models.PositiveBigIntegerField(default=0, help_text="Sum of completed tasks' durations.")
    success_rate = models.GeneratedField(
        expression=models.Case(
            models.When(models.Q(tasks_completed=0, tasks_failed=0), then=models.Value(0.0)),
            default=Cast("tasks_completed", models.FloatField())
            / Cast(models.F("tasks_completed") + models.F("tasks_failed"), models.FloatField()),
        ),
        output_field=models.FloatField(),
        db_persist=True,
    )
    avg_duration_ms = models.GeneratedField(
        expression=models.Case(
            models.When(tasks_completed=0, then=models.Value(None)),
            default=models.F("total_duration_ms") / models.F("tasks_completed"),
        ),
        output_field=models.BigIntegerField(null=True),
        db_persist=True,
    )
    last_active_at = models.DateTimeField(null=True, blank=True)

    class Meta(BaseModel.Meta):
        triggers = tracked(churn=TRACK_RECORD_FIELDS)
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="agents_agent_slug_unique"),
            choices_check("agent_type", AgentAgentType, "agents_agent"),
            models.CheckConstraint(
                condition=models.Q(max_concurrent_tasks__gte=1), name="agents_agent_concurrency_positive"
            ),
        ]
        indexes = [
            # Routing a task: the active agents of a type in an organization.
            models.Index(
                fields=["organization", "agent_type"], name="agent_active_type_idx", condition=models.Q(is_active=True)
            ),
            # The global search (global_search above).
            trigram_index("name", name="agent_name_trgm"),
            trigram_index("slug", name="agent_slug_trgm"),
        ]

    def __str__(self) -> str:
        return self.name


class AgentTaskStatus(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AgentTaskPriority(models.IntegerChoices):
    LOW = 0
    NORMAL = 1
    HIGH = 2
    URGENT = 3


class AgentTask(TrackedFieldsMixin, BaseModel):
    """One unit of work for an agent: the task queue lives in this table."""

    operators_may_change = True
    status_tones = {
        AgentTaskStatus.PENDING: "warning",
        AgentTaskStatus.QUEUED: "warning",
        AgentTaskStatus.RUNNING: "warning",
        AgentTaskStatus.AWAITING_APPROVAL: "warning",
        AgentTaskStatus.COMPLETED: "success",
        AgentTaskStatus.FAILED: "danger",
    }

    # Real-time events (companyos.foundation.events), published by any save;
    # the queue's bulk claim publishes through publish_state_change.
    state_events = StateEvents(
        topic="agent.task",
        category="agents",
        state_field="status",
        states={
            AgentTaskStatus.QUEUED: "agent.task.queued",
            AgentTaskStatus.RUNNING: "agent.task.started",
            AgentTaskStatus.AWAITING_APPROVAL: "agent.task.awaiting_approval",
            AgentTaskStatus.COMPLETED: "agent.task.completed",
            AgentTaskStatus.FAILED: "agent.task.failed",
            AgentTaskStatus.CANCELLED: "agent.task.cancelled",
        },
        snapshot=(
            "id", "agent", "created_by", "parent_task", "task_type", "title", "status", "priority",
            "requires_approval", "approved_by", "approved_at", "rejection_reason", "attempts", "max_attempts",
            "error", "scheduled_for", "started_at", "completed_at", "duration_ms", "created_at",
        ),
        source="agent",
        actor_agent=lambda task: task.agent_id,
    )  # fmt: skip

    Status = AgentTaskStatus

    Priority = AgentTaskPriority

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(text=("title",))

    # The (organization, -created_at) index serves lookups by organization.
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="agent_tasks", db_index=False
    )
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="tasks")
    created_by = models.ForeignKey(
        "core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="created_agent_tasks"
    )
    parent_task = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="child_tasks"
    )
    task_type = models.CharField(max_length=100)
    title = models.CharField(max_length=300)
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status, default=Status.QUEUED)
    priority = models.PositiveSmallIntegerField(choices=Priority, default=Priority.NORMAL)
    requires_approval = models.BooleanField(default=False)
    approved_by = models.ForeignKey(
        "core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="approved_agent_tasks"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    error = models.TextField(blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="Not claimed before this time.")
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A running task whose lease passed goes back to the queue."
    )
    worker_id = models.CharField(max_length=200, blank=True, help_text="The worker holding the lease.")
    target_content_type = models.ForeignKey(
        "contenttypes.ContentType", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    target_object_id = models.UUIDField(null=True, blank=True)
    target = GenericForeignKey("target_content_type", "target_object_id")
    metadata = models.JSONField(default=dict, blank=True)

    class Meta(BaseModel.Meta):
        # Lease renewals (every few seconds while a task runs) are not changes.
        triggers = tracked(churn=("lease_expires_at",))
        ordering = ["-created_at"]
        constraints = [
            choices_check("status", AgentTaskStatus, "agents_task"),
            choices_check("priority", AgentTaskPriority, "agents_task"),
            models.CheckConstraint(condition=models.Q(max_attempts__gte=1), name="agents_task_max_attempts_positive"),
            models.CheckConstraint(
                condition=~models.Q(status="running") | models.Q(started_at__isnull=False),
                name="agents_task_running_has_started_at",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="completed") | models.Q(completed_at__isnull=False),
                name="agents_task_completed_has_completed_at",
            ),
            models.CheckConstraint(
                condition=models.Q(completed_at__isnull=True)
                | models.Q(started_at__isnull=True)
                | models.Q(completed_at__gte=models.F("started_at")),
                name="agents_task_completes_after_start",
            ),
            # The queue's invariants (agents/states.py): a queued task always
            # has an attempt left, only a running task holds a lease, and the
            # outcome fields belong to their outcome.
            models.CheckConstraint(
                condition=models.Q(attempts__lte=models.F("max_attempts")),
                name="agents_task_attempts_within_max",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="queued") | models.Q(attempts__lt=models.F("max_attempts")),
                name="agents_task_queued_has_attempt_left",
            ),
            models.CheckConstraint(
                condition=models.Q(status="running", lease_expires_at__isnull=False) & ~models.Q(worker_id="")
                | ~models.Q(status="running") & models.Q(lease_expires_at__isnull=True),
                name="agents_task_lease_iff_running",
            ),
            models.CheckConstraint(
                condition=models.Q(completed_at__isnull=True)
                | models.Q(status__in=["completed", "failed", "cancelled"]),
                name="agents_task_completed_at_when_finished",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="awaiting_approval") | models.Q(requires_approval=True),
                name="agents_task_awaiting_requires_approval",
            ),
            models.CheckConstraint(
                condition=models.Q(approved_at__isnull=True) | models.Q(status="completed", requires_approval=True),
                name="agents_task_approved_when_completed",
            ),
            models.CheckConstraint(
                condition=models.Q(rejection_reason="") | models.Q(status="failed"),
                name="agents_task_rejected_when_failed",
            ),
            models.CheckConstraint(
                condition=models.Q(target_content_type__isnull=True, target_object_id__isnull=True)
                | models.Q(target_content_type__isnull=False, target_object_id__isnull=False),
                name="agents_task_target_complete",
            ),
        ]
        indexes = [
            # The claim query: queued tasks, highest priority then oldest.
            models.Index(
                models.F("priority").desc(),
                models.F("created_at").asc(),
                name="task_claim_idx",
                condition=models.Q(status="queued"),
            ),
            # The same claim restricted to one agent (`run_agent_worker --agent`).
            models.Index(
                models.F("agent"),
                models.F("priority").desc(),
                models.F("created_at").asc(),
                name="task_claim_agent_idx",
                condition=models.Q(status="queued"),
            ),
            # The reaper: running tasks whose lease has expired.
            models.Index(fields=["lease_expires_at"], name="task_lease_idx", condition=models.Q(status="running")),
            # The approval inbox of an organization, oldest first.
            models.Index(
                fields=["organization", "created_at"],
                name="task_approval_idx",
                condition=models.Q(status="awaiting_approval"),
            ),
            # An organization's tasks, newest first (admin, dashboards).
            models.Index(fields=["organization", "-created_at"], name="task_org_recent_idx"),
            # The tasks about one object ("reviews of this pull request").
            models.Index(fields=["target_content_type", "target_object_id"], name="task_target_idx"),
            # The global search (global_search above).
            trigram_index("title", name="task_title_trgm"),
        ]

    def __str__(self) -> str:
        return self.title


class AgentCollaborationKind(models.TextChoices):
    REVIEW = "review"
    HANDOFF = "handoff"
    CONSULT = "consult"
    PARALLEL = "parallel"


class AgentCollaborationStatus(models.TextChoices):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    DECLINED = "declined"


class AgentCollaboration(BaseModel):
    """Two agents working together on one task (a review, a handoff...)."""

    operators_may_change = True
    status_tones = {
        AgentCollaborationStatus.REQUESTED: "warning",
        AgentCollaborationStatus.ACCEPTED: "success",
        AgentCollaborationStatus.IN_PROGRESS: "warning",
        AgentCollaborationStatus.COMPLETED: "success",
    }

    Kind = AgentCollaborationKind

    Status = AgentCollaborationStatus

    # The unique (task, initiator, collaborator) index serves lookups by task.
    task = models.ForeignKey(
        "agents.AgentTask", on_delete=models.CASCADE, related_name="collaborations", db_index=False
    )
    initiator = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="initiated_collaborations")
    collaborator = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="collaborations", db_index=False
    )
    # The collaborator's own task, created with the request; its outcome is
    # the collaboration's outcome. SET_NULL keeps the record if it is deleted.
    child_task = models.OneToOneField(
        "agents.AgentTask", on_delete=models.SET_NULL, null=True, blank=True, related_name="source_collaboration"
    )
    kind = models.CharField(max_length=16, choices=Kind)
    status = models.CharField(max_length=16, choices=Status, default=Status.REQUESTED)
    messages = models.JSONField(default=list, blank=True)
    result = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta(BaseModel.Meta):
        triggers = tracked()
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["task", "initiator", "collaborator"], name="agents_collab_unique"),
            models.CheckConstraint(
                condition=~models.Q(initiator=models.F("collaborator")), name="agents_collab_distinct_agents"
            ),
            choices_check("kind", AgentCollaborationKind, "agents_collab"),
            choices_check("status", AgentCollaborationStatus, "agents_collab"),
        ]
        indexes = [
            # An agent's collaboration requests by state ("what am I asked to do?").
            models.Index(fields=["collaborator", "status"], name="collab_inbox_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.initiator} → {self.collaborator}"
