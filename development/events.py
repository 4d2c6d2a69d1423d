"""Real-time events of pull requests and deployments, fired from their state changes.

The ``post_save`` receivers below are connected in ``DevelopmentConfig.ready``:
any ``save()`` (a service, the admin, a webhook, a shell) publishes, so
services never publish these events themselves. ``QuerySet.update()``
bypasses them; code changing state in bulk calls the ``publish_*`` functions.
"""

from __future__ import annotations

from companyos.foundation.events import model_data, publish_on_commit
from development.models import Deployment, PullRequest

DEPLOYMENT_FIELDS = (
    "id", "repository", "pull_request", "external_id", "project_name", "url", "environment", "state",
    "commit_sha", "branch", "creator", "error_message", "started_at", "ready_at", "build_duration_ms", "created_at",
)  # fmt: skip
PULL_REQUEST_FIELDS = (
    "id", "repository", "number", "title", "state", "is_draft", "author_login", "author", "head_branch",
    "base_branch", "head_sha", "url", "labels", "additions", "deletions", "changed_files", "agent_review_status",
    "opened_at", "merged_at", "closed_at",
)  # fmt: skip
# An open pull request changing one of these is `pull_request.updated`.
PULL_REQUEST_CONTENT = ("title", "body", "head_sha", "labels", "is_draft", "base_branch")

DEPLOYMENT_STATE_EVENTS = {
    Deployment.State.READY: "deployment.ready",
    Deployment.State.ERROR: "deployment.error",
    Deployment.State.CANCELED: "deployment.canceled",
}
PULL_REQUEST_STATE_EVENTS = {
    PullRequest.State.OPEN: "pull_request.opened",
    PullRequest.State.MERGED: "pull_request.merged",
    PullRequest.State.CLOSED: "pull_request.closed",
}


def publish_deployment_change(deployment: Deployment, *, created: bool, previous_state: str | None = None) -> None:
    """Publish what a committed save of ``deployment`` means.

    Creation is ``deployment.created`` (followed by the state's own event when
    it is created already finished); a later state change to ready, error or
    canceled is ``deployment.<state>``.
    """
    event_types = ["deployment.created"] if created else []
    if created or previous_state != deployment.state:
        state_event = DEPLOYMENT_STATE_EVENTS.get(deployment.state)
        if state_event:
            event_types.append(state_event)
    for event_type in event_types:
        publish_on_commit(
            organization_id=deployment.organization_id,
            event_type=event_type,
            subject=deployment,
            data={**model_data(deployment, DEPLOYMENT_FIELDS), "previous_state": previous_state},
            source="vercel",
            actor_user_id=deployment.creator_id,
        )


def publish_pull_request_change(
    pull_request: PullRequest, *, created: bool, previous_state: str | None = None, changed: tuple[str, ...] = ()
) -> None:
    """Publish what a committed save of ``pull_request`` means.

    Created or reopened: ``opened``; merged: ``merged``; closed: ``closed``;
    still open with ``changed`` content fields: ``updated`` (their names in
    ``data.changed``).
    """
    if created or previous_state != pull_request.state:
        event_type = PULL_REQUEST_STATE_EVENTS[pull_request.state]
    elif pull_request.state == PullRequest.State.OPEN and changed:
        event_type = "pull_request.updated"
    else:
        return
    publish_on_commit(
        organization_id=pull_request.repository.organization_id,
        event_type=event_type,
        subject=pull_request,
        data={
            **model_data(pull_request, PULL_REQUEST_FIELDS),
            "repository_full_name": pull_request.repository.full_name,
            "previous_state": previous_state,
            "changed": sorted(changed),
        },
        source="github",
        actor_user_id=pull_request.author_id,
    )


def deployment_saved(sender, instance: Deployment, created: bool, raw: bool, update_fields=None, **kwargs) -> None:
    if raw:  # fixtures
        return
    changes = instance.tracked_changes(update_fields)
    if created or "state" in changes:
        publish_deployment_change(instance, created=created, previous_state=changes.get("state"))


def pull_request_saved(sender, instance: PullRequest, created: bool, raw: bool, update_fields=None, **kwargs) -> None:
    if raw:  # fixtures
        return
    changes = instance.tracked_changes(update_fields)
    if created or changes:
        publish_pull_request_change(
            instance,
            created=created,
            previous_state=changes.get("state", None if created else instance.state),
            changed=tuple(name for name in PULL_REQUEST_CONTENT if name in changes),
        )
