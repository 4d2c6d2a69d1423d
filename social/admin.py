"""Admin for social accounts and posts."""

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AdminSplitDateTime

from companyos.foundation.console.toolkit import (
    ModelAdmin,
    ReadOnlyInline,
    action_form,
    count_link,
    fk_link,
    run_action,
    status_badge,
    subquery_count,
)
from social.models import SocialAccount, SocialPost
from social.services import post_cancel, post_schedule


class PostInline(ReadOnlyInline):
    model = SocialPost
    fields = ("content", "status", "scheduled_at", "published_at", "likes_count", "impressions_count")


@admin.register(SocialAccount)
class SocialAccountAdmin(ModelAdmin):
    list_display = ("__str__", fk_link("organization"), "display_name", "followers_count", "is_active", "posts_count")
    list_select_related = ("organization",)
    list_filter = ("platform", "is_active", "organization")
    search_fields = ("handle", "display_name", "=external_id")
    autocomplete_fields = ("organization", "integration")
    fieldsets = (
        (None, {"fields": ("organization", "integration", "platform", "handle", "display_name", "is_active")}),
        ("Profile", {"fields": ("external_id", "profile_url", "followers_count")}),
        ("Other", {"fields": ("metadata", "created_at", "updated_at")}),
    )
    inlines = (PostInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(posts_total=subquery_count(SocialPost, "account"))

    posts_count = staticmethod(count_link(SocialPost, "account", "posts_total", description="posts"))


class ScheduleForm(forms.Form):
    at = forms.SplitDateTimeField(label="Publish at", widget=AdminSplitDateTime)


@admin.register(SocialPost)
class SocialPostAdmin(ModelAdmin):
    list_display = (
        "__str__",
        fk_link("account"),
        status_badge("status"),
        "scheduled_at",
        "published_at",
        "is_agent_generated",
        fk_link("author"),
        fk_link("agent"),
        "likes_count",
        "impressions_count",
    )
    list_select_related = ("account", "author", "agent")
    list_filter = ("status", "account__platform", "is_agent_generated")
    search_fields = ("content", "=external_id", "account__handle")
    autocomplete_fields = ("account", "author", "agent")
    date_hierarchy = "created_at"
    # Status moves only through the actions (the services), never by hand.
    readonly_fields = ("status", "scheduled_at", "published_at", "metrics_updated_at", "error_message")
    fieldsets = (
        (
            None,
            {"fields": ("account", "content", "media_urls", "status", "scheduled_at", "published_at", "error_message")},
        ),
        ("Authorship", {"fields": ("author", "agent", "is_agent_generated")}),
        ("Platform", {"fields": ("external_id", "url")}),
        (
            "Engagement",
            {"fields": ("likes_count", "reposts_count", "replies_count", "impressions_count", "metrics_updated_at")},
        ),
        ("Other", {"classes": ("collapse",), "fields": ("metadata", "created_at", "updated_at")}),
    )
    actions = ("schedule", "cancel")

    @admin.action(description="Schedule the selected posts", permissions=["change"])
    def schedule(self, request, queryset):
        return action_form(
            self,
            request,
            queryset,
            ScheduleForm,
            title="Schedule posts",
            apply=lambda data: run_action(
                self, request, queryset, lambda post: post_schedule(post=post, at=data["at"]), verb="Scheduled"
            ),
        )

    @admin.action(description="Cancel the selected posts", permissions=["change"])
    def cancel(self, request, queryset):
        run_action(self, request, queryset, lambda post: post_cancel(post=post), verb="Canceled")
