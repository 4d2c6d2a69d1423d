"""The change history across every object: who changed what, from where; and the worker's jobs."""

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from procrastinate.contrib.django.admin import ProcrastinateJobAdmin
from procrastinate.contrib.django.models import ProcrastinateJob

from companyos.foundation.console.history import SOURCES, tracked_models
from companyos.foundation.console.large import LargeTableAdmin
from companyos.foundation.console.models import Change
from companyos.foundation.console.toolkit import ModelAdmin, badge


class ModelFilter(admin.SimpleListFilter):
    """The tracked models, listed from their declarations rather than SELECT DISTINCT."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        return [(model._meta.label_lower, model._meta.label_lower) for model in tracked_models()]

    def queryset(self, request, queryset):
        return queryset.filter(model=self.value()) if self.value() else queryset


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return [(source, source) for source in SOURCES] + [("-", "outside the app")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(source="" if self.value() == "-" else self.value())


@admin.register(Change)
class ChangeAdmin(LargeTableAdmin, ModelAdmin):
    """Read-only; the table grows with every write, so it pages like the analytics tables."""

    list_display = ("at", "model", "object_link", "operation_badge", "user", "source_label", "changed_columns")
    list_select_related = ("user",)
    list_filter = (ModelFilter, "operation", SourceFilter)
    search_fields = ("=object_id", "=context_id")
    search_help_text = "An object id, or a context id (the changes of one request or block)."
    timestamps = ()
    fields = ("at", "model", "object_id", "operation", "user", "source", "context_id", "context", "diff")
    readonly_fields = fields

    def has_delete_permission(self, request, obj=None):
        # History is removed by retention (prune_history), not by hand.
        return False

    @admin.display(description="object")
    def object_link(self, obj):
        return format_html('<a href="?object_id={}">{}</a>', obj.object_id, str(obj.object_id)[:13] + "…")

    @admin.display(description="operation")
    def operation_badge(self, obj):
        return badge(obj, obj.operation)

    @admin.display(description="from")
    def source_label(self, obj):
        return obj.source or "outside the app"

    @admin.display(description="changed")
    def changed_columns(self, obj):
        return ", ".join(name for name, _, _ in obj.fields)

    @admin.display(description="before → after")
    def diff(self, obj):
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", obj.fields)
        return format_html('<table class="cos-diff"><tr><th></th><th>before</th><th>after</th></tr>{}</table>', rows)


class JobAdmin(ProcrastinateJobAdmin):
    """Procrastinate's job admin, minus the inline styles the console's Content-Security-Policy refuses.

    Its summary template is overridden in templates/procrastinate/admin/summary.html.
    """

    @admin.display(description="Args")
    def pretty_args(self, instance: ProcrastinateJob) -> str:
        # The text is already escaped by the parent's format_html; only its style attribute changes.
        return mark_safe(super().pretty_args(instance).replace(' style="margin: 0"', ' class="cos-job-args"'))  # noqa: S308


admin.site.unregister(ProcrastinateJob)
admin.site.register(ProcrastinateJob, JobAdmin)
