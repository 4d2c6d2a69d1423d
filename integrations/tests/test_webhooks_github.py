"""GitHub deliveries, posted signed with the example payloads GitHub publishes."""

import json

import pytest

from analytics.models import Event
from development.models import PullRequest, Repository
from integrations.models import WebhookDelivery
from integrations.tests.webhook_helpers import github_payload, post_github

# Committed rows: the view reads and writes on connections of its own (integrations/webhooks/database.py).
pytestmark = pytest.mark.django_db(transaction=True)

Status = WebhookDelivery.Status


def event_types(subject) -> list[str]:
    return list(
        Event.objects.filter(subject_id=subject.pk).order_by("occurred_at", "id").values_list("event_type", flat=True)
    )


def merged_payload() -> bytes:
    """GitHub's examples hold no merge: a merge is ``closed`` with ``merged: true``."""
    payload = json.loads(github_payload("pull_request/closed.payload.json"))
    payload["pull_request"].update(merged=True, merged_at=payload["pull_request"]["closed_at"])
    return json.dumps(payload).encode()


def test_ping_is_acknowledged_and_logged(client, github_webhook):
    response = post_github(client, github_webhook, "ping", github_payload("ping/payload.json"), delivery_id="ping-1")

    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get(webhook=github_webhook)
    assert (delivery.delivery_id, delivery.event, delivery.status) == ("ping-1", "ping", Status.PROCESSED)
    assert delivery.signature_valid and delivery.response_code == 202
    assert delivery.payload["zen"] == json.loads(github_payload("ping/payload.json"))["zen"]
    assert delivery.headers["X-GitHub-Event"] == "ping"
    assert "X-Hub-Signature-256" not in delivery.headers
    assert delivery.processed_at is not None and delivery.processing_ms >= 0
    github_webhook.refresh_from_db()
    assert (github_webhook.delivery_count, github_webhook.failure_count, github_webhook.last_delivery_status) == (
        1,
        0,
        202,
    )
    assert github_webhook.last_delivery_at is not None


def test_opened_creates_the_unknown_repository_and_the_pull_request(client, github_webhook):
    response = post_github(client, github_webhook, "pull_request", github_payload("pull_request/opened.payload.json"))

    assert response.status_code == 202
    repository = Repository.objects.get()
    assert repository.organization_id == github_webhook.integration.organization_id
    assert repository.integration_id == github_webhook.integration_id
    assert (repository.full_name, repository.external_id, repository.owner) == (
        "Codertocat/Hello-World",
        186853002,
        "Codertocat",
    )
    assert repository.default_branch == "master" and repository.url == "https://github.com/Codertocat/Hello-World"

    pull_request = PullRequest.objects.get()
    assert pull_request.repository == repository
    assert (pull_request.number, pull_request.external_id, pull_request.state) == (2, 279147437, "open")
    assert pull_request.title == "Update the README with new information."
    assert pull_request.body == "This is a pretty simple change that we need to pull into master."
    assert (pull_request.head_branch, pull_request.base_branch) == ("changes", "master")
    assert pull_request.head_sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert pull_request.labels == ["bug"] and pull_request.author_login == "Codertocat"
    assert (pull_request.additions, pull_request.deletions, pull_request.changed_files) == (1, 1, 1)
    assert pull_request.opened_at.isoformat() == "2019-05-15T15:20:33+00:00"
    assert pull_request.merged_at is None and pull_request.closed_at is None
    assert event_types(pull_request) == ["pull_request.opened"]
    assert WebhookDelivery.objects.get().status == Status.PROCESSED


def test_null_body_and_organization_variants(client, github_webhook):
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/opened.with-null-body.json"))
    assert PullRequest.objects.get().body == ""

    response = post_github(
        client, github_webhook, "pull_request", github_payload("pull_request/opened.with-organization.payload.json")
    )
    assert response.status_code == 202
    assert WebhookDelivery.objects.filter(status=Status.PROCESSED).count() == 2


def test_the_author_is_linked_by_github_username(client, github_webhook):
    from core.tests.factories import UserFactory

    user = UserFactory(github_username="Codertocat")
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/opened.payload.json"))
    assert PullRequest.objects.get().author == user


