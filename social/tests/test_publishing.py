"""Publishing scheduled posts against a local server speaking the platforms' APIs."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from analytics.models import Event
from companyos.foundation.failures import ExpectedFailuresAsOneLine
from dev import free_port
from integrations.tests.factories import IntegrationFactory
from social.jobs import PublishRetry, publish_due_posts, publish_post
from social.models import Platform, SocialPost
from social.platforms import RateLimited, Unavailable
from social.tests.factories import SocialAccountFactory, SocialPostFactory
from social.tests.platform_server import platform_server, x_time

Status = SocialPost.Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def platform(settings):
    with platform_server() as server:
        settings.SOCIAL_X_API_URL = settings.SOCIAL_LINKEDIN_API_URL = server.url
        yield server


USER_TOKEN = "user-token"  # noqa: S105 - what the local server accepts


def due_post(platform_name: str = Platform.TWITTER, token: str = USER_TOKEN) -> SocialPost:
    integration = IntegrationFactory(service=platform_name, credentials={"access_token": token})
    account = SocialAccountFactory(
        platform=platform_name, integration=integration, organization=integration.organization
    )
    post = SocialPostFactory(account=account, status=Status.SCHEDULED, scheduled_at=timezone.now() + timedelta(hours=1))
    SocialPost.objects.filter(pk=post.pk).update(scheduled_at=timezone.now() - timedelta(seconds=1))
    return post


def run_publish(post: SocialPost, *, attempts: int = 0) -> str:
    """Run the post's job as a worker would, at the given attempt.

    Taking the job (``todo`` → ``doing``) is what makes Procrastinate record its start.
    """
    job = ProcrastinateJob.objects.get(task_name=publish_post.name, args={"post_id": str(post.pk)})
    with connection.cursor() as cursor:
        cursor.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s AND status = 'todo'", [job.id])
    context = SimpleNamespace(job=SimpleNamespace(id=job.id, attempts=attempts))
    return publish_post.func(context, post_id=str(post.pk))


def events(post: SocialPost) -> list[str]:
    return list(Event.objects.filter(subject_id=post.pk).order_by("id").values_list("event_type", flat=True))


def test_a_due_post_is_claimed_with_its_job_then_published_on_x(platform, django_capture_on_commit_callbacks):
    post = due_post()
    with django_capture_on_commit_callbacks(execute=True):
        assert publish_due_posts.func(timestamp=0) == 1
    post.refresh_from_db()
    assert post.status == Status.PUBLISHING
    job = ProcrastinateJob.objects.get(task_name="social.jobs.publish_post")
    assert job.args == {"post_id": str(post.pk)} and job.status == "todo"

    with django_capture_on_commit_callbacks(execute=True):
        run_publish(post)
    post.refresh_from_db()
    (request,) = platform.posted()
    assert request.path == "/2/tweets" and request.body == {"text": post.content}
    assert request.headers["Authorization"] == f"Bearer {USER_TOKEN}"
    assert post.status == Status.PUBLISHED and post.published_at is not None
    assert post.external_id == platform.posts[0]["id"]
    assert post.url == f"https://x.com/{post.account.handle}/status/{post.external_id}"
    assert events(post)[-2:] == ["social.post.publishing", "social.post.published"]


def test_linkedin_gets_its_version_headers_and_the_urn_comes_from_x_restli_id(platform):
    post = due_post(Platform.LINKEDIN)
    publish_due_posts.func(timestamp=0)
    run_publish(post)
    post.refresh_from_db()
    (request,) = platform.posted()
    assert request.path == "/rest/posts"
    assert request.headers["X-Restli-Protocol-Version"] == "2.0.0" and request.headers["LinkedIn-Version"]
    assert request.body["commentary"] == post.content and request.body["lifecycleState"] == "PUBLISHED"
    assert request.body["author"] == f"urn:li:organization:{post.account.external_id}"
    assert post.status == Status.PUBLISHED and post.external_id.startswith("urn:li:share:")
    assert post.url == f"https://www.linkedin.com/feed/update/{post.external_id}/"


def test_a_401_fails_the_post_with_the_reason_and_an_event_and_keeps_the_credentials(
    platform, django_capture_on_commit_callbacks
):
    post = due_post(token="revoked")
    publish_due_posts.func(timestamp=0)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = run_publish(post)
    post.refresh_from_db()
    assert outcome.startswith("failed")
    assert post.status == Status.FAILED
    assert "401" in post.error_message and "Invalid or expired token" in post.error_message
    assert "social.post.failed" in events(post)
    post.account.integration.refresh_from_db()
    assert post.account.integration.credentials == {"access_token": "revoked"}


def test_a_429_is_retried_after_the_wait_the_platform_asked_for(platform):
    post = due_post()
    publish_due_posts.func(timestamp=0)
    platform.fail_next(429, headers={"Retry-After": "42"})
    with pytest.raises(RateLimited) as raised:
        run_publish(post)
    decision = PublishRetry().get_retry_decision(exception=raised.value, job=SimpleNamespace(attempts=0))
    assert decision.retry_at - timezone.now() == pytest.approx(timedelta(seconds=42), abs=timedelta(seconds=2))
    post.refresh_from_db()
    assert post.status == Status.PUBLISHING, "still ours to publish"


def test_5xx_backs_off_exponentially_and_fails_the_post_after_the_last_attempt(platform, settings):
    settings.SOCIAL_PUBLISH_MAX_ATTEMPTS = 3
    post = due_post()
    publish_due_posts.func(timestamp=0)
    waits = []
    for attempt in range(2):
        platform.fail_next(503)
        with pytest.raises(Unavailable) as raised:
            run_publish(post, attempts=attempt)
        decision = PublishRetry().get_retry_decision(exception=raised.value, job=SimpleNamespace(attempts=attempt))
        waits.append((decision.retry_at - timezone.now()).total_seconds())
    assert waits[1] == pytest.approx(2 * waits[0], rel=0.05)
    platform.fail_next(503)  # the lookup before the last attempt
    assert run_publish(post, attempts=2) == "failed: out of attempts"
    post.refresh_from_db()
    assert post.status == Status.FAILED and "503" in post.error_message
    assert platform.posted() == [r for r in platform.requests if r.method == "POST"]


@pytest.mark.parametrize("answer", [429, 503, "no answer"])
def test_an_attempt_to_be_retried_is_one_line_in_the_worker_s_log_with_the_platform_s_reason(
    platform, settings, answer
):
    """Procrastinate logs each attempt it will retry with its traceback; a platform that is busy or
    down is expected, so the worker's console says why in one line."""
    post = due_post()
    publish_due_posts.func(timestamp=0)
    if answer == "no answer":
        settings.SOCIAL_X_API_URL = f"http://127.0.0.1:{free_port()}"
    else:
        platform.fail_next(answer)
    with pytest.raises((RateLimited, Unavailable)) as raised:
        run_publish(post)
    record = logging.LogRecord(
        "procrastinate.worker", logging.INFO, __file__, 1, "Job %s ended with status: Error, to retry",
        (f"social.jobs.publish_post[{post.pk}]",), (raised.type, raised.value, raised.tb),
    )  # fmt: skip

    assert ExpectedFailuresAsOneLine().filter(record)

    assert (record.levelname, record.exc_info) == ("INFO", None)
    assert record.getMessage().endswith(f"Error, to retry ({str(raised.value).splitlines()[0]})")
    assert ("could not be reached" if answer == "no answer" else str(answer)) in record.getMessage()


