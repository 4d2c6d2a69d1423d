"""Status badges take their tone from the model's ``status_tones`` declaration."""

import re
from pathlib import Path

import pytest
from django.apps import apps
from django.utils import timezone

from agents.models import AgentTask
from agents.tests.factories import AgentTaskFactory
from companyos.foundation.console import toolkit
from core.tests.factories import ApiTokenFactory
from integrations.models import WebhookDelivery
from integrations.tests.factories import WebhookDeliveryFactory

pytestmark = pytest.mark.django_db

ADMIN_CSS = Path(toolkit.__file__).parent / "static" / "companyos" / "admin.css"


def badges(response) -> list[tuple[str, str]]:
    """(tone, label) of every badge on the page."""
    return re.findall(r'class="cos-badge cos-badge-(\w+)">([^<]*)<', response.content.decode())


def test_list_badges_use_the_tones_their_model_declares(rows, admin_client):
    AgentTaskFactory(organization=rows.organization, agent=rows.agent, status=AgentTask.Status.FAILED)
    AgentTaskFactory(organization=rows.organization, agent=rows.agent, status=AgentTask.Status.CANCELLED)

    shown = set(badges(admin_client.get("/admin/agents/agenttask/")))

    assert {("danger", "Failed"), ("warning", "Queued"), ("neutral", "Cancelled")} <= shown


def test_webhook_deliveries_show_processed_and_received_apart(rows, admin_client):
    for status in (WebhookDelivery.Status.PROCESSED, WebhookDelivery.Status.RECEIVED):
        WebhookDeliveryFactory(webhook=rows.webhook, status=status)

    shown = set(badges(admin_client.get("/admin/integrations/webhookdelivery/")))

    assert {("success", "Processed"), ("warning", "Received")} <= shown


def test_a_computed_state_takes_its_tone_from_the_model_too(rows, admin_client):
    ApiTokenFactory(user=rows.user, revoked_at=timezone.now())
    ApiTokenFactory(user=rows.user, expires_at=timezone.now() - timezone.timedelta(days=1))
    ApiTokenFactory(user=rows.user)

    shown = set(badges(admin_client.get("/admin/core/apitoken/")))

    assert shown == {("danger", "revoked"), ("neutral", "expired"), ("success", "active")}


def test_a_model_without_a_declaration_shows_neutral_badges():
    class Undeclared:
        pass

    assert toolkit.tone(Undeclared, "failed") == "neutral"
    assert toolkit.tone(AgentTask, "failed") == "danger"
    assert toolkit.tone(AgentTask, "a value added later") == "neutral"


def test_every_declared_tone_has_a_style():
    styled = set(re.findall(r"\.cos-badge-(\w+)", ADMIN_CSS.read_text()))
    declared = {
        (model._meta.label, tone) for model in apps.get_models() for tone in getattr(model, "status_tones", {}).values()
    }

    assert declared, "models declare status_tones"
    assert {(label, tone) for label, tone in declared if tone not in styled} == set()
