"""The console's global search page (``/admin/search/?q=``), asked from the box in every page's header.

Each model that declares ``global_search`` (companyos.foundation.search) and
that the user may view in the admin is asked for its first matches; the page
groups them by model, each linking to its change page. It is a plain GET
form: it works without JavaScript.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.text import capfirst

from companyos.foundation.search import matches, searchable_models

RESULTS_PER_MODEL = 10
# Longer is no id, name or URL anyone types; it would only make longer LIKE patterns.
LONGEST_QUERY = 200


def search_groups(site: admin.AdminSite, request, query: str) -> list[dict]:
    """The matches of ``query`` in each model the user may view, grouped by model, in app order."""
    groups = []
    for model, declaration in searchable_models():
        model_admin = site._registry.get(model)
        if model_admin is None or not model_admin.has_view_or_change_permission(request):
            continue
        rows = matches(model, declaration, query, RESULTS_PER_MODEL)
        if not rows:
            continue
        meta = model._meta
        url_name = f"{site.name}:{meta.app_label}_{meta.model_name}"
        more = len(rows) > RESULTS_PER_MODEL and bool(model_admin.get_search_fields(request))
        groups.append({
            "name": capfirst(meta.verbose_name_plural),
            "app": meta.app_config.verbose_name,
            "results": [
                {"label": str(row), "url": reverse(f"{url_name}_change", args=[quote(row.pk)])}
                for row in rows[:RESULTS_PER_MODEL]
            ],
            "more_url": f"{reverse(f'{url_name}_changelist')}?{urlencode({'q': query})}" if more else "",
        })  # fmt: skip
    return groups


def search_view(site: admin.AdminSite, request) -> TemplateResponse:
    query = request.GET.get("q", "").strip()[:LONGEST_QUERY]
    context = {
        **site.each_context(request),
        "title": f"Search: {query}" if query else "Search",
        "search_query": query,
        "groups": search_groups(site, request, query) if query else [],
    }
    request.current_app = site.name
    return TemplateResponse(request, "admin/companyos/search.html", context)
