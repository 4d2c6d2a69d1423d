"""Admin for the activity stream and metrics: read-only, built for millions of rows.

See ``companyos.foundation.console.large`` for how the changelists stay bounded: estimated
counts, a date hierarchy that reads no rows, filters served by indexes.
"""

import uuid

from django.apps import apps
from django.contrib import admin
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from analytics.models import Event, Metric
from companyos.foundation.console.large import LargeTableAdmin, recent_values_filter
from companyos.foundation.console.toolkit import ModelAdmin, fk_link, status_badge


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
    # An exact event or subject id (see get_search_results).
    search_fields = ("=id",)
    # Recorded time, which the primary key carries: the hierarchy reads no rows.
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("organization", "event_type", "category", "source", "occurred_at")}),
        ("Actor and subject", {"fields": ("actor_user", "actor_agent", "subject_type", "subject_id")}),
        ("Payload", {"fields": ("payload", "created_at", "updated_at")}),
    )

    def get_search_results(self, request, queryset, search_term):
        """An id finds the event, or the events about that object.

        The subject index leads with subject_type, so the subject id is
        looked up under every model label: one index probe each, no scan.
        """
        if not search_term.strip():
            return queryset, False
        try:
            term = uuid.UUID(search_term.strip())
        except ValueError:
            return queryset.none(), False
        labels = [model._meta.label_lower for model in apps.get_models()]
        return queryset.filter(Q(pk=term) | Q(subject_type__in=labels, subject_id=term)), False

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
