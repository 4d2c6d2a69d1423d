"""GitHub repositories and pull requests, and Vercel deployments."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models

from companyos.foundation.console.history import tracked
from companyos.foundation.events import StateEvents
from companyos.foundation.models import ExternalModel, choices_check
from companyos.foundation.search import Searchable, trigram_index
from companyos.foundation.tracking import TrackedFieldsMixin


class Repository(ExternalModel):
    """A GitHub repository."""

    operators_may_change = True

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(text=("full_name", "url"))

    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="repositories", db_index=False
    )
    integration = models.ForeignKey(
        "integrations.Integration", on_delete=models.SET_NULL, null=True, blank=True, related_name="repositories"
    )
    external_id = models.BigIntegerField(null=True, blank=True, help_text="GitHub's numeric repository id.")
    full_name = models.CharField(max_length=200, help_text="owner/name")
    name = models.CharField(max_length=100)
    owner = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    default_branch = models.CharField(max_length=255, default="main")
    is_private = models.BooleanField(default=False)
    url = models.URLField(max_length=500, blank=True)
    language = models.CharField(max_length=64, blank=True)
    stars_count = models.PositiveIntegerField(default=0)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Provider time of the newest event applied; older deliveries never overwrite it.",
    )

    class Meta(ExternalModel.Meta):
        triggers = tracked()
        ordering = ["full_name"]
        verbose_name_plural = "repositories"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "full_name"], name="development_repository_full_name_unique"
            ),
            models.UniqueConstraint(
                fields=["organization", "external_id"], name="development_repository_external_id_unique"
            ),
        ]
        indexes = [
            # The global search (global_search above).
            trigram_index("full_name", name="repo_full_name_trgm"),
            trigram_index("url", name="repo_url_trgm"),
        ]

    def __str__(self) -> str:
        return self.full_name


class PullRequestState(models.TextChoices):
    OPEN = "open"
    CLOSED = "closed"
    MERGED = "merged"


class PullRequestReviewStatus(models.TextChoices):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    COMMENTED = "commented"
    SKIPPED = "skipped"


class PullRequest(TrackedFieldsMixin, ExternalModel):
    """A pull request, with the review an agent gave it."""

    operators_may_change = True
    status_tones = {
        PullRequestState.OPEN: "success",
        PullRequestState.MERGED: "success",
        PullRequestReviewStatus.PENDING: "warning",
        PullRequestReviewStatus.IN_PROGRESS: "warning",
        PullRequestReviewStatus.APPROVED: "success",
        PullRequestReviewStatus.CHANGES_REQUESTED: "warning",
    }

    # Real-time events (companyos.foundation.events), published by any save.
    state_events = StateEvents(
        topic="pull_request",
        category="development",
        state_field="state",
        states={
            PullRequestState.OPEN: "pull_request.opened",
            PullRequestState.MERGED: "pull_request.merged",
            PullRequestState.CLOSED: "pull_request.closed",
        },
        # An open pull request changing one of these is `pull_request.updated`.
        content_fields=("title", "body", "head_sha", "labels", "is_draft", "base_branch"),
        content_states=(PullRequestState.OPEN,),
        snapshot=(
            "id", "repository", "number", "title", "state", "is_draft", "author_login", "author", "head_branch",
            "base_branch", "head_sha", "url", "labels", "additions", "deletions", "changed_files",
            "agent_review_status", "opened_at", "merged_at", "closed_at",
        ),
        organization=lambda pull_request: pull_request.repository.organization_id,
        source="github",
        actor_user=lambda pull_request: pull_request.author_id,
        extra_data=lambda pull_request: {"repository_full_name": pull_request.repository.full_name},
    )  # fmt: skip

    State = PullRequestState

    ReviewStatus = PullRequestReviewStatus

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(exact=("id", "head_sha"), text=("title", "head_branch"))

    # The unique (repository, number) index serves lookups by repository.
    repository = models.ForeignKey(
        "development.Repository", on_delete=models.CASCADE, related_name="pull_requests", db_index=False
    )
    number = models.PositiveIntegerField()
    external_id = models.BigIntegerField(null=True, blank=True)
    title = models.CharField(max_length=500)
    body = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=State, default=State.OPEN)
    is_draft = models.BooleanField(default=False)
    author_login = models.CharField(max_length=39, blank=True)
    author = models.ForeignKey(
        "core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="pull_requests"
    )
    head_branch = models.CharField(max_length=255)
    base_branch = models.CharField(max_length=255)
    head_sha = models.CharField(max_length=40, blank=True)
    url = models.URLField(max_length=500, blank=True)
    labels = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    additions = models.PositiveIntegerField(default=0)
    deletions = models.PositiveIntegerField(default=0)
    changed_files = models.PositiveIntegerField(default=0)
    agent_review_status = models.CharField(max_length=20, choices=ReviewStatus, default=ReviewStatus.PENDING)
    agent_review_summary = models.TextField(blank=True)
    reviewed_by_agent = models.ForeignKey(
        "agents.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="reviewed_pull_requests"
    )
    opened_at = models.DateTimeField()
    merged_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Provider time of the newest event applied; older deliveries never overwrite it.",
    )

    class Meta(ExternalModel.Meta):
        triggers = tracked()
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["repository", "number"], name="development_pullrequest_number_unique"),
            choices_check("state", PullRequestState, "development_pullrequest"),
            choices_check("agent_review_status", PullRequestReviewStatus, "development_pullrequest"),
            models.CheckConstraint(
                condition=~models.Q(state="merged") | models.Q(merged_at__isnull=False),
                name="development_pullrequest_merged_has_merged_at",
            ),
            models.CheckConstraint(
                condition=~models.Q(state="open") | models.Q(merged_at__isnull=True, closed_at__isnull=True),
                name="development_pullrequest_open_not_closed",
            ),
            models.CheckConstraint(
                condition=models.Q(number__gte=1),
                name="development_pullrequest_number_positive",
            ),
        ]
        indexes = [
            # A repository's open pull requests, newest first.
            models.Index(fields=["repository", "-opened_at"], name="pr_open_idx", condition=models.Q(state="open")),
            # The agent review queue: pull requests waiting for a review.
            models.Index(
                fields=["opened_at"],
                name="pr_review_queue_idx",
                condition=models.Q(state="open", agent_review_status__in=["pending", "in_progress"]),
            ),
            # Pull requests by label ("every open PR labelled security").
            GinIndex(fields=["labels"], name="pr_labels_gin"),
            # Deployments and webhooks find the pull request of a commit.
            models.Index(fields=["head_sha"], name="pr_head_sha_idx", condition=~models.Q(head_sha="")),
            # The global search (global_search above).
            trigram_index("title", name="pr_title_trgm"),
            trigram_index("head_branch", name="pr_head_branch_trgm"),
        ]

    def __str__(self) -> str:
        return f"#{self.number} {self.title}"


class DeploymentEnvironment(models.TextChoices):
    PRODUCTION = "production"
    PREVIEW = "preview"
    DEVELOPMENT = "development"


class DeploymentState(models.TextChoices):
    QUEUED = "queued"
    BUILDING = "building"
    READY = "ready"
    ERROR = "error"
    CANCELED = "canceled"


class Deployment(TrackedFieldsMixin, ExternalModel):
    """A Vercel deployment."""

    operators_may_change = True
    status_tones = {
        DeploymentState.QUEUED: "warning",
        DeploymentState.BUILDING: "warning",
        DeploymentState.READY: "success",
        DeploymentState.ERROR: "danger",
    }

    # Real-time events (companyos.foundation.events), published by any save;
    # a deployment created already finished publishes `created`, then its state.
    state_events = StateEvents(
        topic="deployment",
        category="development",
        state_field="state",
        created="deployment.created",
        states={
            DeploymentState.READY: "deployment.ready",
            DeploymentState.ERROR: "deployment.error",
            DeploymentState.CANCELED: "deployment.canceled",
        },
        snapshot=(
            "id", "repository", "pull_request", "external_id", "project_name", "url", "environment", "state",
            "commit_sha", "branch", "creator", "error_message", "started_at", "ready_at", "build_duration_ms",
            "created_at",
        ),
        source="vercel",
        actor_user=lambda deployment: deployment.creator_id,
    )  # fmt: skip

    Environment = DeploymentEnvironment

    State = DeploymentState

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(
        exact=("id", "external_id", "commit_sha"), text=("external_id", "project_name", "url", "branch")
    )

    # The (organization, -created_at) index serves lookups by organization.
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="deployments", db_index=False
    )
    repository = models.ForeignKey(
        "development.Repository",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deployments",
        db_index=False,
    )
    integration = models.ForeignKey(
        "integrations.Integration", on_delete=models.SET_NULL, null=True, blank=True, related_name="deployments"
    )
    pull_request = models.ForeignKey(
        "development.PullRequest", on_delete=models.SET_NULL, null=True, blank=True, related_name="deployments"
    )
    external_id = models.CharField(max_length=100, help_text="Vercel's deployment id.")
    project_name = models.CharField(max_length=200)
    url = models.URLField(max_length=500, blank=True)
    environment = models.CharField(max_length=16, choices=Environment, default=Environment.PREVIEW)
    state = models.CharField(max_length=16, choices=State, default=State.QUEUED)
    commit_sha = models.CharField(max_length=40, blank=True)
    branch = models.CharField(max_length=255, blank=True)
    creator = models.ForeignKey(
        "core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="deployments"
    )
    error_message = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    build_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_event_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Provider time of the newest event applied; older deliveries never overwrite it.",
    )

    class Meta(ExternalModel.Meta):
        triggers = tracked()
        ordering = ["-created_at"]
        constraints = [
            # Webhook deliveries find their deployment by Vercel's id.
            models.UniqueConstraint(fields=["external_id"], name="development_deployment_external_id_unique"),
            choices_check("environment", DeploymentEnvironment, "development_deployment"),
            choices_check("state", DeploymentState, "development_deployment"),
            models.CheckConstraint(
                condition=~models.Q(state="ready") | models.Q(ready_at__isnull=False),
                name="development_deployment_ready_has_ready_at",
            ),
            models.CheckConstraint(
                condition=models.Q(ready_at__isnull=True)
                | models.Q(started_at__isnull=True)
                | models.Q(ready_at__gte=models.F("started_at")),
                name="development_deployment_ready_after_start",
            ),
        ]
        indexes = [
            # An organization's deployments, newest first (dashboard, admin).
            models.Index(fields=["organization", "-created_at"], name="deploy_org_recent_idx"),
            # The latest deployment of a repository per environment ("what is in production?").
            models.Index(fields=["repository", "environment", "-created_at"], name="deploy_repo_env_idx"),
            # Deployments still in flight, watched for progress and timeouts.
            models.Index(
                fields=["created_at"], name="deploy_in_flight_idx", condition=models.Q(state__in=["queued", "building"])
            ),
            # Deployments of a commit (linking a push or a pull request to its previews).
            models.Index(fields=["commit_sha"], name="deploy_commit_idx", condition=~models.Q(commit_sha="")),
            # The global search (global_search above).
            trigram_index("external_id", name="deploy_external_id_trgm"),
            trigram_index("project_name", name="deploy_project_trgm"),
            trigram_index("url", name="deploy_url_trgm"),
            trigram_index("branch", name="deploy_branch_trgm"),
        ]

    def __str__(self) -> str:
        return f"{self.project_name} {self.external_id} ({self.state})"
