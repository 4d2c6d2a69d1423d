"""The trigger-recorded change history: every path, who and from where, retention."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection
from django.http import HttpResponse
from django.utils import timezone

from companyos.foundation.console.history import (
    HistoryMiddleware,
    change_context,
    history_source,
    history_triggers,
    tracked_models,
)
from companyos.foundation.console.models import Change
from companyos.foundation.tests.support import FormFields
from core.models import Organization
from core.tests.factories import OrganizationFactory
from integrations.models import Integration, Webhook

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


# Committed rows: the webhook view reads on connections of its own (integrations/webhooks/database.py).
@pytest.mark.django_db(transaction=True)
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


def test_every_tracked_model_has_its_declared_triggers_installed():
    """What each model declares (Meta.triggers = tracked(...)) is what migrate left in the database."""
    declared = {}
    for model in tracked_models():
        for trigger in history_triggers(model):
            compiled = trigger.compile(model)
            declared[(model._meta.db_table, compiled.sql.pgid)] = compiled.hash
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgrelid::regclass::text, tgname, obj_description(oid, 'pg_trigger'), tgenabled FROM pg_trigger"
            " WHERE tgfoid = 'console_record_change'::regproc"
        )
        installed = {(table, name): (comment, enabled) for table, name, comment, enabled in cursor.fetchall()}
    assert declared, "no model declares tracked()"
    # Same triggers, same definitions (the hash), enabled ("O"), and none the models no longer declare.
    assert installed == {key: (hash_, "O") for key, hash_ in declared.items()}


def test_saving_unchanged_secrets_records_nothing(rows, admin_client):
    integration = Integration.objects.get(pk=rows.integration.pk)
    integration.save()
    Webhook.objects.get(pk=rows.webhook.pk).save()
    url = f"/admin/integrations/integration/{integration.pk}/change/"
    response = admin_client.post(url, FormFields.of(admin_client.get(url).content.decode()).data())

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert changes_of(rows.integration) == changes_of(rows.webhook) == []


def test_a_changed_secret_is_recorded_hidden(rows):
    integration = Integration.objects.get(pk=rows.integration.pk)
    integration.credentials["access_token"] = "changed in place"
    integration.save()
    webhook = Webhook.objects.get(pk=rows.webhook.pk)
    webhook.secret = "rotated"
    webhook.save()

    assert [(c.before, c.after) for c in changes_of(integration)] == [
        ({"credentials": "(hidden)"}, {"credentials": "(hidden)"})
    ]
    assert [c.after for c in changes_of(webhook)] == [{"secret": "(hidden)"}]


def test_nested_contexts_share_one_id_and_the_inner_one_wins(user):
    first, second = OrganizationFactory(), OrganizationFactory()
    with change_context(source="web", user=user.pk, url="/somewhere/"):
        Organization.objects.filter(pk=first.pk).update(plan="enterprise")
        with history_source("webhook", delivery="d-1"):
            Organization.objects.filter(pk=second.pk).update(plan="enterprise")
    Organization.objects.filter(pk=first.pk).update(plan="free")

    (outer, after_block), (inner,) = changes_of(first), changes_of(second)
    assert (outer.source, outer.user, outer.context) == ("web", user, {"url": "/somewhere/"})
    assert (inner.source, inner.user, inner.context) == ("webhook", user, {"url": "/somewhere/", "delivery": "d-1"})
    assert inner.context_id == outer.context_id is not None
    assert (after_block.source, after_block.user, after_block.context_id) == ("", None, None)


def test_context_reaches_executemany_named_parameters_and_unparameterized_sql():
    first, second = OrganizationFactory(), OrganizationFactory(name="Second of two")
    with history_source("command", command="test"), connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE core_organization SET plan = %s WHERE id = %s", [("free", first.pk), ("free", second.pk)]
        )
        cursor.execute(
            "UPDATE core_organization SET is_active = %(active)s WHERE id = %(id)s", {"active": False, "id": first.pk}
        )
        assert cursor.rowcount == 1  # the UPDATE's, not the set_config() before it
        # No parameters: its % sign is not a placeholder.
        cursor.execute("UPDATE core_organization SET name = '100% done' WHERE name = 'Second of two'")

    assert [c.source for c in changes_of(first) + changes_of(second)] == ["command"] * 4
    assert Organization.objects.get(pk=second.pk).name == "100% done"


def test_a_decorated_function_gets_a_context_of_its_own_on_each_call():
    organizations = [OrganizationFactory() for _ in range(2)]

    @history_source("worker", worker_id="w-2")
    def rename(organization):
        Organization.objects.filter(pk=organization.pk).update(name=f"Renamed {organization.pk}")

    for organization in organizations:
        rename(organization)

    changes = [change for organization in organizations for change in changes_of(organization)]
    assert [(c.source, c.context) for c in changes] == [("worker", {"worker_id": "w-2"})] * 2
    assert changes[0].context_id != changes[1].context_id


def test_the_middleware_attributes_writes_only(rf, user):
    organization = OrganizationFactory()

    def view(request):
        Organization.objects.filter(pk=organization.pk).update(name=request.method)
        return HttpResponse()

    for method in ("post", "get"):
        request = getattr(rf, method)("/api/organizations/")
        request.user = user
        HistoryMiddleware(view)(request)

    post, get = changes_of(organization)
    assert (post.source, post.user, post.context) == ("web", user, {"url": "/api/organizations/"})
    assert (get.source, get.user, get.context_id) == ("", None, None)
