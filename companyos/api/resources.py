"""The read side: list and detail of every model a client needs, declared once each.

A :class:`Resource` names the model, how its rows reach their organization,
the orderings a list offers (each served by an index of the model, so a
page costs the same at any size), and the filters (model columns that those
indexes, or the table's own small size, serve). ``register`` turns each into
``GET /orgs/{organization}/<path>/`` and ``GET /orgs/{organization}/<path>/{id}/``.

A page costs a fixed number of queries whatever the table's size: the
membership, the organization's newest event id, and the page itself
(keyset, ``LIMIT n + 1``), each row with the id of its newest event (one
probe of ``event_subject_idx`` per row).
"""

# No `from __future__ import annotations`: django-ninja reads the generated
# views' annotations as objects.
import types
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from pydantic import AwareDatetime, create_model

from agents.models import Agent, AgentCollaboration, AgentTask
from analytics import selectors as analytics_selectors
from analytics.models import Category, Event, Metric
from companyos.api import schemas
from companyos.api.access import organization_of
from companyos.api.pagination import Ordering, page
from companyos.api.problems import COMMON_ERRORS, Problem
from companyos.foundation.events import declared_topics, of_topics
from core.models import Organization, OrganizationMember
from design.models import DesignComponent, FigmaFile
from development.models import Deployment, PullRequest, Repository
from integrations.models import Integration
from social.models import SocialAccount, SocialPost

NEWEST_FIRST = {"-created_at": Ordering(("created_at", "id")), "created_at": Ordering(("created_at", "id"), False)}
MAX_PAGE = 100


@dataclass(frozen=True)
class Resource:
    path: str
    model: type[Model]
    schema: type[Schema]
    # The lookup from the model to its organization's id.
    organization: str = "organization_id"
    orderings: dict[str, Ordering] = field(default_factory=lambda: NEWEST_FIRST)
    # Query parameter -> (type, lookup); a type without None makes the parameter required.
    filters: dict[str, tuple[Any, str]] = field(default_factory=dict)
    related: Sequence[str] = ()
    # Whether objects carry ``last_event_id`` (events and samples are not subjects of events).
    subject: bool = True

    def rows(self, organization_id: uuid.UUID) -> QuerySet:
        rows = self.model.objects.filter(**{self.organization: organization_id})
        if self.related:  # (select_related() with no names would join every non-null foreign key)
            rows = rows.select_related(*self.related)
        return with_last_event_id(rows) if self.subject else rows


def optional(kind: Any) -> Any:
    return kind | None


