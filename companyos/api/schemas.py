"""What the API answers with: one schema per model, generated from its fields.

Secrets never appear: integrations are shown without ``credentials`` and
``config``, agents without ``config``, tokens without their hash. Each
object of a list or a detail carries ``last_event_id``, the id of the newest
stored event about it (null when there is none): see docs/api.md for the
list-then-subscribe handshake.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from ninja import ModelSchema, Schema
from ninja.orm import register_field

from agents.models import Agent, AgentCollaboration, AgentTask
from analytics.models import Event, Metric
from core.models import ApiToken, Organization, OrganizationMember
from design.models import DesignComponent, FigmaFile
from development.models import Deployment, PullRequest, Repository
from integrations.models import Integration
from social.models import SocialAccount, SocialPost

Item = TypeVar("Item")

# ninja maps a JSONField to an object; ours also hold lists (a collaboration's
# messages, an agent's capabilities): any JSON value, as stored.
register_field("JSONField", Any)


class Page(Schema, Generic[Item]):
    """One page of a list.

    ``event_position`` is the organization's newest event id, read before
    the page: subscribe with ``since`` set to it and nothing is missed.
    """

    items: list[Item]
    next_cursor: str | None
    event_position: UUID | None


class WithLastEvent(Schema):
    last_event_id: UUID | None = None


class OrganizationOut(ModelSchema, WithLastEvent):
    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "plan", "logo_url", "is_active", "created_at", "updated_at"]


class MemberOut(ModelSchema, WithLastEvent):
    email: str
    name: str

    class Meta:
        model = OrganizationMember
        fields = ["id", "user", "role", "joined_at", "created_at", "updated_at"]

    @staticmethod
    def resolve_email(member: OrganizationMember) -> str:
        return member.user.email

    @staticmethod
    def resolve_name(member: OrganizationMember) -> str:
        return member.user.name


class IntegrationOut(ModelSchema, WithLastEvent):
    class Meta:
        model = Integration
        fields = [
            "id", "service", "name", "status", "scopes", "external_account_id", "last_synced_at", "last_error",
            "created_by", "created_at", "updated_at",
        ]  # fmt: skip


class RepositoryOut(ModelSchema, WithLastEvent):
    class Meta:
        model = Repository
        exclude = ["organization", "metadata"]


class PullRequestOut(ModelSchema, WithLastEvent):
    class Meta:
        model = PullRequest
        exclude = ["metadata"]


class DeploymentOut(ModelSchema, WithLastEvent):
    class Meta:
        model = Deployment
        exclude = ["organization", "metadata"]


class FigmaFileOut(ModelSchema, WithLastEvent):
    class Meta:
        model = FigmaFile
        exclude = ["organization", "metadata"]


class DesignComponentOut(ModelSchema, WithLastEvent):
    class Meta:
        model = DesignComponent
        exclude = ["metadata"]


class SocialAccountOut(ModelSchema, WithLastEvent):
    class Meta:
        model = SocialAccount
        exclude = ["organization", "metadata"]


class SocialPostOut(ModelSchema, WithLastEvent):
    class Meta:
        model = SocialPost
        exclude = ["metadata"]


class AgentOut(ModelSchema, WithLastEvent):
    success_rate: float | None
    avg_duration_ms: float | None

    class Meta:
        model = Agent
        exclude = ["organization", "config", "success_rate", "avg_duration_ms"]


class AgentTaskOut(ModelSchema, WithLastEvent):
    class Meta:
        model = AgentTask
        exclude = ["organization", "lease_expires_at", "worker_id", "target"]


class CollaborationOut(ModelSchema, WithLastEvent):
    class Meta:
        model = AgentCollaboration
        fields = "__all__"


class EventOut(ModelSchema):
    class Meta:
        model = Event
        exclude = ["organization", "updated_at"]


class MetricOut(ModelSchema):
    class Meta:
        model = Metric
        exclude = ["organization", "updated_at"]


class MetricPointOut(Schema):
    bucket: datetime
    count: int
    sum: float
    min: float
    max: float
    avg: float


class EventCountOut(Schema):
    bucket: datetime
    event_type: str
    count: int


class TokenOut(ModelSchema):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "expires_at", "last_used_at", "revoked_at", "created_at"]


class TokenCreatedOut(TokenOut):
    token: str


class IngestOut(Schema):
    rows: int


JSONObject = dict[str, Any]
