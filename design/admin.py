"""Admin for Figma files and the design components generated into code."""

from django import forms
from django.contrib import admin, messages

from companyos.foundation.console.toolkit import (
    ModelAdmin,
    ReadOnlyInline,
    count_link,
    fk_link,
    status_badge,
    subquery_count,
)
from design.models import DesignComponent, FigmaFile
from design.services import code_status_refusal, components_mark_outdated


class ComponentInline(ReadOnlyInline):
    model = DesignComponent
    fields = ("name", "kind", "code_status", "code_path", "usage_count")


@admin.register(FigmaFile)
class FigmaFileAdmin(ModelAdmin):
    list_display = (
        "name",
        fk_link("organization"),
        status_badge("editor_type"),
        "project_name",
        "components_count",
        "last_modified_at",
        "last_synced_at",
    )
    list_select_related = ("organization",)
    list_filter = ("editor_type", "organization")
    search_fields = ("name", "=file_key", "project_name")
    autocomplete_fields = ("organization", "integration")
    date_hierarchy = "last_modified_at"
    fieldsets = (
        (None, {"fields": ("organization", "integration", "name", "file_key", "editor_type", "project_name")}),
        ("Figma", {"fields": ("url", "thumbnail_url", "version", "last_modified_at", "last_synced_at")}),
        ("Other", {"fields": ("metadata", "created_at", "updated_at")}),
    )
    inlines = (ComponentInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(components_total=subquery_count(DesignComponent, "figma_file"))

    components_count = staticmethod(
        count_link(DesignComponent, "figma_file", "components_total", description="components")
    )


class DesignComponentForm(forms.ModelForm):
    """Checks a hand-edited code status against design.services' rule; the save publishes its event."""

    def clean_code_status(self):
        code_status = self.cleaned_data["code_status"]
        if refusal := code_status_refusal(component=self.instance, code_status=code_status):
            raise forms.ValidationError(f"Cannot set the code status: {refusal}.")
        return code_status


@admin.register(DesignComponent)
class DesignComponentAdmin(ModelAdmin):
    form = DesignComponentForm
    list_display = (
        "name",
        fk_link("figma_file"),
        "kind",
        status_badge("code_status", description="code"),
        "code_path",
        fk_link("code_repository"),
        fk_link("generated_by_agent"),
        "usage_count",
        "last_used_at",
    )
    list_select_related = ("figma_file", "code_repository", "generated_by_agent")
    list_filter = ("code_status", "kind")
    search_fields = ("name", "=node_id", "code_path")
    autocomplete_fields = ("figma_file", "code_repository", "generated_by_agent")
    fieldsets = (
        (None, {"fields": ("figma_file", "node_id", "name", "description", "kind", "properties")}),
        ("Code", {"fields": ("code_status", "code_path", "code_repository", "generated_by_agent")}),
        ("Usage", {"fields": ("usage_count", "last_used_at")}),
        ("Other", {"fields": ("metadata", "created_at", "updated_at")}),
    )
    actions = ("mark_outdated",)

    @admin.action(description="Mark the code of the selected components outdated", permissions=["change"])
    def mark_outdated(self, request, queryset):
        marked = components_mark_outdated(components=queryset, user=request.user)
        self.message_user(request, f"Marked the code of {len(marked)} component(s) outdated.", messages.SUCCESS)
        skipped = queryset.count() - len(marked)
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} component(s) with no code yet or already outdated.", messages.WARNING
            )
