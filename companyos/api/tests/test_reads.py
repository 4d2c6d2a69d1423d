"""Lists and details: scoping, pagination, filters, last_event_id, and the isolation of organizations."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.models import Event
from companyos.api.resources import RESOURCES
from companyos.api.tests.conftest import bearer, member_with_token
from development.models import Deployment
from development.services import deployment_set_state
from development.tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db

PATHS = [resource.path for resource in RESOURCES]


def list_url(org, path: str, **query) -> str:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return f"/api/v1/orgs/{org.slug}/{path}/" + (f"?{params}" if params else "")


def query_for(path: str, obj) -> dict[str, str]:
    return {"name": obj.name} if path == "metrics" else {}


@pytest.mark.parametrize("path", PATHS)
def test_every_list_and_detail_shows_the_organizations_object(client, org_a, objects_a, token_a, path):
    obj = objects_a[path]
    listed = client.get(list_url(org_a, path, **query_for(path, obj)), **bearer(token_a))
    assert listed.status_code == 200, listed.content
    assert str(obj.pk) in {item["id"] for item in listed.json()["items"]}
    detail = client.get(f"/api/v1/orgs/{org_a.pk}/{path}/{obj.pk}/", **bearer(token_a))
    assert detail.status_code == 200, detail.content
    assert detail.json()["id"] == str(obj.pk)


@pytest.mark.parametrize("path", PATHS)
def test_a_token_of_organization_a_gets_404_for_every_object_of_b(client, org_a, org_b, objects_b, token_a, path):
    """Table-driven over the routes: B's objects are invisible through A's path and through B's."""
    obj = objects_b[path]
    for org in (org_a, org_b):
        answer = client.get(f"/api/v1/orgs/{org.slug}/{path}/{obj.pk}/", **bearer(token_a))
        assert answer.status_code == 404, (org.slug, answer.content)
        assert answer["Content-Type"] == "application/problem+json"
    assert client.get(list_url(org_b, path, **query_for(path, obj)), **bearer(token_a)).status_code == 404
    listed = client.get(list_url(org_a, path, **query_for(path, obj)), **bearer(token_a))
    assert str(obj.pk) not in {item["id"] for item in listed.json()["items"]}


def test_removing_a_membership_takes_effect_on_the_next_request(client, org_a, objects_a, token_a):
    url = list_url(org_a, "deployments")
    assert client.get(url, **bearer(token_a)).status_code == 200
    token_a.user.memberships.all().delete()
    assert client.get(url, **bearer(token_a)).status_code == 404


def test_no_token_a_bad_token_and_a_revoked_one_are_401(client, org_a, objects_a, token_a):
    url = list_url(org_a, "deployments")
    assert client.get(url).status_code == 401
    answer = client.get(url, HTTP_AUTHORIZATION="Bearer cos_nonsense")
    assert answer.status_code == 401
    assert answer.json()["title"] == "Not authenticated"
    assert answer["WWW-Authenticate"].startswith("Bearer")


def test_the_admin_session_reads_too(client, org_a, objects_a, token_a):
    client.force_login(token_a.user)
    assert client.get(list_url(org_a, "deployments")).status_code == 200


def test_pages_follow_the_cursor_newest_first_without_repeats(client, org_a, token_a):
    DeploymentFactory.create_batch(7, organization=org_a)
    seen, cursor = [], None
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = client.get(list_url(org_a, "deployments", **query), **bearer(token_a)).json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    expected = list(
        Deployment.objects.filter(organization=org_a).order_by("-created_at", "-id").values_list("id", flat=True)
    )
    assert seen == [str(pk) for pk in expected]


def test_a_forged_cursor_is_a_400(client, org_a, token_a):
    answer = client.get(list_url(org_a, "deployments", cursor="bm9wZQ"), **bearer(token_a))
    assert answer.status_code == 400
    other_ordering = client.get(list_url(org_a, "deployments", ordering="created_at", limit=1), **bearer(token_a))
    assert other_ordering.status_code == 200


def test_filters_narrow_the_list(client, org_a, token_a):
    ready = DeploymentFactory(organization=org_a, state=Deployment.State.QUEUED, environment="production")
    DeploymentFactory(organization=org_a, environment="preview")
    body = client.get(list_url(org_a, "deployments", environment="production"), **bearer(token_a)).json()
    assert [item["id"] for item in body["items"]] == [str(ready.pk)]
    assert client.get(list_url(org_a, "deployments", state="weather"), **bearer(token_a)).status_code == 422


def test_objects_carry_their_newest_event_and_pages_the_organizations_position(client, org_a, token_a):
    deployment = DeploymentFactory(organization=org_a)  # publishes deployment.created
    deployment.state = Deployment.State.ERROR
    deployment.save(update_fields=["state"])  # publishes deployment.error
    newest_about_it = Event.objects.filter(subject_id=deployment.pk).order_by("-id").first()
    body = client.get(list_url(org_a, "deployments"), **bearer(token_a)).json()
    assert body["items"][0]["last_event_id"] == str(newest_about_it.pk)
    assert body["event_position"] == str(Event.objects.filter(organization=org_a).order_by("-id").first().pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("view", ["list", "detail"])
def test_a_change_committed_while_a_page_is_read_shows_in_both_state_and_last_event_id_or_neither(
    client, org_a, token_a, view
):
    """A client skips the events up to ``last_event_id``: were it newer than the state shown,
    the change would be lost to it (docs/api.md, the list-then-subscribe handshake)."""
    deployment = DeploymentFactory(organization=org_a, state=Deployment.State.QUEUED, started_at=None, ready_at=None)
    changed = threading.Event()

    def finish_it() -> None:
        try:
            deployment_set_state(deployment=Deployment.objects.get(pk=deployment.pk), state="error", at=timezone.now())
        finally:
            connection.close()

    def commit_a_change_after_the_rows_are_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not changed.is_set() and 'FROM "development_deployment"' in sql:
            changed.set()
            writer = threading.Thread(target=finish_it)
            writer.start()
            writer.join()
        return result

    detail_url = f"/api/v1/orgs/{org_a.slug}/deployments/{deployment.pk}/"
    url = list_url(org_a, "deployments") if view == "list" else detail_url
    with connection.execute_wrapper(commit_a_change_after_the_rows_are_read):
        body = client.get(url, **bearer(token_a)).json()
    item = body["items"][0] if view == "list" else body

    assert changed.is_set()
    assert item["state"] == Deployment.State.QUEUED
    assert Event.objects.get(pk=item["last_event_id"]).payload["state"] == Deployment.State.QUEUED


def test_a_page_costs_the_same_queries_at_any_size(client, org_a, token_a):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(list_url(org_a, "deployments", limit=5), **bearer(token_a)).status_code == 200
        return len(captured)

    DeploymentFactory.create_batch(2, organization=org_a)
    queries()  # the token's first use records last_used_at
    small = queries()
    DeploymentFactory.create_batch(20, organization=org_a)
    assert queries() == small


def test_a_viewer_reads(client, org_a, objects_a):
    viewer = member_with_token(org_a, role="viewer")
    assert client.get(list_url(org_a, "tasks"), **bearer(viewer)).status_code == 200
