"""Publishing: every event type fires from its state change, once, after commit only."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from agents.models import AgentTask
from agents.tests.factories import AgentTaskFactory
from analytics.models import Event
from companyos.foundation import events
from companyos.foundation.events import publish_state_change, topic_group
from core.tests.factories import OrganizationFactory
from development.models import Deployment, PullRequest
from development.tests.factories import DeploymentFactory, PullRequestFactory, RepositoryFactory
from social.models import SocialPost
from social.tests.factories import SocialPostFactory

NOW = timezone.now


def _building_deployment() -> Deployment:
    return DeploymentFactory(state=Deployment.State.BUILDING, ready_at=None)


def _set(obj, **values) -> None:
    for name, value in values.items():
        setattr(obj, name, value)
    obj.save()


def _run_task(task: AgentTask) -> None:
    _set(task, status="running", started_at=NOW(), lease_expires_at=NOW() + dt.timedelta(minutes=1), worker_id="w1")


def _running_task() -> AgentTask:
    task = AgentTaskFactory()
    _run_task(task)
    return task


def _finish(task: AgentTask, status: str) -> None:
    _set(task, status=status, completed_at=NOW(), lease_expires_at=None, worker_id="")


# (setup → the object, change → saves it, the events that change must publish)
CASES: dict[str, tuple[Callable[[], Any], Callable[[Any], None], list[str]]] = {
    "deployment.created": (
        RepositoryFactory,
        lambda repo: Deployment.objects.create(
            organization=repo.organization, repository=repo, external_id="dpl_x", project_name="web"
        ),
        ["deployment.created"],
    ),
    "deployment.ready": (_building_deployment, lambda d: _set(d, state="ready", ready_at=NOW()), ["deployment.ready"]),
    "deployment.error": (
        _building_deployment,
        lambda d: _set(d, state="error", error_message="boom"),
        ["deployment.error"],
    ),
    "deployment.canceled": (_building_deployment, lambda d: _set(d, state="canceled"), ["deployment.canceled"]),
    "pull_request.opened": (
        RepositoryFactory,
        lambda repo: PullRequestFactory(repository=repo),
        ["pull_request.opened"],
    ),
    "pull_request.opened (reopened)": (
        lambda: PullRequestFactory(state="closed", closed_at=NOW()),
        lambda pr: _set(pr, state="open", closed_at=None),
        ["pull_request.opened"],
    ),
    "pull_request.updated": (PullRequestFactory, lambda pr: _set(pr, title="A better title"), ["pull_request.updated"]),
    "pull_request.updated (labels in place)": (
        PullRequestFactory,
        lambda pr: (pr.labels.append("security"), pr.save()),
        ["pull_request.updated"],
    ),
    "pull_request.merged": (
        PullRequestFactory,
        lambda pr: _set(pr, state="merged", merged_at=NOW(), closed_at=NOW()),
        ["pull_request.merged"],
    ),
    "pull_request.closed": (
        PullRequestFactory,
        lambda pr: _set(pr, state="closed", closed_at=NOW()),
        ["pull_request.closed"],
    ),
    "agent.task.queued": (OrganizationFactory, lambda org: AgentTaskFactory(organization=org), ["agent.task.queued"]),
    "agent.task.started": (AgentTaskFactory, _run_task, ["agent.task.started"]),
    "agent.task.completed": (_running_task, lambda t: _finish(t, "completed"), ["agent.task.completed"]),
    "agent.task.failed": (_running_task, lambda t: _finish(t, "failed"), ["agent.task.failed"]),
    "agent.task.cancelled": (
        AgentTaskFactory,
        lambda t: _set(t, status="cancelled", completed_at=NOW()),
        ["agent.task.cancelled"],
    ),
    "agent.task.awaiting_approval": (
        lambda: AgentTaskFactory(requires_approval=True),
        lambda t: _set(t, status="awaiting_approval"),
        ["agent.task.awaiting_approval"],
    ),
    "social.post.scheduled": (
        SocialPostFactory,
        lambda p: _set(p, status="scheduled", scheduled_at=NOW() + dt.timedelta(hours=1)),
        ["social.post.scheduled"],
    ),
    "social.post.publishing": (
        lambda: SocialPostFactory(status="scheduled", scheduled_at=NOW()),
        lambda p: _set(p, status="publishing"),
        ["social.post.publishing"],
    ),
    "social.post.published": (
        SocialPostFactory,
        lambda p: _set(p, status="published", published_at=NOW(), external_id="1"),
        ["social.post.published"],
    ),
    "social.post.canceled": (
        lambda: SocialPostFactory(status="scheduled", scheduled_at=NOW() + dt.timedelta(hours=1)),
        lambda p: _set(p, status="canceled"),
        ["social.post.canceled"],
    ),
    "social.post.failed": (
        SocialPostFactory,
        lambda p: _set(p, status="failed", error_message="rate limited"),
        ["social.post.failed"],
    ),
}
ELEVEN = {
    "deployment.created", "deployment.ready", "deployment.error", "pull_request.opened", "pull_request.updated",
    "pull_request.merged", "agent.task.started", "agent.task.completed", "agent.task.failed",
    "social.post.scheduled", "social.post.published",
}  # fmt: skip


def test_the_eleven_types_of_events_md_are_all_covered():
    assert set(CASES) >= ELEVEN


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(CASES))
def test_event_fires_once_from_its_state_change_after_commit(case, django_capture_on_commit_callbacks):
    setup, change, expected = CASES[case]
    obj = setup()
    before = set(Event.objects.values_list("id", flat=True))

    with django_capture_on_commit_callbacks() as callbacks:
        change(obj)
    new = Event.objects.exclude(id__in=before).order_by("id")
    assert [e.event_type for e in new] == expected
    assert len(callbacks) == len(expected)  # one websocket send per event, after commit

    # Saving again without a change publishes nothing.
    instance = _subject(new.last())
    with django_capture_on_commit_callbacks() as callbacks:
        instance.save()
    assert callbacks == []
    assert Event.objects.exclude(id__in=before).count() == len(expected)


def _subject(event: Event):
    from django.apps import apps

    return apps.get_model(event.subject_type).objects.get(pk=event.subject_id)


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(CASES))
def test_event_does_not_fire_on_rollback(case, django_capture_on_commit_callbacks):
    setup, change, _ = CASES[case]
    obj = setup()
    before = Event.objects.count()

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        change(obj)
        assert Event.objects.count() > before  # written in the transaction...
        raise RuntimeError("roll back")
    assert Event.objects.count() == before  # ...and gone with it
    assert callbacks == []


@pytest.mark.django_db
def test_envelope_and_payload(django_capture_on_commit_callbacks):
    deployment = _building_deployment()
    deployment.refresh_from_db()
    with django_capture_on_commit_callbacks():
        _set(deployment, state="ready", ready_at=NOW())
    event = Event.objects.get(subject_id=deployment.pk, event_type="deployment.ready")
    assert event.category == "development"
    assert event.source == "vercel"
    assert event.subject_type == "development.deployment"
    assert event.organization_id == deployment.organization_id
    assert event.payload["id"] == str(deployment.pk)
    assert event.payload["state"] == "ready"
    assert event.payload["previous_state"] == "building"
    assert event.payload["ready_at"].endswith("Z")
    envelope = events.envelope_event(event)
    assert envelope["id"] == str(event.id)
    assert envelope["organization"] == str(deployment.organization_id)
    assert envelope["subject"] == {"type": "development.deployment", "id": str(deployment.pk)}
    assert envelope["occurred_at"].endswith("Z")


@pytest.mark.django_db
def test_update_fields_limit_what_counts_as_changed(django_capture_on_commit_callbacks):
    deployment = _building_deployment()
    deployment.state = "error"
    deployment.error_message = "boom"
    with django_capture_on_commit_callbacks() as callbacks:
        deployment.save(update_fields=["error_message"])  # the state is not written
    assert callbacks == []
    with django_capture_on_commit_callbacks() as callbacks:
        deployment.save(update_fields=["state"])
    assert len(callbacks) == 1
    assert Event.objects.filter(subject_id=deployment.pk, event_type="deployment.error").count() == 1


@pytest.mark.django_db
def test_pull_request_update_lists_changed_fields_and_ignores_closed_ones(django_capture_on_commit_callbacks):
    pr = PullRequestFactory()
    _set(pr, title="New", head_sha="a" * 40)
    updated = Event.objects.get(subject_id=pr.pk, event_type="pull_request.updated")
    assert updated.payload["changed"] == ["head_sha", "title"]

    _set(pr, state="closed", closed_at=NOW())
    _set(pr, title="Edited after closing")
    assert Event.objects.filter(subject_id=pr.pk, event_type="pull_request.updated").count() == 1


@pytest.mark.django_db
def test_created_finished_deployment_publishes_created_then_its_state(django_capture_on_commit_callbacks):
    deployment = DeploymentFactory()  # created ready
    types = list(Event.objects.filter(subject_id=deployment.pk).order_by("id").values_list("event_type", flat=True))
    assert types == ["deployment.created", "deployment.ready"]


@pytest.mark.django_db
def test_deferred_tracked_field_is_still_compared():
    deployment = _building_deployment()
    loaded = Deployment.objects.only("id", "organization").get(pk=deployment.pk)
    loaded.state = "canceled"  # never loaded: the save reads the stored value first
    loaded.save()
    assert Event.objects.filter(subject_id=deployment.pk, event_type="deployment.canceled").count() == 1


@pytest.mark.django_db
def test_bulk_update_bypasses_save_and_publishes_through_the_same_function():
    task = AgentTaskFactory()
    before = Event.objects.count()
    written = {"status": "running", "started_at": NOW(), "lease_expires_at": NOW() + dt.timedelta(minutes=1)}
    AgentTask.objects.filter(pk=task.pk).update(**written, worker_id="w")
    assert Event.objects.count() == before  # the documented QuerySet.update() caveat
    for name, value in {**written, "worker_id": "w"}.items():  # the instance holds what the UPDATE wrote
        setattr(task, name, value)
    publish_state_change(task, previous="queued")
    event = Event.objects.filter(subject_id=task.pk).latest("id")
    assert (event.event_type, event.source, event.category) == ("agent.task.started", "agent", "agents")
    assert (event.actor_agent_id, event.payload["previous_status"]) == (task.agent_id, "queued")
    publish_state_change(task, previous="running")  # no change: nothing
    task.save()  # the published change counts as saved: no second event
    assert Event.objects.filter(subject_id=task.pk, event_type="agent.task.started").count() == 1


@pytest.mark.django_db
def test_nothing_fires_while_fixtures_load(tmp_path):
    deployment = _building_deployment()
    pr = PullRequestFactory()
    post = SocialPostFactory(status="scheduled", scheduled_at=NOW())
    task = AgentTaskFactory()
    fixture = tmp_path / "objects.json"
    with fixture.open("w") as out:
        call_command("dumpdata", "development", "social", "agents", stdout=out)
    # Change states in the fixture, then load it over the rows: raw saves.
    text = fixture.read_text().replace('"state": "building"', '"state": "canceled"')
    fixture.write_text(text.replace('"status": "queued"', '"status": "pending"'))
    before = Event.objects.count()
    call_command("loaddata", str(fixture), verbosity=0)
    deployment.refresh_from_db()
    task.refresh_from_db()
    assert (deployment.state, task.status) == ("canceled", "pending")  # the fixture changed them...
    assert Event.objects.count() == before  # ...silently
    assert {pr.pk, post.pk} <= set(PullRequest.objects.values_list("pk", flat=True)) | set(
        SocialPost.objects.values_list("pk", flat=True)
    )


@pytest.mark.django_db
def test_a_model_without_a_declaration_cannot_publish():
    with pytest.raises(TypeError, match="declares no events"):
        publish_state_change(OrganizationFactory(), previous=None)


@pytest.mark.django_db(transaction=True)
def test_committed_event_reaches_the_topic_group_on_the_real_channel_layer():
    deployment = _building_deployment()

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(topic_group(deployment.organization_id, "deployment"), channel)
        await layer.group_add(topic_group(deployment.organization_id, "agent.task"), channel)

        def change():
            with transaction.atomic():
                _set(deployment, state="ready", ready_at=NOW())

        await database_sync_to_async(change)()
        message = await asyncio.wait_for(layer.receive(channel), 5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.5)  # once, and nothing else
        await layer.group_discard(topic_group(deployment.organization_id, "deployment"), channel)
        return message

    message = asyncio.run(scenario())
    event = Event.objects.get(subject_id=deployment.pk, event_type="deployment.ready")
    assert message["type"] == "events.deliver"
    ((event_id, text),) = message["events"]
    assert event_id == str(event.id)
    assert f'"id":"{event.id}"' in text


@pytest.mark.django_db(transaction=True)
def test_a_down_channel_layer_never_fails_the_change(settings, caplog):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # Nothing listens on port 1: every send fails at once.
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    events._failures._last = -1e9  # the failure log is rate-limited per process
    deployment = _building_deployment()
    with caplog.at_level(logging.ERROR, logger="companyos.foundation.events"):
        _set(deployment, state="ready", ready_at=NOW())
        _set(deployment, state="error", error_message="x")
    deployment.refresh_from_db()
    assert deployment.state == "error"
    assert (
        Event.objects.filter(subject_id=deployment.pk, event_type__in=["deployment.ready", "deployment.error"]).count()
        == 2
    )
    logged = [r for r in caplog.records if "not sent" in r.getMessage()]
    assert len(logged) == 1  # the second failure within the interval is counted, not logged
