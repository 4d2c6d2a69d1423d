"""Real-time events of social posts, fired from their status changes.

The ``post_save`` receiver is connected in ``SocialConfig.ready``: any
``save()`` publishes. ``QuerySet.update()`` bypasses it; code changing
statuses in bulk calls :func:`publish_post_status_change`.
"""

from __future__ import annotations

from companyos.foundation.events import model_data, publish_on_commit
from social.models import SocialPost

POST_FIELDS = (
    "id", "account", "author", "agent", "content", "media_urls", "status", "scheduled_at", "published_at",
    "external_id", "url", "is_agent_generated", "error_message", "created_at",
)  # fmt: skip
STATUS_EVENTS = {
    SocialPost.Status.SCHEDULED: "social.post.scheduled",
    SocialPost.Status.PUBLISHED: "social.post.published",
    SocialPost.Status.FAILED: "social.post.failed",
    # Canceled from the staff console (social.services.post_cancel).
    SocialPost.Status.CANCELED: "social.post.canceled",
}


def publish_post_status_change(post: SocialPost, *, previous_status: str | None) -> None:
    """Publish ``social.post.<status>`` for a post now scheduled, published or failed.

    ``previous_status`` is None for a post just created.
    """
    event_type = STATUS_EVENTS.get(post.status)
    if event_type is None or previous_status == post.status:
        return
    account = post.account
    published = post.status == SocialPost.Status.PUBLISHED
    publish_on_commit(
        organization_id=account.organization_id,
        event_type=event_type,
        subject=post,
        data={
            **model_data(post, POST_FIELDS),
            "platform": account.platform,
            "handle": account.handle,
            "previous_status": previous_status,
        },
        # Publishing is reported by the platform; scheduling and failing are ours.
        source=account.platform if published else ("agent" if post.agent_id else "user"),
        actor_user_id=post.author_id,
        actor_agent_id=post.agent_id,
    )


def post_saved(sender, instance: SocialPost, created: bool, raw: bool, update_fields=None, **kwargs) -> None:
    if raw:  # fixtures
        return
    changes = instance.tracked_changes(update_fields)
    if created or "status" in changes:
        publish_post_status_change(instance, previous_status=changes.get("status"))
