"""Publishing scheduled posts: the state changes (docs/jobs.md).

``scheduled → publishing`` is committed, together with the job that will
call the platform, before any call is made; the job then moves the post to
``published`` (platform id and URL) or ``failed`` (the reason). Each is a
``save()``, so each publishes its ``social.post.*`` event. The calls
themselves are in social/jobs.py, the clients in social/platforms.py.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from social.models import SocialPost
from social.platforms import Engagement, Published

Status = SocialPost.Status


def posts_claim_due(*, limit: int = 100) -> list[SocialPost]:
    """Move up to ``limit`` due scheduled posts to ``publishing``, soonest first.

    Call it inside the transaction that queues their publication: both commit
    or neither does. ``SKIP LOCKED`` lets several schedulers' jobs claim at
    once without taking a post twice.
    """
    due = list(
        SocialPost.objects.select_for_update(skip_locked=True)
        .filter(status=Status.SCHEDULED, scheduled_at__lte=timezone.now())
        .order_by("scheduled_at")[:limit]
    )
    for post in due:
        post.status, post.error_message = Status.PUBLISHING, ""
        post.save(update_fields=["status", "error_message"])
    return due


def _finish(post: SocialPost, **changes: object) -> SocialPost | None:
    """Apply ``changes`` to a post still ``publishing`` (a cancel or another run may have won); None if not."""
    with transaction.atomic():
        locked = SocialPost.objects.select_for_update().filter(pk=post.pk, status=Status.PUBLISHING).first()
        if locked is None:
            return None
        for field, value in changes.items():
            setattr(locked, field, value)
        locked.save(update_fields=list(changes))
    return locked


def post_mark_published(*, post: SocialPost, published: Published) -> SocialPost | None:
    return _finish(
        post, status=Status.PUBLISHED, published_at=timezone.now(), external_id=published.external_id,
        url=published.url, error_message="",
    )  # fmt: skip


def post_mark_failed(*, post: SocialPost, error: str) -> SocialPost | None:
    return _finish(post, status=Status.FAILED, error_message=error)


def post_record_engagement(*, post: SocialPost, engagement: Engagement) -> None:
    SocialPost.objects.filter(pk=post.pk).update(
        likes_count=engagement.likes,
        reposts_count=engagement.reposts,
        replies_count=engagement.replies,
        impressions_count=engagement.impressions,
        metrics_updated_at=timezone.now(),
    )
