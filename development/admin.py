"""Admin for repositories, pull requests and deployments (mirrors of GitHub and Vercel)."""

from django import forms
from django.contrib import admin
from django.utils import timezone

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
from development.models import Deployment, PullRequest, Repository
from development.services import deployment_set_state


class PullRequestInline(ReadOnlyInline):
    model = PullRequest
    fields = ("number", "title", "state", "author_login", "agent_review_status", "opened_at")

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-opened_at")


class DeploymentInline(ReadOnlyInline):
    model = Deployment
    fields = ("external_id", "environment", "state", "branch", "created_at", "ready_at")


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
    # The state mirrors GitHub and moves only through its webhooks, under the
    # rules of development.services (a merged pull request stays merged).
    readonly_fields = ("state",)
    fieldsets = (
        (
            None,
            {
                "fields": ("repository", "number", "title", "body", "state", "is_draft", "labels"),
                "description": "The state mirrors GitHub: it changes when GitHub reports it, never by hand.",
            },
        ),
        (
            "Author and branches",
            {"fields": ("author_login", "author", "head_branch", "base_branch", "head_sha", "url")},
        ),
        ("Size", {"fields": ("additions", "deletions", "changed_files")}),
        ("Agent review", {"fields": ("agent_review_status", "agent_review_summary", "reviewed_by_agent")}),
        ("Dates", {"fields": ("opened_at", "merged_at", "closed_at", "created_at", "updated_at")}),
        ("Other", {"classes": ("collapse",), "fields": ("external_id", "metadata")}),
    )


class DeploymentStateForm(forms.Form):
    state = forms.ChoiceField(choices=Deployment.State.choices)
    error_message = forms.CharField(required=False, widget=forms.Textarea, help_text="Kept when the state is error.")


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
    # A deployment only moves forward; the "Set the state" action goes through
    # deployment_set_state, the rule Vercel's webhooks obey, so staff cannot
    # move it back by editing the field.
    readonly_fields = ("state",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "organization",
                    "project_name",
                    "external_id",
                    "url",
                    "environment",
                    "state",
                    "error_message",
                ),
                "description": "The state only moves forward: change it with the “Set the state” action.",
            },
        ),
        ("Source", {"fields": ("repository", "integration", "pull_request", "branch", "commit_sha", "creator")}),
        ("Timing", {"fields": ("started_at", "ready_at", "build_duration_ms", "created_at", "updated_at")}),
        ("Other", {"classes": ("collapse",), "fields": ("metadata",)}),
    )

    actions = ("set_state",)

    @admin.display(description="commit", ordering="commit_sha")
    def short_sha(self, obj):
        return obj.commit_sha[:7]

    @admin.action(description="Set the state of the selected deployments", permissions=["change"])
    def set_state(self, request, queryset):
        return action_form(
            self,
            request,
            queryset,
            DeploymentStateForm,
            title="Set the state",
            apply=lambda data: run_action(
                self,
                request,
                queryset,
                lambda deployment: deployment_set_state(
                    deployment=deployment, state=data["state"], at=timezone.now(), error_message=data["error_message"]
                ),
                verb="Updated",
            ),
        )
