"""One case per registered ModelAdmin: how to make rows, search them and filter them.

Shared by the page, role, query-count and browser tests, so a model newly
registered in the admin fails ``test_every_registered_model_has_a_case``
until it gets a case here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from procrastinate.contrib.django import app as procrastinate_app
from procrastinate.contrib.django.models import ProcrastinateJob

from agents.models import Agent, AgentCollaboration, AgentTask
from agents.tests.factories import AgentCollaborationFactory, AgentFactory, AgentTaskFactory
from analytics.models import Event, Metric
from analytics.tests.factories import EventFactory, MetricFactory
from companyos.foundation.console.models import Change
from core.models import ApiToken, Organization, OrganizationMember, User
from core.tests.factories import ApiTokenFactory, OrganizationFactory, OrganizationMemberFactory, UserFactory
from design.models import DesignComponent, FigmaFile
from design.tests.factories import DesignComponentFactory, FigmaFileFactory
from development.models import Deployment, PullRequest, Repository
from development.tests.factories import DeploymentFactory, PullRequestFactory, RepositoryFactory
from integrations.models import Integration, Webhook, WebhookDelivery
from integrations.tests.factories import IntegrationFactory, WebhookFactory
from social.models import SocialAccount, SocialPost
from social.tests.factories import SocialAccountFactory, SocialPostFactory


def parents() -> SimpleNamespace:
    """One of each owner, shared by the rows the cases make."""
    organization = OrganizationFactory()
    integration = IntegrationFactory(organization=organization)
    repository = RepositoryFactory(organization=organization, integration=integration)
    agent = AgentFactory(organization=organization)
    return SimpleNamespace(
        organization=organization,
        user=UserFactory(),
        integration=integration,
        webhook=WebhookFactory(integration=integration),
        repository=repository,
        pull_request=PullRequestFactory(repository=repository),
        figma_file=FigmaFileFactory(organization=organization),
        account=SocialAccountFactory(organization=organization),
        agent=agent,
        task=AgentTaskFactory(organization=organization, agent=agent),
    )


def bulk(factory, n: int, **shared: Any) -> None:
    """``n`` rows in one INSERT (the triggers still record each row)."""
    factory._meta.model.objects.bulk_create(factory.build_batch(n, **shared))


def _members(p, n):
    users = UserFactory.create_batch(n)
    OrganizationMember.objects.bulk_create(
        [OrganizationMemberFactory.build(organization=p.organization, user=u) for u in users]
    )


def _collaborations(p, n):
    helpers = [AgentFactory(organization=p.organization, agent_type=Agent.AgentType.DESIGNER) for _ in range(n)]
    AgentCollaboration.objects.bulk_create(
        [AgentCollaborationFactory.build(task=p.task, initiator=p.agent, collaborator=h) for h in helpers]
    )


def _deliveries(p, n):
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                webhook=p.webhook,
                delivery_id=f"d-{index}-{timezone.now().timestamp()}",
                event="pull_request",
                action="opened",
                status=WebhookDelivery.Status.PROCESSED,
                response_code=202,
                signature_valid=True,
                payload={"number": index},
            )
            for index in range(n)
        ]
    )


def _changes(p, n):
    # Change rows are written by the triggers: n updates of one organization.
    for index in range(n):
        Organization.objects.filter(pk=p.organization.pk).update(name=f"Renamed {index}")


def _login_rows(model: type[models.Model], n: int, **fields: Any) -> None:
    # Rows django-axes writes for login attempts, one account and address each.
    stamp = timezone.now().timestamp()
    model.objects.bulk_create(
        [
            model(
                username=f"user-{i}-{stamp}@example.com",
                ip_address=f"192.0.2.{i % 250 + 1}",
                user_agent="pytest",
                path_info="/admin/login/",
                http_accept="text/html",
                **fields,
            )
            for i in range(n)
        ]
    )


def _jobs(p, n):
    # The worker's job rows, deferred as the application does (the model itself is read-only).
    for index in range(n):
        procrastinate_app.configure_task("companyos.tests.case", allow_unknown=True).defer(index=index)


@dataclasses.dataclass(frozen=True)
class Case:
    model: type[models.Model]
    make: Callable[[SimpleNamespace, int], None]
    # A search term that finds ``obj``, and a filter querystring that keeps it.
    search: Callable[[Any], str]
    filter: Callable[[Any], str]

    @property
    def id(self) -> str:
        return self.model._meta.label_lower

    def url(self, suffix: str = "", obj: models.Model | None = None) -> str:
        meta = self.model._meta
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        return f"{base}{obj.pk}/{suffix}" if obj is not None else f"{base}{suffix}"


CASES = [
    Case(
        Group,
        lambda p, n: Group.objects.bulk_create(
            [Group(name=f"team-{i}-{timezone.now().timestamp()}") for i in range(n)]
        ),
        lambda o: o.name,
        lambda o: "",
    ),
    Case(User, lambda p, n: bulk(UserFactory, n), lambda o: o.email, lambda o: f"role__exact={o.role}"),
    Case(Organization, lambda p, n: bulk(OrganizationFactory, n), lambda o: o.slug, lambda o: f"plan__exact={o.plan}"),
    Case(
        OrganizationMember, _members, lambda o: o.user.email, lambda o: f"organization__id__exact={o.organization_id}"
    ),
    Case(
        ApiToken,
        lambda p, n: ApiTokenFactory.create_batch(n, user=p.user),
        lambda o: o.prefix,
        lambda o: "revoked_at__isempty=1",
    ),
    Case(
        Integration,
        lambda p, n: bulk(IntegrationFactory, n, organization=p.organization),
        lambda o: o.external_account_id,
        lambda o: f"service__exact={o.service}",
    ),
    Case(
        Webhook,
        lambda p, n: bulk(WebhookFactory, n, integration=p.integration),
        lambda o: o.name,
        lambda o: "is_active__exact=1",
    ),
    Case(WebhookDelivery, _deliveries, lambda o: o.delivery_id, lambda o: f"status__exact={o.status}"),
    Case(
        Repository,
        lambda p, n: bulk(RepositoryFactory, n, organization=p.organization, integration=p.integration),
        lambda o: o.full_name,
        lambda o: f"organization__id__exact={o.organization_id}",
    ),
    Case(
        PullRequest,
        lambda p, n: bulk(PullRequestFactory, n, repository=p.repository),
        lambda o: o.head_branch,
        lambda o: f"state__exact={o.state}",
    ),
    Case(
        Deployment,
        lambda p, n: bulk(DeploymentFactory, n, organization=p.organization, repository=p.repository),
        lambda o: o.external_id,
        lambda o: f"state__exact={o.state}",
    ),
    Case(
        FigmaFile,
        lambda p, n: bulk(FigmaFileFactory, n, organization=p.organization),
        lambda o: o.name,
        lambda o: f"editor_type__exact={o.editor_type}",
    ),
    Case(
        DesignComponent,
        lambda p, n: bulk(DesignComponentFactory, n, figma_file=p.figma_file),
        lambda o: o.name,
        lambda o: f"kind__exact={o.kind}",
    ),
    Case(
        SocialAccount,
        lambda p, n: bulk(SocialAccountFactory, n, organization=p.organization),
        lambda o: o.handle,
        lambda o: f"platform__exact={o.platform}",
    ),
    Case(
        SocialPost,
        lambda p, n: bulk(SocialPostFactory, n, account=p.account),
        lambda o: o.content.split()[0],
        lambda o: f"status__exact={o.status}",
    ),
    Case(
        Agent,
        lambda p, n: bulk(AgentFactory, n, organization=p.organization),
        lambda o: o.slug,
        lambda o: f"agent_type__exact={o.agent_type}",
    ),
    Case(
        AgentTask,
        lambda p, n: bulk(AgentTaskFactory, n, organization=p.organization, agent=p.agent),
        lambda o: o.title,
        lambda o: f"status__exact={o.status}",
    ),
    Case(AgentCollaboration, _collaborations, lambda o: o.task.title, lambda o: f"kind__exact={o.kind}"),
    Case(
        Event,
        lambda p, n: bulk(EventFactory, n, organization=p.organization),
        lambda o: str(o.pk),
        lambda o: f"organization__id__exact={o.organization_id}",
    ),
    Case(
        Metric,
        lambda p, n: bulk(MetricFactory, n, organization=p.organization),
        lambda o: str(o.pk),
        lambda o: f"organization__id__exact={o.organization_id}",
    ),
    Case(Change, _changes, lambda o: str(o.object_id), lambda o: f"operation__exact={o.operation}"),
    # Login throttling (django-axes) and two-factor devices (django-otp): their own admins.
    Case(
        AccessAttempt,
        lambda p, n: _login_rows(AccessAttempt, n, failures_since_start=1, get_data="", post_data=""),
        lambda o: o.username,
        lambda o: f"path_info={o.path_info}",
    ),
    Case(AccessLog, lambda p, n: _login_rows(AccessLog, n), lambda o: o.username, lambda o: f"path_info={o.path_info}"),
    Case(
        AccessFailureLog,
        lambda p, n: _login_rows(AccessFailureLog, n, locked_out=False),
        lambda o: o.username,
        lambda o: "locked_out__exact=0",
    ),
    Case(
        TOTPDevice,
        lambda p, n: TOTPDevice.objects.bulk_create(
            [TOTPDevice(user=UserFactory(), name=f"phone {i}", confirmed=True) for i in range(n)]
        ),
        lambda o: o.user.email,
        lambda o: "confirmed__exact=1",
    ),
    # The worker's jobs: Procrastinate's own read-only admin.
    Case(ProcrastinateJob, _jobs, lambda o: o.task_name, lambda o: f"status__exact={o.status}"),
]

# Written only by the system (logs, history): nobody has an add page.
NO_ADD = {Event, Metric, Change, WebhookDelivery, AccessAttempt, AccessLog, AccessFailureLog, ProcrastinateJob}
# Read-only for everyone: no change either.
NO_CHANGE = {Event, Metric, Change, ProcrastinateJob}
