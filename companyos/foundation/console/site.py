"""The staff console's admin site.

``CompanyOSAdminSite`` replaces Django's default site (through
``CompanyOSAdminConfig`` in INSTALLED_APPS), so every ``admin.register`` in
the apps lands on it. It groups the index as the seven domains, in the order
staff think of them, each with its one-line description from the AppConfig.

This module is imported while INSTALLED_APPS is read: it must not import
models at module level.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import NoReverseMatch, reverse

# The seven domains, in index order; any other app (history, roles) follows.
DOMAINS = ("core", "integrations", "development", "design", "social", "agents", "analytics")


class CompanyOSAdminSite(admin.AdminSite):
    site_header = "CompanyOS console"
    site_title = "CompanyOS"
    index_title = "Run the company"

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        rank = {label: position for position, label in enumerate(DOMAINS)}
        for app in app_list:
            app["description"] = getattr(apps.get_app_config(app["app_label"]), "description", "")
        return sorted(app_list, key=lambda app: (rank.get(app["app_label"], len(DOMAINS)), app["name"]))

    def each_context(self, request):
        context = super().each_context(request)
        context["dashboard_url"] = _dashboard_url()
        return context


def _dashboard_url() -> str | None:
    """The analytics dashboard (issue 8), linked from the index when it exists."""
    for name in ("analytics:dashboard", "analytics-dashboard", "admin:analytics_dashboard"):
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return None


class CompanyOSAdminConfig(AdminConfig):
    default_site = "companyos.foundation.console.site.CompanyOSAdminSite"