RESOURCES = [
    Resource("members", OrganizationMember, schemas.MemberOut, related=["user"],
             filters={"role": (optional(OrganizationMember.Role), "role")}),
    Resource("integrations", Integration, schemas.IntegrationOut,
             filters={"service": (optional(Integration.Service), "service"),
                      "status": (optional(Integration.Status), "status")}),
    Resource("repositories", Repository, schemas.RepositoryOut),
    # pr_open_idx serves one repository's open pull requests, newest first.
    Resource("pull-requests", PullRequest, schemas.PullRequestOut, organization="repository__organization_id",
             orderings={"-opened_at": Ordering(("opened_at", "id")), **NEWEST_FIRST},
             filters={"repository": (optional(uuid.UUID), "repository_id"),
                      "state": (optional(PullRequest.State), "state"),
                      "head_sha": (optional(str), "head_sha")}),
    # deploy_org_recent_idx serves the list; deploy_repo_env_idx a repository's, deploy_commit_idx a commit's.
    Resource("deployments", Deployment, schemas.DeploymentOut,
             filters={"repository": (optional(uuid.UUID), "repository_id"),
                      "environment": (optional(Deployment.Environment), "environment"),
                      "state": (optional(Deployment.State), "state"),
                      "commit_sha": (optional(str), "commit_sha")}),
    Resource("figma-files", FigmaFile, schemas.FigmaFileOut),
    Resource("components", DesignComponent, schemas.DesignComponentOut, organization="figma_file__organization_id",
             filters={"figma_file": (optional(uuid.UUID), "figma_file_id"),
                      "code_status": (optional(DesignComponent.CodeStatus), "code_status")}),
    Resource("social-accounts", SocialAccount, schemas.SocialAccountOut,
             filters={"platform": (optional(SocialAccount.Platform), "platform")}),
    # post_account_recent_idx serves an account's posts, newest first.
    Resource("posts", SocialPost, schemas.SocialPostOut, organization="account__organization_id",
             filters={"account": (optional(uuid.UUID), "account_id"),
                      "status": (optional(SocialPost.Status), "status")}),
    Resource("agents", Agent, schemas.AgentOut,
             filters={"agent_type": (optional(Agent.AgentType), "agent_type"),
                      "is_active": (optional(bool), "is_active")}),
    # task_org_recent_idx serves the list.
    Resource("tasks", AgentTask, schemas.AgentTaskOut,
             filters={"agent": (optional(uuid.UUID), "agent_id"),
                      "status": (optional(AgentTask.Status), "status")}),
    # collab_inbox_idx serves an agent's inbox (collaborator and status).
    Resource("collaborations", AgentCollaboration, schemas.CollaborationOut, organization="task__organization_id",
             filters={"collaborator": (optional(uuid.UUID), "collaborator_id"),
                      "status": (optional(AgentCollaboration.Status), "status")}),
    # event_org_id_idx serves id order (ids are UUIDv7: insertion order), event_org_recent_idx
    # occurred_at, event_org_type_idx one type; event_subject_idx the events of one object.
    Resource("events", Event, schemas.EventOut, subject=False,
             orderings={"-id": Ordering(("id",)), "id": Ordering(("id",), False),
                        "-occurred_at": Ordering(("occurred_at", "id"))},
             filters={"event_type": (optional(str), "event_type"),
                      "category": (optional(Category), "category"),
                      "subject_type": (optional(str), "subject_type"),
                      "subject_id": (optional(uuid.UUID), "subject_id")}),
    # metric_series_idx serves one series: the name is required.
    Resource("metrics", Metric, schemas.MetricOut, subject=False,
             orderings={"-timestamp": Ordering(("timestamp", "id")), "timestamp": Ordering(("timestamp", "id"), False)},
             filters={"name": (str, "name")}),
]  # fmt: skip


def newest_event_id(organization_id: uuid.UUID) -> uuid.UUID | None:
    """The organization's newest event id (``event_org_id_idx``, read backwards)."""
    return Event.objects.filter(organization_id=organization_id).order_by("-id").values_list("id", flat=True).first()


def with_last_event_id(rows: QuerySet) -> QuerySet:
    """``rows``, each with ``last_event_id``: the id of the newest event about it that the websocket delivers.

    Read in the rows' own statement, so from the same snapshot: a change that
    commits meanwhile shows in both the row and its ``last_event_id`` or in
    neither. (Read apart, a row could show the state before a change and the
    id of the change's event, and a client, which skips the events up to that
    id, would never see the change.) Only the topics' events count: an
    analytics event ingested about the object is neither delivered nor
    ordered with its changes, so a client skipping up to its id could skip a
    change.
    """
    about = Event.objects.filter(subject_type=rows.model._meta.label_lower, subject_id=OuterRef("pk"))
    newest = about.filter(of_topics(declared_topics())).order_by("-id")
    return rows.annotate(last_event_id=Subquery(newest.values("id")[:1]))


def list_query_schema(resource: Resource) -> type[Schema]:
    """The list's query parameters: filters, ordering, cursor and page size."""
    names = tuple(resource.orderings)
    fields: dict[str, Any] = {
        name: (kind, None if isinstance(kind, types.UnionType) else ...) for name, (kind, _) in resource.filters.items()
    }
    fields |= {
        "ordering": (Literal[names], names[0]),  # type: ignore[valid-type]
        "cursor": (str | None, Field(None, max_length=1000, description="next_cursor of the previous page.")),
        "limit": (int, Field(50, ge=1, le=MAX_PAGE)),
    }
    title = resource.path.title().replace("-", "")
    return create_model(f"{title}ListQuery", __base__=Schema, **fields)


