"""Write paths for repositories, pull requests and deployments.

Webhook processing, the admin and workers all change these rows through
here. Every change is a plain ``save()`` (with ``update_fields``), so the
``post_save`` receivers in ``development/events.py`` publish the real-time
events of ``events.md``; nothing here publishes them itself. A save happens
only when a field really changed, so a repeated delivery writes nothing.

Providers do not promise to deliver in order. Each row keeps
``last_event_at``, the provider's time of the newest event applied to it; an
older event never overwrites what a newer one wrote. A deployment only moves
forward (queued, building, then ready, error or canceled), whatever the
timestamps say, and a merged pull request stays merged. An older event may
still fill a field that is empty (a late ``deployment.created`` supplies
``started_at``), which adds information without undoing any.

The upserts lock the row they change (``select_for_update``), so concurrent
deliveries about one object apply one after the other, each seeing the
other's result. They need a transaction for that, not a savepoint of their
own: an error propagates and rolls back the caller's transaction anyway
(webhook processing wraps each delivery in one savepoint).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils.dateparse import parse_datetime

from core.models import Organization, User
from development.models import Deployment, DeploymentEnvironment, DeploymentState, PullRequest, Repository
from integrations.models import Integration

# Where a state is in a deployment's life; it only ever moves to a higher rank.
DEPLOYMENT_STATE_RANK: Mapping[str, int] = {
    DeploymentState.QUEUED: 0,
    DeploymentState.BUILDING: 1,
    DeploymentState.READY: 2,
    DeploymentState.ERROR: 2,
    DeploymentState.CANCELED: 2,
}

# The deployment state each Vercel event reports. ``succeeded`` (build done)
# and ``ready`` (checks passed, serving) both mean "ready" here.
VERCEL_EVENT_STATES: Mapping[str, str] = {
    "deployment.created": DeploymentState.BUILDING,
    "deployment.succeeded": DeploymentState.READY,
    "deployment.ready": DeploymentState.READY,
    "deployment.error": DeploymentState.ERROR,
    "deployment.canceled": DeploymentState.CANCELED,
}


def _github_time(value: Any) -> datetime | None:
    """Parse GitHub's ISO 8601 timestamps ("2019-05-15T15:20:33Z")."""
    if not value:
        return None
    if not isinstance(value, str) or (parsed := parse_datetime(value)) is None:
        raise ValidationError(f"Not a timestamp: {value!r}.")
    return parsed


def _is_stale(instance: Repository | PullRequest | Deployment, at: datetime | None) -> bool:
    """Whether an event from time ``at`` is older than what the row already shows."""
    return at is not None and instance.last_event_at is not None and at < instance.last_event_at


def _apply(instance: models.Model, fields: Mapping[str, Any]) -> list[str]:
    """Set the fields that differ and return their names.

    ``metadata`` is merged key by key rather than replaced: what the provider
    says about its own keys is current, other keys (set by agents or people) stay.
    """
    if "metadata" in fields:
        fields = {**fields, "metadata": {**instance.metadata, **fields["metadata"]}}
    changed = [name for name, value in fields.items() if getattr(instance, name) != value]
    for name in changed:
        setattr(instance, name, fields[name])
    return changed


def _validate(instance: models.Model) -> None:
    """Check field values (lengths, URLs, choices) before writing.

    Relations are skipped (each would cost a query and the foreign keys
    enforce them), and so are uniqueness and constraints, which the database
    checks in the same statement anyway.
    """
    relations = [field.name for field in instance._meta.concrete_fields if field.is_relation]
    instance.full_clean(exclude=relations, validate_unique=False, validate_constraints=False)


def _save_changes(instance: models.Model, changed: list[str]) -> None:
    """Validate and save only the changed fields; nothing at all when none changed."""
    if not changed:
        return
    _validate(instance)
    instance.save(update_fields=changed)


