"""The sample data `dev.py run` loads: it signs nothing an outsider could forge, sends nothing out on
its own, keeps what became of it, and reads as the README shows."""

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

import dev
from core.models import User
from core.services import api_token_create
from integrations.models import Webhook
from integrations.tests.webhook_helpers import post_github
from social import publishing
from social.jobs import ENGAGEMENT_WINDOW
from social.models import SocialPost

# Committed rows: the webhook view reads on connections of its own (integrations/webhooks/database.py).
pytestmark = pytest.mark.django_db(transaction=True)

FIXTURE = Path(dev.ROOT) / "integrations" / "fixtures" / "integrations.json"


def published_secrets() -> dict[str, str]:
    rows = json.loads(FIXTURE.read_text())
    return {row["pk"]: row["fields"]["secret"] for row in rows if row["model"] == "integrations.webhook"}


def test_sample_webhooks_get_secrets_of_this_install_stable_across_runs(client, settings):
    call_command("loaddata", "core", "integrations", verbosity=0)
    published = published_secrets()

    first = dict(dev.sample_webhook_secrets())
    call_command("loaddata", "core", "integrations", verbosity=0)  # the next run puts the fixture's back
    assert dict(dev.sample_webhook_secrets()) == first

    for webhook in Webhook.objects.filter(pk__in=published):
        assert webhook.secret == first[webhook.endpoint_token] != published[str(webhook.pk)]
    github = Webhook.objects.get(pk__in=published, integration__service="github")
    body = b'{"zen": "Keep it logically awesome."}'
    assert post_github(client, github, "ping", body, secret=published[str(github.pk)]).status_code == 401
    assert post_github(client, github, "ping", body).status_code == 202

    settings.SECRET_KEY = "another install's key, 50 characters or so, random enough"
    assert dict(dev.sample_webhook_secrets()) != first


def test_the_sample_data_goes_into_an_empty_database_and_later_runs_keep_what_became_of_it():
    """Loading the fixtures on every run put their rows back as written there, undoing edits."""
    assert dev.load_sample_data()
    post = SocialPost.objects.filter(status=SocialPost.Status.DRAFT).first()
    assert post is not None, "the sample data has a draft post"
    SocialPost.objects.filter(pk=post.pk).update(status=SocialPost.Status.CANCELED, content="Not this one after all.")

    assert not dev.load_sample_data()

    post.refresh_from_db()
    assert (post.status, post.content) == (SocialPost.Status.CANCELED, "Not this one after all.")


def test_the_sample_data_sends_nothing_to_a_platform_on_its_own():
    """Its accounts are on X and LinkedIn with made-up tokens: a post due to be published, or one
    recent enough for its engagement to be read, would send them there from the first run."""
    dev.load_sample_data()

    with transaction.atomic():
        assert publishing.posts_claim_due() == []
    recent = timezone.now() - ENGAGEMENT_WINDOW
    assert not SocialPost.objects.filter(status=SocialPost.Status.PUBLISHED, published_at__gte=recent).exists()


def test_the_run_s_admin_reads_the_sample_organization_through_the_api_as_the_readme_shows(client):
    """The API shows a user only the organizations they belong to: the admin the run creates
    belongs to the sample one, so the README's token and page work as written."""
    dev.load_sample_data()
    assert dev.ensure_admin(reset_password=False)
    _, raw = api_token_create(user=User.objects.get(email=dev.ADMIN_EMAIL), name="README")

    answer = client.get("/api/v1/orgs/acme/deployments/?limit=100", HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert answer.status_code == 200, answer.content
    assert answer.json()["items"] and answer.json()["event_position"]
