"""Admin for the activity stream and metrics: read-only, built for millions of rows.

See ``companyos.admin_large`` for how the changelists stay bounded: estimated
counts, a date hierarchy that reads no rows, filters served by indexes.
"""

from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from analytics.models import Event, Metric
from companyos.admin_large import LargeTableAdmin, recent_values_filter
from companyos.admin_utils import ModelAdmin, fk_link, status_badge


@admin.register(Event)
class EventAdmin(LargeTableAdmin, ModelAdmin):
    list_display = (
        "occurred_at",
        "event_type",
        status_badge("category"),
        "source",
        fk_link("organization"),
        fk_link("actor_user"),
        fk_link("actor_agent"),
        "subject",
    )
    list_select_related = ("organization", "actor_user", "actor_agent")
    list_filter = ("organization", recent_values_filter("event_type"))
    # Exact ids only: each is a primary-key or index lookup.
    search_fields = ("=id", "=subject_id")
    # Recorded time, which the primary key carries: the hierarchy reads no rows.
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("organization", "event_type", "category", "source", "occurred_at")}),
        ("Actor and subject", {"fields": ("actor_user", "actor_agent", "subject_type", "subject_id")}),
        ("Payload", {"fields": ("payload", "created_at", "updated_at")}),
    )

    @admin.display(description="subject")
    def subject(self, obj):
        if not obj.subject_type or obj.subject_id is None:
            return "—"
        app_label, _, model_name = obj.subject_type.partition(".")
        try:
            url = reverse(f"admin:{app_label}_{model_name}_change", args=[obj.subject_id])
        except NoReverseMatch:
            return obj.subject_type
        return format_html('<a href="{}">{}</a>', url, model_name.replace("_", " "))


@admin.register(Metric)
class MetricAdmin(LargeTableAdmin, ModelAdmin):
    list_display = ("timestamp", "name", "value", "unit", "source", fk_link("organization"), "dimensions")
    list_select_related = ("organization",)
    list_filter = ("organization", recent_values_filter("name"))
    search_fields = ("=id",)
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("organization", "name", "value", "unit", "timestamp", "source")}),
        ("Dimensions", {"fields": ("dimensions", "created_at", "updated_at")}),
    )