def _upsert(
    queryset: models.QuerySet,
    *,
    lookup: Mapping[str, Any],
    fields: Mapping[str, Any],
    at: datetime | None,
    final: Callable[[Any], bool] = lambda instance: False,
) -> tuple[Any, bool]:
    """Create the row or update it under a row lock, unless the event is stale.

    ``final(instance)`` says the row has reached a state no event may change.
    Returns ``(instance, applied)``; ``applied`` is False only for a stale event.
    Creation goes through ``get_or_create`` (a savepoint, and a re-read under the
    lock when another delivery created the row first), so the ``post_save``
    receivers see ``created=True`` exactly once.
    """
    with transaction.atomic(savepoint=False):
        instance = queryset.select_for_update(of=("self",)).filter(**lookup).first()
        if instance is None:
            defaults = {name: value for name, value in fields.items() if name not in lookup}
            _validate(queryset.model(**lookup, **defaults))
            instance, created = queryset.select_for_update(of=("self",)).get_or_create(**lookup, defaults=defaults)
            if created:
                return instance, True
        if _is_stale(instance, at) or final(instance):
            return instance, False
        _save_changes(instance, _apply(instance, fields))
        return instance, True


def _github_repository_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    owner = data["owner"]["login"]
    return {
        "external_id": int(data["id"]),
        "full_name": data.get("full_name") or f"{owner}/{data['name']}",
        "name": data["name"],
        "owner": owner,
        "description": data.get("description") or "",
        "default_branch": data.get("default_branch") or "main",
        "is_private": bool(data.get("private")),
        "url": data.get("html_url") or "",
        "language": data.get("language") or "",
        "stars_count": int(data.get("stargazers_count") or 0),
    }


def repository_upsert_from_github(
    *, organization: Organization, integration: Integration | None, data: Mapping[str, Any]
) -> tuple[Repository, bool]:
    """Create or update a repository from GitHub's ``repository`` object.

    A repository is found by GitHub's id first, so a rename or transfer
    updates the same row; a row created by hand (no id yet) is matched by
    full name and gets the id. GitHub's ``updated_at`` orders the events.
    Returns ``(repository, applied)``.
    """
    fields = _github_repository_fields(data)
    at = _github_time(data.get("updated_at"))
    fields["last_event_at"] = at
    scope = Repository.objects.filter(organization=organization)
    with transaction.atomic(savepoint=False):
        if not scope.filter(external_id=fields["external_id"]).exists():
            # Adopt a row known only by name; otherwise the id lookup below creates one.
            scope.filter(full_name=fields["full_name"], external_id__isnull=True).update(
                external_id=fields["external_id"]
            )
        return _upsert(
            scope,
            lookup={"organization": organization, "external_id": fields["external_id"]},
            fields={"integration_id": integration.pk if integration else None, **fields},
            at=at,
        )


def _pull_request_state(data: Mapping[str, Any]) -> tuple[str, datetime | None, datetime | None]:
    """State, merged_at and closed_at, consistent with the model's check constraints."""
    updated_at = _github_time(data.get("updated_at"))
    if data.get("merged") or data.get("merged_at"):
        merged_at = _github_time(data.get("merged_at")) or updated_at
        return PullRequest.State.MERGED, merged_at, _github_time(data.get("closed_at")) or merged_at
    if data.get("state") == "closed":
        return PullRequest.State.CLOSED, None, _github_time(data.get("closed_at")) or updated_at
    return PullRequest.State.OPEN, None, None


