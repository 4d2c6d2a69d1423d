"""Write paths for repositories, pull requests and deployments.

Webhook processing, the admin and workers all change these rows through
here, in field values: what a provider's payload means is worked out by
the caller (``integrations/webhooks``). Every change is a plain ``save()``
(with ``update_fields``), so the save publishes the real-time events that
``PullRequest`` and ``Deployment`` declare (``state_events``); nothing here
publishes them itself. A save happens only when a field really changed, so a
repeated delivery writes nothing.

Providers do not promise to deliver in order. Each row keeps
``last_event_at``, the provider's time of the newest event applied to it; an
older event never overwrites what a newer one wrote. A deployment only moves
forward (queued, building, then ready, error or canceled), whatever the
timestamps say, and a merged pull request stays merged. An older event may
still fill a field that is empty (a late report that the deployment is
building supplies ``started_at``), which adds information without undoing any.

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

from core.models import User
from development.models import Deployment, DeploymentState, PullRequest, Repository

# Where a state is in a deployment's life; it only ever moves to a higher rank.
DEPLOYMENT_STATE_RANK: Mapping[str, int] = {
    DeploymentState.QUEUED: 0,
    DeploymentState.BUILDING: 1,
    DeploymentState.READY: 2,
    DeploymentState.ERROR: 2,
    DeploymentState.CANCELED: 2,
}


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


def repository_upsert(
    *, organization_id: Any, external_id: int, fields: Mapping[str, Any], at: datetime | None
) -> tuple[Repository, bool]:
    """Create or update the repository the provider knows by ``external_id``.

    ``fields`` are the other field values (``full_name`` among them) and
    ``at`` the provider's time of the event, which orders the events. Finding
    the row by the provider's id makes a rename or transfer update the same
    row; a row created by hand (no id yet) is matched by full name and gets
    the id. Returns ``(repository, applied)``.
    """
    scope = Repository.objects.filter(organization_id=organization_id)
    with transaction.atomic(savepoint=False):
        if not scope.filter(external_id=external_id).exists():
            # Adopt a row known only by name; otherwise the id lookup below creates one.
            scope.filter(full_name=fields["full_name"], external_id__isnull=True).update(external_id=external_id)
        return _upsert(
            scope,
            lookup={"organization_id": organization_id, "external_id": external_id},
            fields={**fields, "last_event_at": at},
            at=at,
        )


def pull_request_upsert(
    *, repository_id: Any, number: int, fields: Mapping[str, Any], at: datetime | None
) -> tuple[PullRequest, bool]:
    """Create or update pull request ``number`` of a repository.

    ``fields`` are the other field values and ``at`` the provider's time of
    the event, which orders the events. An ``author_login`` links the user
    with that GitHub username as the author. A merged pull request stays
    merged. Returns ``(pull_request, applied)``.
    """
    fields = {**fields, "last_event_at": at}
    with transaction.atomic(savepoint=False):
        if "author_login" in fields:
            fields.update(_author_fields(repository_id, number, fields["author_login"]))
        return _upsert(
            PullRequest.objects.all(),
            lookup={"repository_id": repository_id, "number": number},
            fields=fields,
            at=at,
            # GitHub cannot reopen a merged pull request: an event from the same
            # second (updated_at has no finer grain) that arrives later must not.
            final=lambda pull_request: (
                pull_request.state == PullRequest.State.MERGED and fields.get("state") != PullRequest.State.MERGED
            ),
        )


def _author_fields(repository_id: Any, number: int, author_login: str) -> dict[str, Any]:
    """The author linked to ``author_login``; nothing (no query) when the login is the one stored."""
    existing = (
        PullRequest.objects.filter(repository_id=repository_id, number=number)
        .values_list("author_login", flat=True)
        .first()
    )
    if existing == author_login:
        return {}
    authors = User.objects.filter(github_username=author_login).values_list("pk", flat=True)
    return {"author_id": authors.first() if author_login else None}


def _check_state(state: str) -> None:
    if state not in DeploymentState.values:
        raise ValidationError(f"Unknown deployment state {state!r}.")


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
    _check_state(state)
    if refusal := _deployment_state_refusal(deployment, state, at):
        raise ValidationError(f"Cannot set the state: {refusal}.")
    with transaction.atomic(savepoint=False):
        _save_changes(deployment, _apply(deployment, _deployment_state_fields(deployment, state, at, error_message)))
    return deployment


def deployment_upsert(
    *,
    organization_id: Any,
    external_id: str,
    state: str,
    at: datetime,
    fields: Mapping[str, Any],
    error_message: str = "",
) -> tuple[Deployment, bool]:
    """Create or update the deployment the provider knows by ``external_id``.

    ``state`` is what an event from time ``at`` reports and ``fields`` the
    descriptive field values it carries. An event that would move the
    deployment back in its lifecycle, or that is older than the last one of
    the same rank, changes no state; it only fills fields still empty (the
    start time a late report of building brings). Raises ``ValidationError``
    for an unknown state. Returns ``(deployment, applied)``.
    """
    _check_state(state)
    with transaction.atomic(savepoint=False):
        deployment = Deployment.objects.select_for_update(of=("self",)).filter(external_id=external_id).first()
        if deployment is None:
            defaults = {
                "organization_id": organization_id,
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
