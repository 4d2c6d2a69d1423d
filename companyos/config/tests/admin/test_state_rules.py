"""States change in the admin under the same rules, and publish the same events, as every other path."""

import pytest

from analytics.models import Event
from companyos.config.tests.admin.test_actions import act
from companyos.config.tests.admin.test_form_errors import posted
from design.models import DesignComponent
from design.tests.factories import DesignComponentFactory
from development.models import Deployment
from development.tests.factories import DeploymentFactory, PullRequestFactory

pytestmark = pytest.mark.django_db

DEPLOYMENTS = "/admin/development/deployment/"


def edit(client, obj, **changes):
    url = f"/admin/{obj._meta.app_label}/{obj._meta.model_name}/{obj.pk}/change/"
    return client.post(url, {**posted(client.get(url)), **changes})


def test_editing_a_components_code_status_to_outdated_publishes_its_event(rows, admin_client):
    component = DesignComponentFactory(figma_file=rows.figma_file, code_status=DesignComponent.CodeStatus.SYNCED)

    response = edit(admin_client, component, code_status="outdated")

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    event = Event.objects.get(subject_id=component.pk)
    assert (event.event_type, event.category, event.organization_id) == (
        "design.component.outdated",
        "design",
        rows.figma_file.organization_id,
    )
    assert event.payload == {
        "name": component.name,
        "figma_file": str(rows.figma_file.pk),
        "previous_code_status": "synced",
    }


def test_a_component_without_code_cannot_be_made_outdated_by_hand(rows, admin_client):
    component = DesignComponentFactory(figma_file=rows.figma_file)  # not started: no code yet

    response = edit(admin_client, component, code_status="outdated")

    assert response.status_code == 200
    assert "no code to fall behind" in str(response.context["adminform"].form.errors["code_status"])
    component.refresh_from_db()
    assert component.code_status == "not_started"
    assert not Event.objects.filter(subject_id=component.pk).exists()


def test_a_posted_deployment_state_cannot_move_it_backwards(rows, admin_client):
    deployment = DeploymentFactory(organization=rows.organization)  # ready
    before = set(Event.objects.filter(subject_id=deployment.pk).values_list("id", flat=True))

    response = edit(admin_client, deployment, state="building", project_name="renamed")

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    deployment.refresh_from_db()
    assert (deployment.state, deployment.project_name) == ("ready", "renamed")  # the field is read-only
    assert set(Event.objects.filter(subject_id=deployment.pk).values_list("id", flat=True)) == before


def test_the_set_state_action_follows_the_webhooks_rule(rows, admin_client):
    queued = DeploymentFactory(
        organization=rows.organization, state=Deployment.State.QUEUED, started_at=None, ready_at=None
    )
    ready = DeploymentFactory(organization=rows.organization)

    form, _ = act(admin_client, DEPLOYMENTS, "set_state", [queued])
    assert form.status_code == 200 and b"Set the state" in form.content
    _, messages = act(admin_client, DEPLOYMENTS, "set_state", [queued, ready], apply="1", state="building")

    assert messages[0] == "Updated 1 deployment."
    assert messages[1] == f"Not updated: {ready}: Cannot set the state: a ready deployment cannot go back to building."
    queued.refresh_from_db()
    ready.refresh_from_db()
    assert (queued.state, ready.state) == ("building", "ready")
    assert queued.started_at is not None  # the service's bookkeeping, as for a webhook

    act(admin_client, DEPLOYMENTS, "set_state", [queued], apply="1", state="error", error_message="Out of memory")

    event = Event.objects.get(subject_id=queued.pk, event_type="deployment.error")
    assert (event.payload["previous_state"], event.payload["error_message"]) == ("building", "Out of memory")


def test_a_pull_requests_state_is_read_only(rows, admin_client):
    pull_request = PullRequestFactory()

    response = edit(admin_client, pull_request, state="closed")

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    pull_request.refresh_from_db()
    assert pull_request.state == "open"
