"""The write side: every change goes through the domain's service, as the console's and the worker's do.

So a write here fires the events the same change fires anywhere (the
services save through the models' ``state_events`` declarations), and is
recorded in the change history as the caller's, from the API.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import AwareDatetime

from agents.models import Agent, AgentTask
from agents.services import task_approve, task_cancel, task_enqueue, task_reject
from agents.states import IllegalTransition
from analytics.ingest import IngestError, record_events, record_metrics
from companyos.api import schemas
from companyos.api.access import acting_as_caller, organization_of, require_permission
from companyos.api.idempotency import idempotent
from companyos.api.problems import WRITE_ERRORS, Problem
from companyos.api.resources import with_last_event_id
from core.models import ApiToken, OrganizationMember
from core.services import api_token_create, api_token_revoke
from design.models import DesignComponent
from design.services import code_status_refusal, components_mark_outdated
from social.models import SocialPost
from social.services import post_cancel, post_schedule

# Service refusals that mean "not in this state" rather than "bad input".
CONFLICT_CODES = {"bad_status"}

router = Router()


def refusal(exc: ValidationError, *, field: str = "body") -> Problem:
    """A service's ValidationError as a 409 (a state that forbids it) or a 422 (the input)."""
    if isinstance(exc, IllegalTransition) or getattr(exc, "code", None) in CONFLICT_CODES:
        return Problem(409, " ".join(exc.messages))
    if hasattr(exc, "error_dict"):
        errors = [
            {"field": f"{field}.{name}", "message": message}
            for name, messages in exc.message_dict.items()
            for message in messages
        ]
    else:
        errors = [{"field": field, "message": message} for message in exc.messages]
    return Problem(422, " ".join(exc.messages), errors=errors)


def _as_read(written: models.Model) -> models.Model:
    """``written`` as a read shows it, with its ``last_event_id``: the event this write fired
    (or a later change's), so the client can tell that event from others on the websocket,
    as the list-then-subscribe handshake does (docs/api.md). One query, after the service's commit;
    if the object was deleted meanwhile, the answer is what was written."""
    return with_last_event_id(type(written)._default_manager.filter(pk=written.pk)).first() or written


def _write(request: HttpRequest, change: Callable[[], models.Model], *, field: str = "body") -> models.Model:
    """Make a service's ``change`` as the caller: its refusal becomes a :class:`Problem`, and the
    answer is the changed object as a read shows it."""
    with acting_as_caller(request):
        try:
            written = change()
        except ValidationError as exc:
            raise refusal(exc, field=field) from None
    return _as_read(written)


def _object(queryset, organization_lookup: str, organization_id: uuid.UUID, pk: uuid.UUID, label: str):
    found = queryset.filter(**{organization_lookup: organization_id}, pk=pk).first()
    if found is None:
        raise Problem(404, f"No {label} {pk} in this organization.")
    return found


# --- Agent tasks ------------------------------------------------------------


class TaskIn(Schema):
    agent: uuid.UUID
    task_type: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=300)
    input: dict[str, Any] = Field(default_factory=dict)
    priority: AgentTask.Priority = AgentTask.Priority.NORMAL
    requires_approval: bool = False
    scheduled_for: AwareDatetime | None = None
    max_attempts: int = Field(3, ge=1, le=100)


class RejectIn(Schema):
    reason: str = Field(min_length=1, max_length=2000)


def _task(request: HttpRequest, organization: str, task_id: uuid.UUID) -> AgentTask:
    require_permission(request, "agents.change_agenttask")
    org = organization_of(request, organization)
    return _object(AgentTask.objects, "organization_id", org.pk, task_id, "agent task")


@router.post("/orgs/{organization}/tasks/", response={201: schemas.AgentTaskOut, **WRITE_ERRORS}, tags=["agents"])
def create_task(request: HttpRequest, organization: str, body: TaskIn):
    """Queue a task for an agent of the organization (``agent.task.queued`` fires). Takes an ``Idempotency-Key``."""
    org = organization_of(request, organization)
    require_permission(request, "agents.add_agenttask")
    agent = Agent.objects.filter(organization_id=org.pk, pk=body.agent).first()
    if agent is None:
        raise Problem(
            422, "No such agent in this organization.", errors=[{"field": "body.agent", "message": "unknown"}]
        )

    def create() -> AgentTask:
        return _write(
            request, lambda: task_enqueue(created_by=request.user, **body.model_dump(exclude={"agent"}), agent=agent)
        )

    return idempotent(request, create, schema=schemas.AgentTaskOut)


def _task_action(request: HttpRequest, organization: str, task_id: uuid.UUID, action) -> AgentTask:
    task = _task(request, organization, task_id)
    return _write(request, lambda: action(task))


