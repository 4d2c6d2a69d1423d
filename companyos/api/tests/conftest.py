"""An organization with one object of every kind the API serves, and a token of its owner."""

from __future__ import annotations

import pytest

from agents.tests.factories import AgentCollaborationFactory, AgentTaskFactory
from analytics.tests.factories import EventFactory, MetricFactory
from companyos.foundation.console.roles import ADMIN
from companyos.foundation.tests.support import give_role
from core.models import OrganizationMember
from core.tests.factories import ApiTokenFactory, OrganizationFactory, OrganizationMemberFactory, UserFactory
from design.models import DesignComponent
from design.tests.factories import DesignComponentFactory
from development.tests.factories import DeploymentFactory, PullRequestFactory
from integrations.tests.factories import IntegrationFactory
from social.tests.factories import SocialPostFactory


def populate(organization) -> dict[str, object]:
    """One object per list path (``/orgs/{organization}/<path>/``) of ``organization``."""
    pull_request = PullRequestFactory(repository__organization=organization)
    collaboration = AgentCollaborationFactory(task__organization=organization)
    component = DesignComponentFactory(
        figma_file__organization=organization, code_status=DesignComponent.CodeStatus.SYNCED
    )
    deployment = DeploymentFactory(organization=organization, repository=pull_request.repository)
    post = SocialPostFactory(account__organization=organization)
    return {
        "members": OrganizationMemberFactory(organization=organization),
        "integrations": IntegrationFactory(organization=organization),
        "repositories": pull_request.repository,
        "pull-requests": pull_request,
        "deployments": deployment,
        "figma-files": component.figma_file,
        "components": component,
        "social-accounts": post.account,
        "posts": post,
        "agents": collaboration.task.agent,
        "tasks": AgentTaskFactory(organization=organization, agent=collaboration.task.agent),
        "collaborations": collaboration,
        "events": EventFactory(organization=organization),
        "metrics": MetricFactory(organization=organization),
    }


def member_with_token(organization, *, role: str | None = ADMIN):
    """A member of ``organization`` in the console role ``role`` (None: no role), and their token."""
    user = UserFactory() if role is None else give_role(UserFactory(), role)
    OrganizationMemberFactory(organization=organization, user=user, role=OrganizationMember.Role.OWNER)
    return ApiTokenFactory(user=user)


@pytest.fixture
def org_a(db):
    return OrganizationFactory()


@pytest.fixture
def org_b(db):
    return OrganizationFactory()


@pytest.fixture
def objects_a(org_a):
    return populate(org_a)


@pytest.fixture
def objects_b(org_b):
    return populate(org_b)


@pytest.fixture
def token_a(org_a):
    return member_with_token(org_a)


def bearer(token) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token.raw}"}
