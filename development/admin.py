"""Admin for repositories, pull requests and deployments (mirrors of GitHub and Vercel)."""

from django.contrib import admin

from companyos.foundation.console.toolkit import (
    ModelAdmin,
    ReadOnlyInline,
    count_link,
    fk_link,
    status_badge,
    subquery_count,
)
from development.models import Deployment, PullRequest, Repository


class PullRequestInline(ReadOnlyInline):
    model = PullRequest
    fields = ("number", "title", "state", "author_login", "agent_review_status", "opened_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-opened_at")


class DeploymentInline(ReadOnlyInline):
    model = Deployment
    fields = ("external_id", "environment", "state", "branch", "created_at", "ready_at")
    readonly_fields = fields


@admin.register(Repository)
class RepositoryAdmin(ModelAdmin):
    list_display = (
        "full_name",
        fk_link("organization"),
        fk_link("integration"),
        "language",
        "is_private",
        "stars_count",
        "open_pull_requests",
        "last_synced_at",
    )
    list_select_related = ("organization", "integration")
    list_filter = ("is_private", "language", "organization")
    search_fields = ("full_name", "name", "owner", "=external_id")
    autocomplete_fields = ("organization", "integration")
    readonly_fields = ("last_synced_at",)
    fieldsets = (
        (None, {"fields": ("organization", "integration", "full_name", "owner", "name", "description")}),
        ("GitHub", {"fields": ("external_id", "url", "default_branch", "is_private", "language", "stars_count")}),
        ("Sync", {"fields": ("last_synced_at", "metadata", "created_at", "updated_at")}),
    )
    inlines = (PullRequestInline, DeploymentInline)

    def get_queryset(self, request):
        open_prs = subquery_count(PullRequest, "repository", state=PullRequest.State.OPEN)
        return super().get_queryset(request).annotate(open_pull_requests_total=open_prs)

    open_pull_requests = staticmethod(
        count_link(PullRequest, "repository", "open_pull_requests_total", description="open PRs")
    )


@admin.register(PullRequest)
class PullRequestAdmin(ModelAdmin):
    list_display = (
        "__str__",
        fk_link("repository"),
        status_badge("state"),
        "is_draft",
        "author_login",
        fk_link("author"),
        status_badge("agent_review_status", description="agent review"),
        fk_link("reviewed_by_agent"),
        "opened_at",
    )
    list_select_related = ("repository", "author", "reviewed_by_agent")
    list_filter = ("state", "agent_review_status", "is_draft")
    search_fields = ("title", "=number", "author_login", "head_branch", "=head_sha")
    autocomplete_fields = ("repository", "author", "reviewed_by_agent")
    date_hierarchy = "opened_at"
    fieldsets = (
        (None, {"fields": ("repository", "number", "title", "body", "state", "is_draft", "labels")}),
        (
            "Author and branches",
            {"fields": ("author_login", "author", "head_branch", "base_branch", "head_sha", "url")},
        ),
        ("Size", {"fields": ("additions", "deletions", "changed_files")}),
        ("Agent review", {"fields": ("agent_review_status", "agent_review_summary", "reviewed_by_agent")}),
        ("Dates", {"fields": ("opened_at", "merged_at", "closed_at", "created_at", "updated_at")}),
        ("Other", {"classes": ("collapse",), "fields": ("external_id", "metadata")}),
    )


@admin.register(Deployment)
class DeploymentAdmin(ModelAdmin):
    list_display = (
        "project_name",
        "external_id",
        fk_link("repository"),
        status_badge("environment"),
        status_badge("state"),
        "branch",
        "short_sha",
        fk_link("creator"),
        "created_at",
        "build_duration_ms",
    )
    list_select_related = ("repository", "creator")
    list_filter = ("state", "environment", "organization")
    search_fields = ("=external_id", "project_name", "branch", "=commit_sha")
    autocomplete_fields = ("organization", "repository", "integration", "pull_request", "creator")
    date_hierarchy = "created_at"
    fieldsets = (
        (
            None,
            {"fields": ("organization", "project_name", "external_id", "url", "environment", "state", "error_message")},
        ),
        ("Source", {"fields": ("repository", "integration", "pull_request", "branch", "commit_sha", "creator")}),
        ("Timing", {"fields": ("started_at", "ready_at", "build_duration_ms", "created_at", "updated_at")}),
        ("Other", {"classes": ("collapse",), "fields": ("metadata",)}),
    )

    @admin.display(description="commit", ordering="commit_sha")
    def short_sha(self, obj):
        return obj.commit_sha[:7]
