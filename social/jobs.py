"""Background jobs of social posts: publish the due ones, refresh engagement (docs/jobs.md).

A post is never published twice. ``publish_due_posts`` commits the move to
``publishing`` and the ``publish_post`` job in one transaction. The job's
first attempt posts; any later attempt (a retry after a 429 or a 5xx, or
the retry of a job whose worker died, possibly between the platform's
answer and our commit) first looks the post up on the platform and, if an
earlier attempt published it, records that instead of posting again. The
lookup takes only a post of the account with the same text created since
the job's first attempt started (Procrastinate records that time when a
worker takes the job, before any call), so an older post that happens to
say the same is not mistaken for ours.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone
from procrastinate import JobContext, RetryDecision
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateEvent
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy

from social import publishing
from social.models import SocialPost
from social.platforms import PlatformError, RateLimited, Rejected, Unavailable, client_for

logger = logging.getLogger(__name__)

# Engagement is refreshed for posts published this recently.
ENGAGEMENT_WINDOW = timedelta(days=7)


class PublishRetry(BaseRetryStrategy):
    """Wait as long as a 429 asks; after a 5xx or no answer, back off exponentially."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RateLimited):
            return RetryDecision(retry_in={"seconds": exception.retry_after})
        if isinstance(exception, Unavailable):
            return RetryDecision(retry_in={"seconds": settings.SOCIAL_PUBLISH_RETRY_BASE_SECONDS * 2**job.attempts})
        return None


def first_attempt_started_at(job_id: int) -> datetime:
    """When a worker first took the job: the earliest of its ``started`` events."""
    started = ProcrastinateEvent.objects.filter(job_id=job_id, type="started").aggregate(at=Min("at"))["at"]
    if started is None:
        raise LookupError(f"Job {job_id} has no start recorded.")
    return started


@app.task(queue="social", pass_context=True, retry=PublishRetry())
def publish_post(context: JobContext, post_id: str) -> str:
    """Publish one ``publishing`` post on its platform; returns what became of it."""
    post = SocialPost.objects.select_related("account__integration").filter(pk=post_id).first()
    if post is None or post.status != SocialPost.Status.PUBLISHING:
        return "nothing to do"
    retrying = context.job.attempts > 0
    try:
        client = client_for(post.account)
        published = client.find(post, since=first_attempt_started_at(context.job.id)) if retrying else None
        if published is None:
            published = client.publish(post)
    except Rejected as error:
        publishing.post_mark_failed(post=post, error=str(error))
        return f"failed: {error}"
    except (RateLimited, Unavailable) as error:
        if context.job.attempts + 1 >= settings.SOCIAL_PUBLISH_MAX_ATTEMPTS:
            publishing.post_mark_failed(post=post, error=f"Gave up after {context.job.attempts + 1} attempts: {error}")
            return "failed: out of attempts"
        raise  # PublishRetry schedules the next attempt
    publishing.post_mark_published(post=post, published=published)
    return f"published as {published.external_id}"


@app.periodic(cron=settings.SCHEDULE_PUBLISH_DUE_POSTS)
@app.task(queue="social", lock="publish_due_posts")
def publish_due_posts(timestamp: int) -> int:
    """Queue the publication of every post whose time has come."""
    with transaction.atomic():
        due = publishing.posts_claim_due()
        for post in due:
            # Same connection, same transaction: the job exists if and only if the post is publishing.
            publish_post.defer(post_id=str(post.pk))
    return len(due)


@app.periodic(cron=settings.SCHEDULE_REFRESH_POST_ENGAGEMENT)
@app.task(queue="social", lock="refresh_post_engagement")
def refresh_post_engagement(timestamp: int) -> int:
    """Read likes, reposts, replies and impressions of recent posts from their platforms."""
    recent = SocialPost.objects.select_related("account__integration").filter(
        status=SocialPost.Status.PUBLISHED, published_at__gte=timezone.now() - ENGAGEMENT_WINDOW
    )
    refreshed = 0
    for post in recent.exclude(external_id=""):
        try:
            publishing.post_record_engagement(post=post, engagement=client_for(post.account).engagement(post))
        except PlatformError as error:  # one account's trouble must not stop the others
            logger.warning("engagement of post %s not refreshed: %s", post.pk, error)
            continue
        refreshed += 1
    return refreshed