@router.post("/orgs/{organization}/tasks/{task_id}/cancel/", response={200: schemas.AgentTaskOut, **WRITE_ERRORS},
             tags=["agents"])  # fmt: skip
def cancel_task(request: HttpRequest, organization: str, task_id: uuid.UUID):
    """Cancel a task that has not finished (409 when it has)."""
    return _task_action(request, organization, task_id, lambda task: task_cancel(task=task, user=request.user))


@router.post("/orgs/{organization}/tasks/{task_id}/approve/", response={200: schemas.AgentTaskOut, **WRITE_ERRORS},
             tags=["agents"])  # fmt: skip
def approve_task(request: HttpRequest, organization: str, task_id: uuid.UUID):
    """Approve a task awaiting approval: it completes (409 when it is not awaiting approval)."""
    return _task_action(request, organization, task_id, lambda task: task_approve(task=task, user=request.user))


@router.post("/orgs/{organization}/tasks/{task_id}/reject/", response={200: schemas.AgentTaskOut, **WRITE_ERRORS},
             tags=["agents"])  # fmt: skip
def reject_task(request: HttpRequest, organization: str, task_id: uuid.UUID, body: RejectIn):
    """Reject a task awaiting approval with a reason: it fails."""
    return _task_action(
        request, organization, task_id, lambda task: task_reject(task=task, user=request.user, reason=body.reason)
    )


# --- Social posts -----------------------------------------------------------


class ScheduleIn(Schema):
    at: AwareDatetime


def _post(request: HttpRequest, organization: str, post_id: uuid.UUID) -> SocialPost:
    require_permission(request, "social.change_socialpost")
    org = organization_of(request, organization)
    return _object(SocialPost.objects, "account__organization_id", org.pk, post_id, "post")


@router.post("/orgs/{organization}/posts/{post_id}/schedule/", response={200: schemas.SocialPostOut, **WRITE_ERRORS},
             tags=["social"])  # fmt: skip
def schedule_post(request: HttpRequest, organization: str, post_id: uuid.UUID, body: ScheduleIn):
    """Schedule a post for a time in the future (``social.post.scheduled`` fires)."""
    post = _post(request, organization, post_id)
    return _write(request, lambda: post_schedule(post=post, at=body.at), field="body.at")


@router.post("/orgs/{organization}/posts/{post_id}/cancel/", response={200: schemas.SocialPostOut, **WRITE_ERRORS},
             tags=["social"])  # fmt: skip
def cancel_post(request: HttpRequest, organization: str, post_id: uuid.UUID):
    """Cancel a draft or scheduled post (409 otherwise)."""
    post = _post(request, organization, post_id)
    return _write(request, lambda: post_cancel(post=post))


# --- Design components ------------------------------------------------------


@router.post("/orgs/{organization}/components/{component_id}/outdated/",
             response={200: schemas.DesignComponentOut, **WRITE_ERRORS}, tags=["design"])  # fmt: skip
def mark_component_outdated(request: HttpRequest, organization: str, component_id: uuid.UUID):
    """Mark a component's code as behind its design (``design.component.outdated`` fires); 409 without code."""
    require_permission(request, "design.change_designcomponent")
    org = organization_of(request, organization)
    component = _object(
        DesignComponent.objects, "figma_file__organization_id", org.pk, component_id, "design component"
    )
    with acting_as_caller(request):
        marked = components_mark_outdated(components=[component], user=request.user)
    if not marked:
        why = code_status_refusal(component=component, code_status=DesignComponent.CodeStatus.OUTDATED)
        raise Problem(409, f"Not marked: {why or 'its code is already outdated'}.")
    return _as_read(marked[0])


# --- Ingest -----------------------------------------------------------------


class BatchIn(Schema):
    rows: list[dict[str, Any]] = Field(min_length=1)


def _ingest(request: HttpRequest, organization: str, body: BatchIn, *, permission: str, record) -> Status:
    org = organization_of(request, organization)
    require_permission(request, permission)
    if len(body.rows) > settings.API_INGEST_MAX_ROWS:
        raise Problem(413, f"A batch holds at most {settings.API_INGEST_MAX_ROWS} rows; split it.")
    errors = _foreign_rows(org.pk, body.rows)
    if errors:
        raise Problem(422, "Rows name another organization's objects; nothing was written.", errors=errors)
    rows = [{**row, "organization": org.pk} for row in body.rows]

    def write() -> schemas.IngestOut:
        try:
            with acting_as_caller(request), transaction.atomic():
                return schemas.IngestOut(rows=record(rows).rows)
        except IngestError as exc:
            invalid = len({error.index for error in exc.errors})  # a row can fail on several fields
            raise Problem(
                422, f"{invalid} invalid {'row' if invalid == 1 else 'rows'}; nothing was written.",
                errors=[{"index": e.index, "field": e.field or "row", "message": e.reason} for e in exc.errors],
            ) from None  # fmt: skip

    return idempotent(request, write, schema=schemas.IngestOut)