def register(router: Router, resource: Resource) -> None:
    query_schema = list_query_schema(resource)
    page_schema = schemas.Page[resource.schema]
    name = resource.path.replace("-", "_")

    def list_view(request: HttpRequest, organization: str, query: Query[query_schema]):
        org = organization_of(request, organization)
        position = newest_event_id(org.pk)
        rows = resource.rows(org.pk).filter(
            **{
                lookup: getattr(query, key)
                for key, (_, lookup) in resource.filters.items()
                if getattr(query, key) is not None
            }
        )
        items, next_cursor = page(
            rows,
            name=query.ordering,
            ordering=resource.orderings[query.ordering],
            cursor=query.cursor,
            limit=query.limit,
        )
        return {"items": items, "next_cursor": next_cursor, "event_position": position}

    def detail_view(request: HttpRequest, organization: str, id: uuid.UUID):
        org = organization_of(request, organization)
        row = resource.rows(org.pk).filter(pk=id).first()
        if row is None:
            raise Problem(404, f"No {resource.model._meta.verbose_name} {id} in {org.slug}.")
        return row

    list_view.__name__, detail_view.__name__ = f"list_{name}", f"get_{name}"
    plural = resource.model._meta.verbose_name_plural
    router.get(
        f"/orgs/{{organization}}/{resource.path}/",
        response={200: page_schema, **COMMON_ERRORS},
        summary=f"List {plural}",
        description=f"Orderings: {', '.join(resource.orderings)} (the first is the default).",
        tags=[resource.model._meta.app_label],
    )(list_view)
    router.get(
        f"/orgs/{{organization}}/{resource.path}/{{id}}/",
        response={200: resource.schema, **COMMON_ERRORS},
        summary=f"Get one of the {plural}",
        tags=[resource.model._meta.app_label],
    )(detail_view)


def register_reads(router: Router) -> None:
    for resource in RESOURCES:
        register(router, resource)


# --- Rollup series (analytics.selectors: rollups for long ranges, raw rows for short ones) ----

MAX_BUCKETS = 10_000


class SeriesQuery(Schema):
    start: AwareDatetime
    end: AwareDatetime
    # Rollup buckets are 5 minutes and an hour: a series' bucket is a whole number of 5 minutes.
    bucket_seconds: int = Field(3600, ge=300, le=86400 * 31, multiple_of=300)


class MetricSeriesQuery(SeriesQuery):
    name: str = Field(min_length=1, max_length=200)


def _window(query: SeriesQuery) -> timedelta:
    bucket = timedelta(seconds=query.bucket_seconds)
    if not query.start < query.end:
        raise Problem(422, "start must be before end.", errors=[_error("end", "not after start")])
    if (query.end - query.start) / bucket > MAX_BUCKETS:
        raise Problem(422, f"At most {MAX_BUCKETS} buckets; widen the bucket or narrow the range.",
                      errors=[_error("bucket_seconds", "too many buckets")])  # fmt: skip
    return bucket


def _error(name: str, message: str) -> dict[str, str]:
    return {"field": f"query.{name}", "message": message}


def register_series(router: Router) -> None:
    """Before the lists' details, whose ``{id}`` would otherwise take ``series`` and ``counts``."""

    @router.get(
        "/orgs/{organization}/metrics/series/",
        response={200: list[schemas.MetricPointOut], **COMMON_ERRORS},
        tags=["analytics"],
    )
    def metric_series(request: HttpRequest, organization: str, query: Query[MetricSeriesQuery]):
        """One metric per bucket over [start, end); empty buckets are absent."""
        org = organization_of(request, organization)
        bucket = _window(query)
        points = analytics_selectors.metric_series(
            organization=org.pk, name=query.name, start=query.start, end=query.end, bucket=bucket
        )
        return [{**point._asdict(), "avg": point.avg} for point in points]

    @router.get(
        "/orgs/{organization}/events/counts/",
        response={200: list[schemas.EventCountOut], **COMMON_ERRORS},
        tags=["analytics"],
    )
    def event_counts(request: HttpRequest, organization: str, query: Query[SeriesQuery]):
        """Events per type and bucket over [start, end)."""
        org = organization_of(request, organization)
        bucket = _window(query)
        return analytics_selectors.event_counts(organization=org.pk, start=query.start, end=query.end, bucket=bucket)


def register_organizations(router: Router) -> None:
    """The caller's organizations: the entry point of every other path."""

    @router.get("/orgs/", response={200: list[schemas.OrganizationOut], **COMMON_ERRORS}, tags=["core"])
    def list_organizations(request: HttpRequest):
        """The active organizations you are a member of, by name."""
        return list(
            Organization.objects.filter(is_active=True, memberships__user_id=request.user.pk).order_by("name", "id")
        )

    @router.get("/orgs/{organization}/", response={200: schemas.OrganizationOut, **COMMON_ERRORS}, tags=["core"])
    def get_organization(request: HttpRequest, organization: str):
        """One of your organizations, by id or slug."""
        return organization_of(request, organization)