def pull_request_upsert_from_github(*, repository: Repository, data: Mapping[str, Any]) -> tuple[PullRequest, bool]:
    """Create or update a pull request from GitHub's ``pull_request`` object.

    Every ``pull_request`` action (opened, edited, synchronize, closed,
    labeled, ...) carries the whole object, so one mapping serves them all;
    a merge is ``closed`` with ``merged: true``. GitHub's ``updated_at``
    orders the events. Returns ``(pull_request, applied)``.
    """
    state, merged_at, closed_at = _pull_request_state(data)
    author_login = (data.get("user") or {}).get("login") or ""
    fields: dict[str, Any] = {
        "external_id": int(data["id"]),
        "title": data.get("title") or "",
        "body": data.get("body") or "",
        "state": state,
        "is_draft": bool(data.get("draft")),
        "author_login": author_login,
        "head_branch": data["head"]["ref"],
        "base_branch": data["base"]["ref"],
        "head_sha": data["head"].get("sha") or "",
        "url": data.get("html_url") or "",
        "labels": [label["name"] for label in data.get("labels") or []],
        "opened_at": _github_time(data["created_at"]),
        "merged_at": merged_at,
        "closed_at": closed_at,
        "last_event_at": _github_time(data.get("updated_at")),
        "metadata": {
            "node_id": data.get("node_id"),
            "merge_commit_sha": data.get("merge_commit_sha"),
            "locked": bool(data.get("locked")),
            "assignees": [user["login"] for user in data.get("assignees") or []],
            "requested_reviewers": [user["login"] for user in data.get("requested_reviewers") or []],
        },
    }
    # Some actions omit the diff statistics; keep what we have then.
    fields.update(
        {name: int(data[name]) for name in ("additions", "deletions", "changed_files") if data.get(name) is not None}
    )
    with transaction.atomic(savepoint=False):
        existing = (
            PullRequest.objects.filter(repository=repository, number=int(data["number"]))
            .values_list("author_login", flat=True)
            .first()
        )
        if existing != author_login:
            authors = User.objects.filter(github_username=author_login).values_list("pk", flat=True)
            fields["author_id"] = authors.first() if author_login else None
        return _upsert(
            PullRequest.objects.all(),
            lookup={"repository": repository, "number": int(data["number"])},
            fields=fields,
            at=fields["last_event_at"],
            # GitHub cannot reopen a merged pull request: an event from the same
            # second (updated_at has no finer grain) that arrives later must not.
            final=lambda pull_request: (
                pull_request.state == PullRequest.State.MERGED and state != PullRequest.State.MERGED
            ),
        )


def _deployment_state_refusal(deployment: Deployment, state: str, at: datetime) -> str | None:
    """Why ``deployment`` may not move to ``state`` as of ``at``, or None when it may.

    The lifecycle outranks the clock: a deployment only moves forward
    (queued, building, finished), whatever the timestamps say, so a late
    ``ready`` still finishes a deployment that a skewed ``created`` showed as
    building. Timestamps decide between states of the same rank, such as an
    ``error`` and a ``canceled``.
    """
    current, new = DEPLOYMENT_STATE_RANK[deployment.state], DEPLOYMENT_STATE_RANK[state]
    if new < current:
        return f"a {deployment.state} deployment cannot go back to {state}"
    if new == current and _is_stale(deployment, at):
        return f"the event ({at.isoformat()}) is older than the last applied ({deployment.last_event_at.isoformat()})"
    return None


def _deployment_state_fields(deployment: Deployment, state: str, at: datetime, error_message: str) -> dict[str, Any]:
    """The fields a move to ``state`` at time ``at`` writes."""
    fields: dict[str, Any] = {"state": state, "last_event_at": max(at, deployment.last_event_at or at)}
    if state == DeploymentState.BUILDING and deployment.started_at is None:
        fields["started_at"] = at
    if state == DeploymentState.READY:
        # Never before the start, even when the provider's clocks disagree.
        ready_at = deployment.ready_at or max(at, deployment.started_at or at)
        fields["ready_at"] = ready_at
        fields["build_duration_ms"] = _build_duration_ms(deployment.started_at, ready_at)
    if state == DeploymentState.ERROR:
        fields["error_message"] = error_message
    return fields


def _build_duration_ms(started_at: datetime | None, ready_at: datetime | None) -> int | None:
    if started_at is None or ready_at is None or ready_at < started_at:
        return None
    return int((ready_at - started_at).total_seconds() * 1000)


def deployment_set_state(*, deployment: Deployment, state: str, at: datetime, error_message: str = "") -> Deployment:
    """Move a deployment to ``state`` as of ``at`` and save it.

    Sets ``started_at`` on building, ``ready_at`` and the build duration on
    ready, the message on error. Raises ``ValidationError`` for an unknown
    state, a step back in the lifecycle (a finished deployment building
    again), or a change older than the current state of the same rank.
    """
    if state not in DeploymentState.values:
        raise ValidationError(f"Unknown deployment state {state!r}.")
    if refusal := _deployment_state_refusal(deployment, state, at):
        raise ValidationError(f"Cannot set the state: {refusal}.")
    with transaction.atomic(savepoint=False):
        _save_changes(deployment, _apply(deployment, _deployment_state_fields(deployment, state, at, error_message)))
    return deployment


