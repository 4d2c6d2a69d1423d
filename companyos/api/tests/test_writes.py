"""Writes: through the services (so events fire), roles, problems, idempotency, rate limits, ingest."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import AgentTask
from analytics.models import Event, Metric
from companyos.api.tests.conftest import bearer, member_with_token
from companyos.api.writes import _as_read
from core.models import ApiToken
from design.models import DesignComponent
from social.models import SocialPost

pytestmark = pytest.mark.django_db


def post(client, url: str, token, body=None, **headers):
    return client.post(url, json.dumps(body or {}), content_type="application/json", **bearer(token), **headers)


def test_creating_a_task_queues_it_and_fires_its_event(client, org_a, objects_a, token_a):
    agent = objects_a["agents"]
    answer = post(
        client,
        f"/api/v1/orgs/{org_a.slug}/tasks/",
        token_a,
        {"agent": str(agent.pk), "task_type": "echo", "title": "Say hi", "input": {"text": "hi"}},
    )
    assert answer.status_code == 201, answer.content
    task = AgentTask.objects.get(pk=answer.json()["id"])
    assert (task.status, task.created_by_id) == (AgentTask.Status.QUEUED, token_a.user.pk)
    queued = Event.objects.get(subject_id=task.pk, event_type="agent.task.queued")
    # The answer names the event it fired, as a read would: the client skips it on the websocket.
    assert answer.json()["last_event_id"] == str(queued.pk)


def test_an_idempotency_key_creates_once_and_refuses_another_body(client, org_a, objects_a, token_a):
    body = {"agent": str(objects_a["agents"].pk), "task_type": "echo", "title": "Once"}
    url = f"/api/v1/orgs/{org_a.slug}/tasks/"
    first = post(client, url, token_a, body, HTTP_IDEMPOTENCY_KEY="k-1")
    again = post(client, url, token_a, body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert AgentTask.objects.filter(title="Once").count() == 1
    other = post(client, url, token_a, {**body, "title": "Twice"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 422


def test_a_task_of_another_organizations_agent_is_refused(client, org_a, objects_b, token_a):
    answer = post(
        client,
        f"/api/v1/orgs/{org_a.slug}/tasks/",
        token_a,
        {"agent": str(objects_b["agents"].pk), "task_type": "echo", "title": "x"},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "body.agent"


def test_cancel_then_cancel_again_is_a_conflict(client, org_a, objects_a, token_a):
    url = f"/api/v1/orgs/{org_a.slug}/tasks/{objects_a['tasks'].pk}/cancel/"
    cancelled = post(client, url, token_a).json()
    assert cancelled["status"] == AgentTask.Status.CANCELLED
    assert cancelled["last_event_id"] == str(Event.objects.get(event_type="agent.task.cancelled").pk)
    again = post(client, url, token_a)
    assert again.status_code == 409
    assert again["Content-Type"] == "application/problem+json"


def test_approve_and_reject_need_a_task_awaiting_approval(client, org_a, objects_a, token_a):
    task = objects_a["tasks"]
    assert post(client, f"/api/v1/orgs/{org_a.slug}/tasks/{task.pk}/approve/", token_a).status_code == 409
    AgentTask.objects.filter(pk=task.pk).update(status=AgentTask.Status.AWAITING_APPROVAL, requires_approval=True)
    refused = post(client, f"/api/v1/orgs/{org_a.slug}/tasks/{task.pk}/reject/", token_a, {"reason": ""})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"].startswith("body")
    rejected = post(client, f"/api/v1/orgs/{org_a.slug}/tasks/{task.pk}/reject/", token_a, {"reason": "Wrong"})
    assert rejected.json()["status"] == AgentTask.Status.FAILED


def test_a_viewer_and_a_member_without_a_console_role_change_nothing(client, org_a, objects_a):
    for role in ("viewer", None):
        token = member_with_token(org_a, role=role)
        answer = post(client, f"/api/v1/orgs/{org_a.slug}/tasks/{objects_a['tasks'].pk}/cancel/", token)
        assert answer.status_code == 403
    assert AgentTask.objects.get(pk=objects_a["tasks"].pk).status == AgentTask.Status.QUEUED


def test_an_operator_schedules_and_cancels_posts(client, org_a, objects_a):
    operator = member_with_token(org_a, role="operator")
    url = f"/api/v1/orgs/{org_a.slug}/posts/{objects_a['posts'].pk}"
    past = post(client, f"{url}/schedule/", operator, {"at": (timezone.now() - timedelta(hours=1)).isoformat()})
    assert past.status_code == 422
    naive = post(client, f"{url}/schedule/", operator, {"at": "2030-01-01T10:00:00"})
    assert naive.status_code == 422
    # The schema's refusal and the service's name the field alike, as the client wrote it.
    assert [error["field"] for error in past.json()["errors"] + naive.json()["errors"]] == ["body.at", "body.at"]
    at = (timezone.now() + timedelta(hours=1)).isoformat()
    scheduled = post(client, f"{url}/schedule/", operator, {"at": at}).json()
    assert scheduled["status"] == SocialPost.Status.SCHEDULED
    assert scheduled["last_event_id"] == str(Event.objects.get(event_type="social.post.scheduled").pk)
    canceled = post(client, f"{url}/cancel/", operator).json()
    assert canceled["status"] == SocialPost.Status.CANCELED
    assert canceled["last_event_id"] == str(Event.objects.get(event_type="social.post.canceled").pk)
    assert post(client, f"{url}/cancel/", operator).status_code == 409


def test_marking_a_component_outdated_fires_its_event_once(client, org_a, objects_a, token_a):
    component = objects_a["components"]
    url = f"/api/v1/orgs/{org_a.slug}/components/{component.pk}/outdated/"
    marked = post(client, url, token_a).json()
    assert marked["code_status"] == DesignComponent.CodeStatus.OUTDATED
    outdated = Event.objects.get(subject_id=component.pk, event_type="design.component.outdated")
    assert marked["last_event_id"] == str(outdated.pk)
    assert post(client, url, token_a).status_code == 409


def test_ingest_writes_a_batch_or_names_each_bad_row(client, org_a, objects_b, token_a):
    url = f"/api/v1/orgs/{org_a.slug}/metrics/"
    now = timezone.now().isoformat()
    good = {"name": "api.latency", "value": 12.5, "timestamp": now}
    bad = post(client, url, token_a, {"rows": [good, {"name": "api.latency", "value": "x", "timestamp": now}]})
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{"index": 1, "field": "value", "message": "not a number"}]
    assert bad.json()["detail"] == "1 invalid row; nothing was written."
    twice = post(client, url, token_a, {"rows": [good, {"name": "", "value": "x", "timestamp": now}, {"value": 1}]})
    assert len(twice.json()["errors"]) > 2  # each bad field of each bad row
    assert twice.json()["detail"] == "2 invalid rows; nothing was written."
    assert not Metric.objects.filter(organization=org_a, name="api.latency").exists()
    assert post(client, url, token_a, {"rows": [good, good]}).json() == {"rows": 2}
    assert Metric.objects.filter(organization=org_a, name="api.latency").count() == 2
    foreign = post(
        client,
        f"/api/v1/orgs/{org_a.slug}/events/",
        token_a,
        {"rows": [{"event_type": "x", "category": "core", "actor_agent": str(objects_b["agents"].pk)}]},
    )
    assert foreign.status_code == 422
    assert foreign.json()["errors"][0]["field"] == "actor_agent"


def test_ingest_cannot_forge_an_objects_change_nor_become_its_last_event(client, org_a, objects_a, token_a):
    deployment = objects_a["deployments"]
    url = f"/api/v1/orgs/{org_a.slug}/deployments/{deployment.pk}/"
    last_change = client.get(url, **bearer(token_a)).json()["last_event_id"]
    stored = Event.objects.filter(subject_id=deployment.pk).count()
    about = {"category": "development", "subject_type": "development.deployment", "subject_id": str(deployment.pk)}

    forged = post(
        client, f"/api/v1/orgs/{org_a.slug}/events/", token_a, {"rows": [{"event_type": "deployment.ready", **about}]}
    )
    assert forged.status_code == 422
    assert forged.json()["errors"] == [
        {
            "index": 0,
            "field": "event_type",
            "message": "'deployment.…' events are published by the platform's own changes, not ingested",
        }
    ]
    assert Event.objects.filter(subject_id=deployment.pk).count() == stored

    # The stream's own event about the deployment is stored, but the websocket never delivers it: a client
    # skipping events up to the deployment's last_event_id must not skip by it.
    assert post(
        client, f"/api/v1/orgs/{org_a.slug}/events/", token_a, {"rows": [{"event_type": "deploy.viewed", **about}]}
    ).json() == {"rows": 1}
    assert Event.objects.filter(subject_id=deployment.pk).count() == stored + 1
    assert client.get(url, **bearer(token_a)).json()["last_event_id"] == last_change


def test_tokens_are_created_shown_once_and_revoked_by_their_owner_only(client, org_a, token_a):
    created = post(client, "/api/v1/tokens/", token_a, {"name": "CI"}, HTTP_IDEMPOTENCY_KEY="tok")
    assert created.status_code == 201
    raw = created.json()["token"]
    assert client.get("/api/v1/tokens/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    replay = post(client, "/api/v1/tokens/", token_a, {"name": "CI"}, HTTP_IDEMPOTENCY_KEY="tok")
    assert replay.status_code == 409
    assert raw not in replay.content.decode()
    other = member_with_token(org_a)
    assert post(client, f"/api/v1/tokens/{created.json()['id']}/revoke/", other).status_code == 404
    assert post(client, f"/api/v1/tokens/{created.json()['id']}/revoke/", token_a).json()["revoked_at"]
    assert ApiToken.objects.get(pk=created.json()["id"]).revoked_at is not None
    assert client.get("/api/v1/tokens/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_bodies_over_the_limit_are_413_and_bad_json_400(client, settings, org_a, token_a):
    settings.API_MAX_BODY_BYTES = 100
    url = "/api/v1/tokens/"
    assert post(client, url, token_a, {"name": "x" * 200}).status_code == 413
    broken = client.post(url, "{nope", content_type="application/json", **bearer(token_a))
    assert broken.status_code == 400
    assert broken.json()["status"] == 400


@pytest.mark.usefixtures("rate_limit_window")
def test_the_rate_limit_answers_429_with_retry_after(client, settings, org_a, token_a):
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    answers = [client.get("/api/v1/orgs/", **bearer(token_a)) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert 1 <= int(answers[-1]["Retry-After"]) <= 60


def test_a_session_write_needs_the_csrf_token(org_a, objects_a, token_a):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(token_a.user)
    answer = browser.post(f"/api/v1/orgs/{org_a.slug}/tasks/{objects_a['tasks'].pk}/cancel/")
    assert answer.status_code == 403


def test_a_write_whose_object_is_deleted_before_it_is_read_back_answers_with_what_was_written(objects_a):
    """Read back after the commit, the object may be gone already: the answer is then the write's, not a 500."""
    post = objects_a["posts"]
    SocialPost.objects.filter(pk=post.pk).delete()

    assert _as_read(post) is post
