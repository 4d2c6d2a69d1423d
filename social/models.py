"""Social accounts (Twitter, LinkedIn) and the posts published through them."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

from companyos.foundation.console.history import tracked
from companyos.foundation.events import StateEvents
from companyos.foundation.models import ExternalModel, choices_check
from companyos.foundation.search import Searchable, trigram_index
from companyos.foundation.tracking import TrackedFieldsMixin


class Platform(models.TextChoices):
    TWITTER = "twitter"
    LINKEDIN = "linkedin"


class SocialAccount(ExternalModel):
    """A company account on a social platform."""

    operators_may_change = True

    Platform = Platform

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(text=("handle", "display_name", "external_id"))

    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="social_accounts", db_index=False
    )
    integration = models.ForeignKey(
        "integrations.Integration", on_delete=models.SET_NULL, null=True, blank=True, related_name="social_accounts"
    )
    platform = models.CharField(max_length=16, choices=Platform)
    handle = models.CharField(max_length=100)
    external_id = models.CharField(max_length=100)
    display_name = models.CharField(max_length=200, blank=True)
    profile_url = models.URLField(max_length=500, blank=True)
    followers_count = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta(ExternalModel.Meta):
        triggers = tracked()
        ordering = ["platform", "handle"]
        constraints = [
            models.UniqueConstraint(fields=["platform", "external_id"], name="social_account_external_unique"),
            models.UniqueConstraint(fields=["organization", "platform", "handle"], name="social_account_handle_unique"),
            choices_check("platform", Platform, "social_account"),
        ]
        indexes = [
            # The global search (global_search above).
            trigram_index("handle", name="account_handle_trgm"),
            trigram_index("display_name", name="account_display_trgm"),
            trigram_index("external_id", name="account_external_trgm"),
        ]

    def __str__(self) -> str:
        return f"@{self.handle} ({self.get_platform_display()})"


class SocialPostStatus(models.TextChoices):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    FAILED = "failed"
    CANCELED = "canceled"


class SocialPost(TrackedFieldsMixin, ExternalModel):
    """A post: drafted, scheduled, published, with its engagement."""

    operators_may_change = True
    status_tones = {
        SocialPostStatus.SCHEDULED: "warning",
        SocialPostStatus.PUBLISHING: "warning",
        SocialPostStatus.PUBLISHED: "success",
        SocialPostStatus.FAILED: "danger",
    }

    # Real-time events (companyos.foundation.events), published by any save.
    # Publishing is reported by the platform; scheduling, failing and canceling are ours.
    state_events = StateEvents(
        topic="social.post",
        category="social",
        state_field="status",
        states={
            SocialPostStatus.SCHEDULED: "social.post.scheduled",
            SocialPostStatus.PUBLISHING: "social.post.publishing",
            SocialPostStatus.PUBLISHED: "social.post.published",
            SocialPostStatus.FAILED: "social.post.failed",
            SocialPostStatus.CANCELED: "social.post.canceled",
        },
        snapshot=(
            "id", "account", "author", "agent", "content", "media_urls", "status", "scheduled_at", "published_at",
            "external_id", "url", "is_agent_generated", "error_message", "created_at",
        ),
        organization=lambda post: post.account.organization_id,
        source=lambda post: (
            post.account.platform
            if post.status == SocialPostStatus.PUBLISHED
            else ("agent" if post.agent_id else "user")
        ),
        actor_user=lambda post: post.author_id,
        actor_agent=lambda post: post.agent_id,
        extra_data=lambda post: {"platform": post.account.platform, "handle": post.account.handle},
    )  # fmt: skip

    Status = SocialPostStatus

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(exact=("id", "external_id"), text=("url",))

    # The (account, -created_at) index serves lookups by account.
    account = models.ForeignKey("social.SocialAccount", on_delete=models.CASCADE, related_name="posts", db_index=False)
    author = models.ForeignKey(
        "core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="social_posts"
    )
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="social_posts"
    )
    content = models.TextField()
    media_urls = ArrayField(models.URLField(max_length=1000), default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.DRAFT)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(max_length=100, blank=True)
    url = models.URLField(max_length=500, blank=True)
    is_agent_generated = models.BooleanField(default=False)
    likes_count = models.PositiveIntegerField(default=0)
    reposts_count = models.PositiveIntegerField(default=0)
    replies_count = models.PositiveIntegerField(default=0)
    impressions_count = models.PositiveBigIntegerField(default=0)
    metrics_updated_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True)

    class Meta(ExternalModel.Meta):
        triggers = tracked()
        ordering = ["-created_at"]
        constraints = [
            choices_check("status", SocialPostStatus, "social_post"),
            models.CheckConstraint(
                condition=~models.Q(status="scheduled") | models.Q(scheduled_at__isnull=False),
                name="social_post_scheduled_has_scheduled_at",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="published") | models.Q(published_at__isnull=False),
                name="social_post_published_has_published_at",
            ),
        ]
        indexes = [
            # The publisher: scheduled posts that are due, soonest first.
            models.Index(fields=["scheduled_at"], name="post_due_idx", condition=models.Q(status="scheduled")),
            # An account's posts, newest first (admin inline, timelines).
            models.Index(fields=["account", "-created_at"], name="post_account_recent_idx"),
            # An account's published posts for engagement refresh, newest first.
            models.Index(
                fields=["account", "-published_at"], name="post_published_idx", condition=models.Q(status="published")
            ),
            # A post found by the platform's id (engagement callbacks).
            models.Index(fields=["external_id"], name="post_external_idx", condition=~models.Q(external_id="")),
            # The global search (global_search above).
            trigram_index("url", name="post_url_trgm"),
        ]

    def __str__(self) -> str:
        return self.content[:60]