def _vercel_deployment_fields(*, integration: Integration, data: Mapping[str, Any]) -> dict[str, Any]:
    """The descriptive fields of a deployment from a Vercel event's ``payload``."""
    deployment = data["deployment"]
    meta = deployment.get("meta") or {}
    url = deployment.get("url") or ""
    if url and "://" not in url:
        url = f"https://{url}"
    fields: dict[str, Any] = {
        "integration_id": integration.pk,
        "project_name": deployment.get("name") or "",
        "url": url,
        "environment": DeploymentEnvironment.PRODUCTION
        if data.get("target") == "production"
        else DeploymentEnvironment.PREVIEW,
        "commit_sha": meta.get("githubCommitSha") or "",
        "branch": meta.get("githubCommitRef") or "",
        "metadata": {
            "project_id": (data.get("project") or {}).get("id"),
            "team_id": (data.get("team") or {}).get("id"),
            "links": data.get("links") or {},
            "meta": meta,
        },
    }
    if meta.get("githubCommitOrg") and meta.get("githubCommitRepo"):
        full_name = f"{meta['githubCommitOrg']}/{meta['githubCommitRepo']}"
        repository_id = (
            Repository.objects.filter(organization_id=integration.organization_id, full_name=full_name)
            .values_list("pk", flat=True)
            .first()
        )
        if repository_id is not None:
            fields["repository_id"] = repository_id
            if str(meta.get("githubPrId") or "").isdigit():
                fields["pull_request_id"] = (
                    PullRequest.objects.filter(repository_id=repository_id, number=int(meta["githubPrId"]))
                    .values_list("pk", flat=True)
                    .first()
                )
    return fields


def deployment_upsert_from_vercel(
    *, integration: Integration, event_type: str, data: Mapping[str, Any], at: datetime
) -> tuple[Deployment, bool]:
    """Create or update a deployment from a Vercel ``deployment.*`` event.

    ``data`` is the event's ``payload`` object and ``at`` its ``createdAt``.
    An event that would move the deployment back in its lifecycle, or that is
    older than the last one of the same rank, changes no state; it only fills
    fields still empty (the start time a late ``deployment.created`` brings).
    Returns ``(deployment, applied)``.
    """
    state = VERCEL_EVENT_STATES.get(event_type)
    if state is None:
        raise ValidationError(f"Not a deployment event Vercel sends: {event_type!r}.")
    external_id = data["deployment"]["id"]
    error_message = str(data["deployment"].get("errorMessage") or "") if state == DeploymentState.ERROR else ""
    fields = _vercel_deployment_fields(integration=integration, data=data)
    with transaction.atomic(savepoint=False):
        deployment = Deployment.objects.select_for_update(of=("self",)).filter(external_id=external_id).first()
        if deployment is None:
            defaults = {
                "organization_id": integration.organization_id,
                **fields,
                **_deployment_state_fields(Deployment(), state, at, error_message),
            }
            _validate(Deployment(external_id=external_id, **defaults))
            deployment, created = Deployment.objects.select_for_update(of=("self",)).get_or_create(
                external_id=external_id, defaults=defaults
            )
            if created:
                return deployment, True
        if _deployment_state_refusal(deployment, state, at):
            _save_changes(deployment, _late_fill_ins(deployment, state, at))
            return deployment, False
        _save_changes(
            deployment, _apply(deployment, {**fields, **_deployment_state_fields(deployment, state, at, error_message)})
        )
        return deployment, True


def _late_fill_ins(deployment: Deployment, state: str, at: datetime) -> list[str]:
    """What a late event may still add: the start time, if it precedes readiness."""
    if state != DeploymentState.BUILDING or deployment.started_at is not None:
        return []
    if deployment.ready_at is not None and at > deployment.ready_at:
        return []
    return _apply(deployment, {"started_at": at, "build_duration_ms": _build_duration_ms(at, deployment.ready_at)})
