"""Agents, tasks and collaborations: constraints, generated columns, deletion rules."""

import datetime as dt

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db.models import F
from django.utils import timezone

from agents.models import Agent, AgentCollaboration, AgentTask
from agents.tests.factories import AgentCollaborationFactory, AgentFactory, AgentTaskFactory
from core.tests.factories import UserFactory
from core.tests.utils import violates
from development.tests.factories import PullRequestFactory

pytestmark = pytest.mark.django_db


class TestAgent:
    def test_slug_is_unique_per_organization(self):
        agent = AgentFactory()
        with violates("agents_agent_slug_unique"):
            AgentFactory(organization=agent.organization, slug=agent.slug)
        AgentFactory(slug=agent.slug)  # another organization may reuse it

    def test_agent_type_check(self):
        with violates("agents_agent_agent_type_valid"):
            AgentFactory(agent_type="oracle")

    def test_max_concurrent_tasks_is_positive(self):
        with violates("agents_agent_concurrency_positive"):
            AgentFactory(max_concurrent_tasks=0)

    def test_success_rate_and_average_duration_are_computed_by_the_database(self):
        agent = AgentFactory()
        agent.refresh_from_db()
        assert (agent.success_rate, agent.avg_duration_ms) == (0.0, None)
        # Counters only ever move in SQL, so concurrent workers cannot lose an update.
        Agent.objects.filter(pk=agent.pk).update(
            tasks_completed=F("tasks_completed") + 3,
            tasks_failed=F("tasks_failed") + 1,
            total_duration_ms=F("total_duration_ms") + 9_000,
        )
        agent.refresh_from_db()
        assert agent.success_rate == pytest.approx(0.75)
        assert agent.avg_duration_ms == 3_000

    def test_capabilities_and_config_round_trip(self):
        config = {"limits": {"files": 50}, "tone": "précis"}
        agent = AgentFactory(capabilities=["code_review", "security_review"], config=config)
        agent = Agent.objects.get(pk=agent.pk)
        assert agent.capabilities == ["code_review", "security_review"]
        assert agent.config == config


