"""The live console's server side: what pages ask live.js to watch, the feed, and edits refused over a newer row."""

import json

import pytest
from django.db import transaction
from django.utils import timezone

from agents.models import AgentTask
from agents.tests.factories import AgentTaskFactory
from companyos.config.tests.admin.test_form_errors import posted
from companyos.foundation.console.live import VERSION_FIELD
from core.tests.factories import OrganizationMemberFactory
from development.services import deployment_set_state
from development.tests.factories import DeploymentFactory
from integrations.tests.factories import WebhookDeliveryFactory

pytestmark = pytest.mark.django_db


def live_config(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="cos-live" type="application/json">') + len(
        '<script id="cos-live" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_the_index_feed_lists_the_newest_events_of_the_users_organizations_with_links(admin_client, staff_admin, rows):
    OrganizationMemberFactory(organization=rows.organization, user=staff_admin)
    deployment = DeploymentFactory(organization=rows.organization)
    deployment_set_state(deployment=deployment, state="ready", at=timezone.now())

    response = admin_client.get("/admin/")

    html = response.content.decode()
    assert f'<a href="/admin/development/deployment/{deployment.pk}/change/">deployment.ready</a>' in html
    config = live_config(response)
    assert config["mode"] == "feed" and config["organizations"] == [str(rows.organization.pk)]
    assert config["since"][str(rows.organization.pk)] == response.context["live_feed"][0]["id"]
    assert 'src="/static/companyos/live.js" defer' in html


def test_a_changelist_of_a_model_with_events_follows_its_topic_and_badges(admin_client, rows):
    before = AgentTaskFactory(organization=rows.organization, agent=rows.agent)

    config = live_config(admin_client.get("/admin/agents/agenttask/"))

    after = AgentTaskFactory(organization=rows.organization, agent=rows.agent)
    assert (config["mode"], config["topics"], config["stateField"]) == ("changelist", ["agent.task"], "status")
    assert config["tones"]["failed"] == "danger" and config["labels"]["awaiting_approval"] == "Awaiting Approval"
    # Between the events stamped before the page and after it.
    [made_before], [made_after] = (
        [str(pk) for pk in rows.organization.events.filter(subject_id=task.pk).values_list("pk", flat=True)]
        for task in (before, after)
    )
    assert made_before < config["renderedAt"] < made_after


def test_the_webhook_delivery_log_and_a_deliverys_page_are_live(admin_client, rows):
    delivery = WebhookDeliveryFactory(webhook=rows.webhook)

    listed = live_config(admin_client.get("/admin/integrations/webhookdelivery/"))
    changed = live_config(admin_client.get(f"/admin/integrations/webhookdelivery/{delivery.pk}/change/"))

    assert (listed["mode"], listed["topics"], listed["stateField"]) == ("changelist", ["webhook.delivery"], "status")
    assert listed["model"] == "integrations.webhookdelivery"
    assert listed["tones"]["failed"] == "danger" and listed["labels"]["processed"] == "Processed"
    assert (changed["mode"], changed["objectId"]) == ("change", str(delivery.pk))


def test_a_change_form_opened_before_another_change_is_refused_with_a_message(admin_client, rows):
    task = AgentTaskFactory(organization=rows.organization, agent=rows.agent, title="Before")
    url = f"/admin/agents/agenttask/{task.pk}/change/"
    opened = admin_client.get(url)
    assert f'name="{VERSION_FIELD}" value="{opened.context["version"]}"' in opened.content.decode()
    form = {**posted(opened), VERSION_FIELD: opened.context["version"]}
    # Another writer, bypassing save(). In a savepoint: the test's one transaction would write every row
    # version with the same transaction id, where separate writers each have their own.
    with transaction.atomic():
        AgentTask.objects.filter(pk=task.pk).update(title="Changed elsewhere")

    response = admin_client.post(url, {**form, "title": "Mine"})

    assert response.status_code == 200
    assert "was changed by someone else after you opened this page" in response.content.decode()
    task.refresh_from_db()
    assert task.title == "Changed elsewhere"
    # Sent again unchanged, it is still refused: the form kept the version it was opened on.
    assert "changed by someone else" in admin_client.post(url, {**form, "title": "Mine"}).content.decode()


def test_a_change_form_of_an_unchanged_row_saves(admin_client, rows):
    task = AgentTaskFactory(organization=rows.organization, agent=rows.agent, title="Before")
    url = f"/admin/agents/agenttask/{task.pk}/change/"

    opened = admin_client.get(url)

    response = admin_client.post(url, {**posted(opened), VERSION_FIELD: opened.context["version"], "title": "After"})

    assert response.status_code == 302
    task.refresh_from_db()
    assert task.title == "After"