def _foreign_rows(organization_id: uuid.UUID, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose organization, actor user or actor agent is not this organization's."""
    errors = []
    users = {str(row.get("actor_user")) for row in rows if row.get("actor_user")}
    agents = {str(row.get("actor_agent")) for row in rows if row.get("actor_agent")}
    members = _ids(OrganizationMember.objects.filter(organization_id=organization_id), "user_id", users)
    own_agents = _ids(Agent.objects.filter(organization_id=organization_id), "id", agents)
    for index, row in enumerate(rows):
        if "organization" in row and str(row["organization"]) != str(organization_id):
            errors.append({"index": index, "field": "organization", "message": "not this organization (leave it out)"})
        if row.get("actor_user") and str(row["actor_user"]) not in members:
            errors.append({"index": index, "field": "actor_user", "message": "not a member of this organization"})
        if row.get("actor_agent") and str(row["actor_agent"]) not in own_agents:
            errors.append({"index": index, "field": "actor_agent", "message": "not an agent of this organization"})
    return errors


def _ids(queryset, column: str, wanted: set[str]) -> set[str]:
    valid = []
    for value in wanted:
        try:
            valid.append(uuid.UUID(value))
        except ValueError:
            continue  # the ingest reports it as "not a UUID"
    if not valid:
        return set()
    return {str(found) for found in queryset.filter(**{f"{column}__in": valid}).values_list(column, flat=True)}


@router.post("/orgs/{organization}/metrics/", response={201: schemas.IngestOut, **WRITE_ERRORS}, tags=["analytics"])
def ingest_metrics(request: HttpRequest, organization: str, body: BatchIn):
    """Write a batch of metric samples through the analytics ingest: all rows or none, each bad row named.

    Row keys: ``name``, ``value``, ``timestamp`` (with a timezone); optional ``unit``, ``dimensions``,
    ``source``. The organization is the path's. Takes an ``Idempotency-Key``.
    """
    return _ingest(request, organization, body, permission="analytics.add_metric", record=record_metrics)


@router.post("/orgs/{organization}/events/", response={201: schemas.IngestOut, **WRITE_ERRORS}, tags=["analytics"])
def ingest_events(request: HttpRequest, organization: str, body: BatchIn):
    """Write a batch of events through the analytics ingest: all rows or none, each bad row named.

    Row keys: ``event_type``, ``category``; optional ``source``, ``actor_user``, ``actor_agent``,
    ``subject_type``, ``subject_id``, ``payload``, ``occurred_at``. Takes an ``Idempotency-Key``.
    """
    return _ingest(request, organization, body, permission="analytics.add_event", record=record_events)


# --- One's own API tokens ---------------------------------------------------


class TokenIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    expires_at: AwareDatetime | None = None


@router.get("/tokens/", response={200: list[schemas.TokenOut], **WRITE_ERRORS}, tags=["core"])
def list_tokens(request: HttpRequest):
    """Your API tokens, newest first (never their secrets)."""
    return list(ApiToken.objects.filter(user_id=request.user.pk).order_by("-created_at")[: settings.API_MAX_TOKENS])


@router.post("/tokens/", response={201: schemas.TokenCreatedOut, **WRITE_ERRORS}, tags=["core"])
def create_token(request: HttpRequest, body: TokenIn):
    """Create an API token for yourself; ``token`` is its secret, shown this once. Takes an ``Idempotency-Key``."""
    if ApiToken.objects.filter(user_id=request.user.pk, revoked_at__isnull=True).count() >= settings.API_MAX_TOKENS:
        raise Problem(409, f"You hold {settings.API_MAX_TOKENS} unrevoked tokens; revoke one first.")

    def create() -> schemas.TokenCreatedOut:
        with acting_as_caller(request):
            try:
                token, raw = api_token_create(user=request.user, name=body.name, expires_at=body.expires_at)
            except ValidationError as exc:
                raise refusal(exc) from None
        return schemas.TokenCreatedOut(**schemas.TokenOut.from_orm(token).model_dump(), token=raw)

    return idempotent(request, create, schema=schemas.TokenCreatedOut, replayable=False)


@router.post("/tokens/{token_id}/revoke/", response={200: schemas.TokenOut, **WRITE_ERRORS}, tags=["core"])
def revoke_token(request: HttpRequest, token_id: uuid.UUID):
    """Revoke one of your tokens: requests and websocket connections with it are refused from now on."""
    token = ApiToken.objects.filter(user_id=request.user.pk, pk=token_id).first()
    if token is None:
        raise Problem(404, f"No token {token_id} of yours.")
    with acting_as_caller(request):
        return api_token_revoke(token=token)
