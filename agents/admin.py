"""Admin for agents, their task queue and collaborations.

A task's status is never edited by hand: the actions call the queue's state
machine (``agents.services``), which records who approved and when, keeps
the agent's counters exact and fires the ``agent.task.*`` events.
"""

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from agents.models import TRACK_RECORD_FIELDS, Agent, AgentCollaboration, AgentTask
from agents.services import task_approve, task_cancel, task_reject, task_retry
from companyos.foundation.console.toolkit import (
    ModelAdmin,
    ReadOnlyInline,
    action_form,
    changelist_url,
    fk_link,
    run_action,
    status_badge,
)


class TaskInline(ReadOnlyInline):
    model = AgentTask
    fk_name = "agent"
    fields = ("title", "status", "priority", "attempts", "created_at", "completed_at")


# The track record, read-only, and a link to the agent's tasks.
TRACK_RECORD = (*TRACK_RECORD_FIELDS, "all_tasks")


@admin.register(Agent)
class AgentAdmin(ModelAdmin):
    list_display = (
        "name",
        fk_link("organization"),
        status_badge("agent_type", description="type"),
        "model",
        "is_active",
        "tasks_completed",
        "tasks_failed",
        "success_percent",
        "avg_duration_ms",
        "last_active_at",
    )
    list_select_related = ("organization",)
    list_filter = ("agent_type", "is_active", "organization")
    search_fields = ("name", "slug", "model")
    autocomplete_fields = ("organization",)
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = TRACK_RECORD
    fieldsets = (
        (None, {"fields": ("organization", "name", "slug", "agent_type", "description", "is_active")}),
        ("Behaviour", {"fields": ("model", "system_prompt", "config", "capabilities", "max_concurrent_tasks")}),
        (
            "Track record",
            {"fields": TRACK_RECORD},
        ),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )
    inlines = (TaskInline,)

    @admin.display(description="success", ordering="success_rate")
    def success_percent(self, obj):
        return f"{obj.success_rate:.0%}"

    @admin.display(description="tasks")
    def all_tasks(self, obj):
        # The inline shows the newest few; an agent may have 100k tasks.
        if obj is None or obj.pk is None or obj._state.adding:
            return "—"
        return format_html(
            '<a href="{}">All tasks of this agent →</a>', changelist_url(AgentTask, agent__id__exact=obj.pk)
        )


class CollaborationInline(admin.TabularInline):
    model = AgentCollaboration
    fk_name = "task"
    extra = 0
    fields = ("initiator", "collaborator", "kind", "status", "started_at", "completed_at")
    autocomplete_fields = ("initiator", "collaborator")
    show_change_link = True


class RejectForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="Shown on the task and to its creator."
    )


@admin.register(AgentTask)
class AgentTaskAdmin(ModelAdmin):
    list_display = (
        "title",
        fk_link("agent"),
        fk_link("organization"),
        status_badge("status"),
        "priority",
        "attempts",
        "requires_approval",
        fk_link("approved_by"),
        "created_at",
        "completed_at",
    )
    list_select_related = ("agent", "organization", "approved_by")
    list_filter = ("status", "priority", "requires_approval", "agent__agent_type", "organization")
    search_fields = ("title", "task_type", "=id")
    autocomplete_fields = ("organization", "agent", "created_by", "parent_task")
    date_hierarchy = "created_at"
    readonly_fields = (
        "status",
        "approved_by",
        "approved_at",
        "rejection_reason",
        "attempts",
        "error",
        "output",
        "started_at",
        "completed_at",
        "duration_ms",
        "lease_expires_at",
        "worker_id",
        "target_content_type",
        "target_object_id",
    )
    fieldsets = (
        (None, {"fields": ("organization", "agent", "task_type", "title", "status", "priority", "input")}),
        ("Scheduling", {"fields": ("scheduled_for", "max_attempts", "attempts", "parent_task", "created_by")}),
        ("Approval", {"fields": ("requires_approval", "approved_by", "approved_at", "rejection_reason")}),
        ("Outcome", {"fields": ("output", "error", "started_at", "completed_at", "duration_ms")}),
        ("Worker", {"classes": ("collapse",), "fields": ("lease_expires_at", "worker_id")}),
        ("Target", {"classes": ("collapse",), "fields": ("target_content_type", "target_object_id", "metadata")}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )
    inlines = (CollaborationInline,)
    actions = ("approve", "reject", "retry", "cancel")

    @admin.action(description="Approve the selected tasks", permissions=["change"])
    def approve(self, request, queryset):
        run_action(self, request, queryset, lambda task: task_approve(task=task, user=request.user), verb="Approved")

    @admin.action(description="Reject the selected tasks", permissions=["change"])
    def reject(self, request, queryset):
        return action_form(
            self,
            request,
            queryset,
            RejectForm,
            title="Reject tasks",
            apply=lambda data: run_action(
                self,
                request,
                queryset,
                lambda task: task_reject(task=task, user=request.user, reason=data["reason"]),
                verb="Rejected",
            ),
        )

    @admin.action(description="Retry the selected failed tasks", permissions=["change"])
    def retry(self, request, queryset):
        run_action(self, request, queryset, lambda task: task_retry(task=task, user=request.user), verb="Retried")

    @admin.action(description="Cancel the selected tasks", permissions=["change"])
    def cancel(self, request, queryset):
        run_action(self, request, queryset, lambda task: task_cancel(task=task, user=request.user), verb="Cancelled")


@admin.register(AgentCollaboration)
class AgentCollaborationAdmin(ModelAdmin):
    list_display = (
        "__str__",
        fk_link("task"),
        fk_link("initiator"),
        fk_link("collaborator"),
        "kind",
        status_badge("status"),
        "started_at",
        "completed_at",
    )
    list_select_related = ("task", "initiator", "collaborator")
    list_filter = ("kind", "status")
    search_fields = ("task__title", "initiator__name", "collaborator__name")
    autocomplete_fields = ("task", "initiator", "collaborator")
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("task", "initiator", "collaborator", "kind", "status")}),
        ("Exchange", {"fields": ("messages", "result")}),
        ("Dates", {"fields": ("started_at", "completed_at", "created_at", "updated_at")}),
    )