def test_a_retry_after_the_platform_answered_but_before_our_commit_does_not_post_again(platform, monkeypatch):
    post = due_post()
    publish_due_posts.func(timestamp=0)

    def worker_dies(**kwargs):
        raise SystemExit("killed between the platform's answer and the commit")

    monkeypatch.setattr("social.jobs.publishing.post_mark_published", worker_dies)
    with pytest.raises(SystemExit):
        run_publish(post)
    monkeypatch.undo()
    post.refresh_from_db()
    assert post.status == Status.PUBLISHING and len(platform.posted()) == 1

    # The stalled job is retried (attempts 1): it finds the post instead of posting again.
    assert run_publish(post, attempts=1) == f"published as {platform.posts[0]['id']}"
    post.refresh_from_db()
    assert post.status == Status.PUBLISHED and post.external_id == platform.posts[0]["id"]
    assert len(platform.posted()) == 1, "published exactly once"


@pytest.mark.parametrize("platform_name", [Platform.TWITTER, Platform.LINKEDIN])
def test_a_retry_does_not_take_an_older_post_with_the_same_text_for_its_own(platform, platform_name):
    post = due_post(platform_name)
    hour_ago = timezone.now() - timedelta(hours=1)
    platform.posts.append(  # what the account said an hour ago, in each platform's shape
        {"id": "1700000000", "text": post.content, "created_at": x_time(hour_ago)}
        if platform_name == Platform.TWITTER
        else {"id": "urn:li:share:6999999", "commentary": post.content, "createdAt": int(hour_ago.timestamp() * 1000)}
    )
    publish_due_posts.func(timestamp=0)
    platform.fail_next(503)
    with pytest.raises(Unavailable):
        run_publish(post)  # the first attempt's POST is refused: nothing published

    outcome = run_publish(post, attempts=1)

    (lookup,) = [r for r in platform.requests if r.method == "GET"]
    if platform_name == Platform.TWITTER:
        assert lookup.query["start_time"], "X is asked only for posts since the first attempt"
    assert len(platform.posted()) == 2, "the refused POST, then the real one"
    assert outcome == f"published as {platform.posts[-1]['id']}"
    post.refresh_from_db()
    assert post.status == Status.PUBLISHED and post.external_id == platform.posts[-1]["id"] != platform.posts[0]["id"]


def test_a_post_canceled_meanwhile_is_not_published(platform):
    post = due_post()
    publish_due_posts.func(timestamp=0)
    SocialPost.objects.filter(pk=post.pk).update(status=Status.CANCELED)
    assert run_publish(post) == "nothing to do"
    assert platform.requests == []