@pytest.mark.parametrize(
    ("actions", "check"),
    [
        (["labeled"], lambda pr: pr.labels == ["bug"] and pr.state == "open"),
        # GitHub's unlabeled example still lists the label; the object is what counts.
        (["unlabeled"], lambda pr: pr.labels == ["bug"] and pr.state == "open"),
        (["converted_to_draft"], lambda pr: pr.is_draft),
        (["converted_to_draft", "ready_for_review"], lambda pr: not pr.is_draft),
        (["synchronize"], lambda pr: pr.head_sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
        (["assigned"], lambda pr: pr.metadata["assignees"] == ["Codertocat"]),
        (["review_requested"], lambda pr: pr.metadata["requested_reviewers"] == ["octocat"]),
        (["locked"], lambda pr: pr.metadata["locked"] is True),
    ],
)
def test_every_pull_request_action_applies(client, github_webhook, actions, check):
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/opened.payload.json"))
    for action in actions:
        response = post_github(
            client, github_webhook, "pull_request", github_payload(f"pull_request/{action}.payload.json")
        )
        assert response.status_code == 202
        delivery = WebhookDelivery.objects.get(action=action)
        assert delivery.status == Status.PROCESSED, delivery.error

    assert check(PullRequest.objects.get())


def test_a_content_change_publishes_an_update(client, github_webhook):
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/opened.payload.json"))
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/converted_to_draft.payload.json"))

    pull_request = PullRequest.objects.get()
    assert event_types(pull_request) == ["pull_request.opened", "pull_request.updated"]
    updated = Event.objects.get(subject_id=pull_request.pk, event_type="pull_request.updated")
    assert updated.payload["changed"] == ["is_draft"]


def test_closed_without_merge(client, github_webhook):
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/opened.payload.json"))
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/closed.payload.json"))

    pull_request = PullRequest.objects.get()
    assert pull_request.state == "closed" and pull_request.merged_at is None
    assert pull_request.closed_at.isoformat() == "2019-05-15T15:21:18+00:00"
    assert event_types(pull_request) == ["pull_request.opened", "pull_request.closed"]


def test_closed_with_merge(client, github_webhook):
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/opened.payload.json"))
    post_github(client, github_webhook, "pull_request", merged_payload())

    pull_request = PullRequest.objects.get()
    assert pull_request.state == "merged"
    assert pull_request.merged_at.isoformat() == "2019-05-15T15:21:18+00:00"
    assert event_types(pull_request) == ["pull_request.opened", "pull_request.merged"]


def test_reopened_after_an_earlier_close(client, github_webhook):
    closed = json.loads(github_payload("pull_request/closed.payload.json"))
    closed["pull_request"]["updated_at"] = "2019-05-15T15:20:34Z"
    reopened = json.loads(github_payload("pull_request/reopened.payload.json"))
    reopened["pull_request"]["updated_at"] = "2019-05-15T15:30:00Z"
    post_github(client, github_webhook, "pull_request", json.dumps(closed).encode())
    post_github(client, github_webhook, "pull_request", json.dumps(reopened).encode())

    pull_request = PullRequest.objects.get()
    assert pull_request.state == "open" and pull_request.closed_at is None
    assert event_types(pull_request) == ["pull_request.closed", "pull_request.opened"]


def test_an_older_pull_request_event_does_not_overwrite_a_newer_one(client, github_webhook):
    # The examples' own timestamps: closed at 15:21:18, the reopen example is from 15:20:33.
    post_github(client, github_webhook, "pull_request", github_payload("pull_request/closed.payload.json"))
    response = post_github(client, github_webhook, "pull_request", github_payload("pull_request/reopened.payload.json"))

    assert response.status_code == 202
    assert PullRequest.objects.get().state == "closed"
    stale = WebhookDelivery.objects.get(action="reopened")
    assert stale.status == Status.IGNORED and stale.error.startswith("stale")
    assert event_types(PullRequest.objects.get()) == ["pull_request.closed"]


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("created.payload.json", lambda r: r.full_name == "Octocoders/Hello-World" and r.external_id == 186853261),
        ("edited.payload.json", lambda r: r.description == ""),
        ("renamed.payload.json", lambda r: r.name == "Hello-World"),
        ("privatized.payload.json", lambda r: r.is_private),
        ("publicized.payload.json", lambda r: not r.is_private),
        ("transferred.payload.json", lambda r: r.owner == "Octocoders"),
        ("created.with-installation.payload.json", lambda r: r.owner == "Octocoders"),
    ],
)
def test_repository_events_upsert_the_repository(client, github_webhook, name, check):
    response = post_github(client, github_webhook, "repository", github_payload(f"repository/{name}"))

    assert response.status_code == 202
    assert WebhookDelivery.objects.get().status == Status.PROCESSED
    assert check(Repository.objects.get(organization=github_webhook.integration.organization))


