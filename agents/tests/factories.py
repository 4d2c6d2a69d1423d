"""Factories for agents, their tasks and collaborations.

``Agent.success_rate`` and ``avg_duration_ms`` are computed by PostgreSQL:
never pass them.
"""

import factory
from factory.django import DjangoModelFactory

from agents.models import Agent, AgentCollaboration, AgentTask
from core.tests.factories import OrganizationFactory


class AgentFactory(DjangoModelFactory):
    class Meta:
        model = Agent

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Reviewer {n}")
    slug = factory.Sequence(lambda n: f"reviewer-{n}")
    agent_type = Agent.AgentType.CODE_REVIEWER
    description = "Reviews pull requests for correctness and style."
    model = "claude-sonnet-4-5"
    system_prompt = "You are a careful senior code reviewer."
    config = factory.LazyFunction(lambda: {"temperature": 0.2})
    capabilities = factory.LazyFunction(lambda: ["code_review"])


class AgentTaskFactory(DjangoModelFactory):
    """A queued task for an agent of the same organization."""

    class Meta:
        model = AgentTask

    organization = factory.SubFactory(OrganizationFactory)
    agent = factory.SubFactory(AgentFactory, organization=factory.SelfAttribute("..organization"))
    task_type = "review_pull_request"
    title = factory.Sequence(lambda n: f"Review pull request #{n + 1}")
    input = factory.LazyFunction(lambda: {"pull_request": 1})
    status = AgentTask.Status.QUEUED


class AgentCollaborationFactory(DjangoModelFactory):
    class Meta:
        model = AgentCollaboration

    task = factory.SubFactory(AgentTaskFactory)
    initiator = factory.LazyAttribute(lambda o: o.task.agent)
    collaborator = factory.SubFactory(
        AgentFactory,
        organization=factory.SelfAttribute("..task.organization"),
        agent_type=Agent.AgentType.DESIGNER,
    )
    kind = AgentCollaboration.Kind.CONSULT
    messages = factory.LazyFunction(lambda: [{"from": "initiator", "text": "Could you check the UI changes?"}])
