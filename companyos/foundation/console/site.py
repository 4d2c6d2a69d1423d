"""The staff console's admin site.

``CompanyOSAdminSite`` replaces Django's default site (through
``CompanyOSAdminConfig`` in INSTALLED_APPS), so every ``admin.register`` in
the apps lands on it. The site reads what each app declares on its AppConfig:

- ``description``: the one line shown under the app on the index. The apps
  that describe themselves lead the index, in INSTALLED_APPS order; the rest
  (Django's own, such as groups) follow by name.
- ``console_links``: the app's own console pages, as (label, URL name)
  pairs, linked at the top of the index.

Every page's header holds the global search box; its page is ``search/``
(companyos.foundation.console.search).

This module is imported while INSTALLED_APPS is read: it must not import
models at module level.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import reverse


class CompanyOSAdminSite(admin.AdminSite):
    site_header = "CompanyOS console"
    site_title = "CompanyOS"
    index_title = "Run the company"
    # Throttled by django-axes; asks for a TOTP code (companyos.foundation.console.login).
    login_template = "admin/companyos/login.html"

    @property
    def login_form(self):
        from companyos.foundation.console.login import LoginForm

        return LoginForm

    def has_permission(self, request):
        """Staff, and verified with a TOTP code when ``ADMIN_REQUIRE_2FA`` asks it of their role."""
        from companyos.foundation.console.login import two_factor_required

        if not super().has_permission(request):
            return False
        return not two_factor_required(request.user) or request.user.is_verified()

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        position = {config.label: index for index, config in enumerate(apps.get_app_configs())}
        for app in app_list:
            app["description"] = getattr(apps.get_app_config(app["app_label"]), "description", "")

        def described_first(app):
            if app["description"]:
                return (0, position[app["app_label"]], "")
            return (1, 0, app["name"])

        return sorted(app_list, key=described_first)

    def get_urls(self):
        from django.urls import path

        # Before the admin's own: its catch-all would read "search" as an app label.
        return [path("search/", self.admin_view(self.search), name="search"), *super().get_urls()]

    def search(self, request):
        """The global search page (companyos.foundation.console.search)."""
        from companyos.foundation.console.search import search_view

        return search_view(self, request)

    def index(self, request, extra_context=None):
        from companyos.foundation.console.live import feed_context, organizations_of

        links = [
            (label, reverse(url_name))
            for config in apps.get_app_configs()
            for label, url_name in getattr(config, "console_links", ())
        ]
        # The activity feed of the organizations the user may watch over the websocket.
        feed = feed_context(self, list(organizations_of(request.user).values_list("pk", flat=True)))
        return super().index(request, {"console_links": links, **feed, **(extra_context or {})})


class CompanyOSAdminConfig(AdminConfig):
    default_site = "companyos.foundation.console.site.CompanyOSAdminSite"