class TestAgentTask:
    def test_status_check(self):
        with violates("agents_task_status_valid"):
            AgentTaskFactory(status="paused")

    def test_priority_check(self):
        with violates("agents_task_priority_valid"):
            AgentTaskFactory(priority=7)

    def test_max_attempts_is_positive(self):
        with violates("agents_task_max_attempts_positive"):
            AgentTaskFactory(max_attempts=0)

    def test_a_running_task_has_started_at(self):
        with violates("agents_task_running_has_started_at"):
            AgentTaskFactory(
                status="running", started_at=None, worker_id="w1", lease_expires_at=timezone.now(), attempts=1
            )

    def test_a_completed_task_has_completed_at(self):
        with violates("agents_task_completed_has_completed_at"):
            AgentTaskFactory(status="completed", started_at=timezone.now(), attempts=1)

    def test_a_task_cannot_complete_before_it_started(self):
        now = timezone.now()
        with violates("agents_task_completes_after_start"):
            AgentTaskFactory(status="completed", started_at=now, completed_at=now - dt.timedelta(seconds=1), attempts=1)

    def test_a_target_id_needs_a_target_type(self):
        with violates("agents_task_target_complete"):
            AgentTaskFactory(target_object_id=PullRequestFactory().pk)

    def test_a_target_type_needs_a_target_id(self):
        with violates("agents_task_target_complete"):
            AgentTaskFactory(target_content_type=ContentType.objects.get_for_model(AgentTask))

    def test_attempts_stay_within_max_attempts(self):
        with violates("agents_task_attempts_within_max"):
            AgentTaskFactory(status="failed", attempts=4, max_attempts=3)

    def test_a_queued_task_has_an_attempt_left(self):
        with violates("agents_task_queued_has_attempt_left"):
            AgentTaskFactory(status="queued", attempts=3, max_attempts=3)

    def test_a_running_task_holds_a_lease(self):
        with violates("agents_task_lease_iff_running"):
            AgentTaskFactory(status="running", started_at=timezone.now(), attempts=1, worker_id="w1")

    def test_only_a_running_task_holds_a_lease(self):
        with violates("agents_task_lease_iff_running"):
            AgentTaskFactory(status="queued", lease_expires_at=timezone.now())

    def test_completed_at_only_when_finished(self):
        with violates("agents_task_completed_at_when_finished"):
            AgentTaskFactory(status="queued", completed_at=timezone.now())

    def test_awaiting_approval_requires_approval(self):
        with violates("agents_task_awaiting_requires_approval"):
            AgentTaskFactory(status="awaiting_approval", requires_approval=False)

    def test_approved_at_only_on_a_completed_approval_task(self):
        with violates("agents_task_approved_when_completed"):
            AgentTaskFactory(status="queued", requires_approval=True, approved_at=timezone.now())

    def test_a_rejection_reason_only_on_a_failed_task(self):
        with violates("agents_task_rejected_when_failed"):
            AgentTaskFactory(status="queued", rejection_reason="Not on brand.")

    def test_the_target_points_at_any_object(self):
        pull_request = PullRequestFactory()
        task = AgentTaskFactory(target=pull_request)
        assert AgentTask.objects.get(pk=task.pk).target == pull_request

    def test_input_and_output_jsonb_round_trip(self):
        task = AgentTaskFactory(input={"diff": {"files": ["a.py"], "ß": None}})
        task.output = {"verdict": "approve", "comments": [{"line": 3, "text": "👍"}]}
        task.save(update_fields=["output"])
        task = AgentTask.objects.get(pk=task.pk)
        assert task.input == {"diff": {"files": ["a.py"], "ß": None}}
        assert task.output == {"verdict": "approve", "comments": [{"line": 3, "text": "👍"}]}

    def test_deleting_the_agent_deletes_its_tasks_and_their_collaborations(self):
        collaboration = AgentCollaborationFactory()
        collaboration.task.agent.delete()
        assert not AgentTask.objects.filter(pk=collaboration.task_id).exists()
        assert not AgentCollaboration.objects.filter(pk=collaboration.pk).exists()

    def test_deleting_the_organization_deletes_agents_and_tasks(self):
        task = AgentTaskFactory()
        task.organization.delete()
        assert not Agent.objects.filter(pk=task.agent_id).exists()
        assert not AgentTask.objects.filter(pk=task.pk).exists()

    def test_deleting_people_or_the_parent_keeps_the_task(self):
        creator, approver = UserFactory(), UserFactory()
        parent = AgentTaskFactory()
        task = AgentTaskFactory(
            organization=parent.organization,
            agent=parent.agent,
            parent_task=parent,
            created_by=creator,
            approved_by=approver,
        )
        creator.delete()
        approver.delete()
        parent.delete()
        task.refresh_from_db()
        assert (task.created_by, task.approved_by, task.parent_task) == (None, None, None)


class TestAgentCollaboration:
    def test_an_agent_does_not_collaborate_with_itself(self):
        task = AgentTaskFactory()
        with violates("agents_collab_distinct_agents"):
            AgentCollaborationFactory(task=task, initiator=task.agent, collaborator=task.agent)

    def test_one_collaboration_per_task_and_pair(self):
        collaboration = AgentCollaborationFactory()
        with violates("agents_collab_unique"):
            AgentCollaborationFactory(
                task=collaboration.task, initiator=collaboration.initiator, collaborator=collaboration.collaborator
            )

    def test_kind_check(self):
        with violates("agents_collab_kind_valid"):
            AgentCollaborationFactory(kind="gossip")

    def test_status_check(self):
        with violates("agents_collab_status_valid"):
            AgentCollaborationFactory(status="ignored")

    def test_messages_jsonb_list_round_trips(self):
        messages = [{"from": "a", "text": "¿Puedes revisar?"}, {"from": "b", "text": "はい", "refs": [1, 2]}]
        collaboration = AgentCollaborationFactory(messages=messages)
        assert AgentCollaboration.objects.get(pk=collaboration.pk).messages == messages

    def test_deleting_the_child_task_keeps_the_collaboration(self):
        collaboration = AgentCollaborationFactory()
        child = AgentTaskFactory(organization=collaboration.task.organization, agent=collaboration.collaborator)
        collaboration.child_task = child
        collaboration.save(update_fields=["child_task"])
        child.delete()
        collaboration.refresh_from_db()
        assert collaboration.child_task is None

    def test_deleting_the_collaborator_deletes_the_collaboration(self):
        collaboration = AgentCollaborationFactory()
        collaboration.collaborator.delete()
        assert not AgentCollaboration.objects.filter(pk=collaboration.pk).exists()
        assert AgentTask.objects.filter(pk=collaboration.task_id).exists()
