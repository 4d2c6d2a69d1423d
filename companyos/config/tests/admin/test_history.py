"""The trigger-recorded change history: every path, who and from where, retention."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from companyos.foundation.console.history import history_source
from companyos.foundation.console.models import Change
from core.models import Organization
from core.tests.factories import OrganizationFactory
from integrations.models import Webhook

pytestmark = pytest.mark.django_db


def changes_of(obj, operation="update"):
    return list(Change.objects.filter(object_id=obj.pk, operation=operation).order_by("id"))


def test_insert_update_delete_are_recorded_with_a_diff():
    organization = OrganizationFactory(name="Acme")
    (insert,) = changes_of(organization, "insert")
    assert insert.after["name"] == "Acme" and insert.before is None

    organization.name = "Acme Corp"
    organization.save()
    (update,) = changes_of(organization)
    assert (update.before, update.after) == ({"name": "Acme"}, {"name": "Acme Corp"})

    pk = organization.pk
    organization.delete()
    (delete,) = Change.objects.filter(object_id=pk, operation="delete")
    assert delete.before["name"] == "Acme Corp" and delete.after is None


def test_bulk_update_and_raw_sql_are_recorded():
    first, second = OrganizationFactory(plan="free"), OrganizationFactory(plan="free")

    Organization.objects.filter(pk__in=[first.pk, second.pk]).update(plan="team")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE core_organization SET is_active = false WHERE id = %s", [first.pk])

    assert [c.after for c in changes_of(second)] == [{"plan": "team"}]
    bulk, raw = changes_of(first)
    assert bulk.after == {"plan": "team"}
    # Outside any application context: no user, no source.
    assert (raw.after, raw.source, raw.user_id) == ({"is_active": False}, "", None)


def test_a_save_that_changes_nothing_records_nothing():
    organization = OrganizationFactory()
    organization.save()
    assert changes_of(organization) == []


def test_worker_and_shell_sources(user):
    organization = OrganizationFactory()
    with history_source("worker", worker_id="w-1"):
        Organization.objects.filter(pk=organization.pk).update(plan="enterprise")
    (change,) = changes_of(organization)
    assert (change.source, change.context, change.context_id is not None) == ("worker", {"worker_id": "w-1"}, True)

    with pytest.raises(ValueError, match="Unknown history source"):
        history_source("nowhere")


def test_admin_edit_records_user_source_and_url(rows, admin_client, staff_admin):
    agent = rows.agent
    url = f"/admin/agents/agent/{agent.pk}/change/"
    page = admin_client.get(url)
    data = {**page.context["adminform"].form.initial, "name": "Renamed reviewer", "capabilities": "code_review"}
    data = {key: value for key, value in data.items() if value is not None and not isinstance(value, dict | list)}
    data.update(
        config="{}", organization=str(agent.organization_id), **{"tasks-TOTAL_FORMS": "0", "tasks-INITIAL_FORMS": "0"}
    )

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    (change,) = changes_of(agent)
    assert change.after["name"] == "Renamed reviewer"
    assert (change.user, change.source, change.context["url"]) == (staff_admin, "admin", url)
    history = admin_client.get(f"/admin/agents/agent/{agent.pk}/history/").content.decode()
    assert "Renamed reviewer" in history and staff_admin.email in history


def test_traffic_counters_alone_are_not_history(rows):
    Webhook.objects.filter(pk=rows.webhook.pk).update(delivery_count=5, last_delivery_status=202)
    assert changes_of(rows.webhook) == []


def test_prune_history_keeps_the_retention_window():
    organization = OrganizationFactory()
    Change.objects.filter(object_id=organization.pk).update(at=timezone.now() - dt.timedelta(days=400))
    recent = OrganizationFactory()

    call_command("prune_history", days=365, verbosity=0)

    assert not Change.objects.filter(object_id=organization.pk).exists()
    assert Change.objects.filter(object_id=recent.pk).exists()


def test_history_is_searchable_across_objects(rows, admin_client):
    OrganizationFactory(name="Findable")
    response = admin_client.get("/admin/console/change/", {"model": "core.organization", "operation__exact": "insert"})
    assert response.status_code == 200
    listed = response.context["cl"].result_list
    assert listed and all(c.model == "core.organization" and c.operation == "insert" for c in listed)
    by_object = admin_client.get("/admin/console/change/", {"q": str(rows.agent.pk)})
    assert {c.object_id for c in by_object.context["cl"].result_list} == {rows.agent.pk}
    assert admin_client.get("/admin/console/change/", {"q": "not an id"}).status_code == 200


def test_changes_applied_from_a_webhook_delivery_say_so(client):
    from development.models import PullRequest
    from integrations.models import Integration, WebhookDelivery
    from integrations.tests.factories import IntegrationFactory, WebhookFactory
    from integrations.tests.webhook_helpers import github_payload, post_github

    webhook = WebhookFactory(integration=IntegrationFactory(service=Integration.Service.GITHUB), events=[])

    post_github(client, webhook, "pull_request", github_payload("pull_request/opened.payload.json"))

    (change,) = changes_of(PullRequest.objects.get(), "insert")
    assert (change.source, change.context["delivery"]) == ("webhook", str(WebhookDelivery.objects.get().pk))


def test_event_search_finds_an_event_or_the_events_about_an_object(rows, admin_client):
    from analytics.tests.factories import EventFactory

    about_task = EventFactory(organization=rows.organization, subject_type="agents.agenttask", subject_id=rows.task.pk)
    other = EventFactory(organization=rows.organization)

    def found(term):
        return set(admin_client.get("/admin/analytics/event/", {"q": term}).context["cl"].result_list)

    about = found(str(rows.task.pk))
    assert about_task in about and {event.subject_id for event in about} == {rows.task.pk}
    assert found(str(other.pk)) == {other}
    assert found("deployment") == set()