def test_repository_deletion_is_ignored(client, github_webhook):
    post_github(client, github_webhook, "repository", github_payload("repository/created.payload.json"))
    deleted = json.loads(github_payload("repository/created.payload.json")) | {"action": "deleted"}
    response = post_github(client, github_webhook, "repository", json.dumps(deleted).encode())

    assert response.status_code == 202
    assert Repository.objects.count() == 1
    assert WebhookDelivery.objects.get(action="deleted").status == Status.IGNORED


def test_an_unsupported_event_is_acknowledged_and_ignored(client, github_webhook):
    response = post_github(
        client, github_webhook, "deployment_status", github_payload("deployment_status/payload.json")
    )

    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.IGNORED and "unsupported" in delivery.error
    assert delivery.payload is not None  # kept for a look, not processed


def test_an_event_the_webhook_does_not_accept_is_ignored(client, github_webhook):
    github_webhook.events = ["repository"]
    github_webhook.save(update_fields=["events"])

    response = post_github(client, github_webhook, "pull_request", github_payload("pull_request/opened.payload.json"))
    ping = post_github(client, github_webhook, "ping", github_payload("ping/payload.json"))

    assert response.status_code == 202 and response.json()["status"] == "ignored"
    assert not PullRequest.objects.exists()
    assert ping.json()["status"] == "received"  # ping is always taken


def test_a_redelivery_changes_nothing_and_emits_nothing(client, github_webhook):
    body = github_payload("pull_request/opened.payload.json")
    first = post_github(client, github_webhook, "pull_request", body, delivery_id="d-1")
    pull_request = PullRequest.objects.get()
    updated_at = pull_request.updated_at
    events_before = Event.objects.count()

    again = post_github(client, github_webhook, "pull_request", body, delivery_id="d-1")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "duplicate"
    assert WebhookDelivery.objects.count() == 1
    # Both answers name our stored delivery, under the same key.
    assert again.json()["delivery"] == first.json()["delivery"] == str(WebhookDelivery.objects.get().pk)
    assert Event.objects.count() == events_before
    pull_request.refresh_from_db()
    assert pull_request.updated_at == updated_at
    github_webhook.refresh_from_db()
    assert (github_webhook.delivery_count, github_webhook.last_delivery_status) == (2, 200)


def test_the_same_payload_under_a_new_delivery_id_writes_nothing(client, github_webhook):
    body = github_payload("pull_request/opened.payload.json")
    post_github(client, github_webhook, "pull_request", body)
    updated_at = PullRequest.objects.get().updated_at

    post_github(client, github_webhook, "pull_request", body)

    assert PullRequest.objects.get().updated_at == updated_at
    assert Event.objects.filter(event_type__startswith="pull_request").count() == 1
    assert WebhookDelivery.objects.filter(status=Status.PROCESSED).count() == 2


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda payload: payload.pop("repository"), "no 'repository'"),
        (lambda payload: payload.update(repository="acme/web"), "string indices must be integers"),
        (lambda payload: payload["pull_request"].update(number="seven"), "invalid literal for int()"),
    ],
    ids=["no repository", "repository not an object", "number not a number"],
)
def test_a_payload_off_githubs_shape_fails_saying_what_is_wrong_without_a_traceback(
    client, github_webhook, caplog, change, error
):
    payload = json.loads(github_payload("pull_request/opened.payload.json"))
    change(payload)

    post_github(client, github_webhook, "pull_request", json.dumps(payload).encode())

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.FAILED
    assert delivery.error.startswith("The pull_request payload is not what GitHub sends: ")
    assert error in delivery.error
    assert not Repository.objects.exists() and not PullRequest.objects.exists()
    (logged,) = [record for record in caplog.records if str(delivery.pk) in record.getMessage()]
    assert logged.levelname == "WARNING" and logged.exc_info is None


def test_a_failed_delivery_redelivered_by_github_is_processed_again(client, github_webhook):
    broken = json.loads(github_payload("pull_request/opened.payload.json"))
    del broken["pull_request"]["head"]
    post_github(client, github_webhook, "pull_request", json.dumps(broken).encode(), delivery_id="d-9")
    failed = WebhookDelivery.objects.get()
    assert failed.status == Status.FAILED and "head" in failed.error
    assert not PullRequest.objects.exists()
    assert Repository.objects.count() == 0  # the failure rolled back the whole delivery

    response = post_github(
        client, github_webhook, "pull_request", github_payload("pull_request/opened.payload.json"), delivery_id="d-9"
    )

    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()
    assert response.json()["delivery"] == str(failed.pk) == str(delivery.pk)
    assert delivery.status == Status.PROCESSED and delivery.attempts == 2
    assert PullRequest.objects.exists()
