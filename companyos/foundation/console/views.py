"""The history page of an object in the admin, from the trigger-recorded changes."""

from __future__ import annotations

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.template.response import TemplateResponse

from companyos.foundation.console.models import Change

CHANGES_PER_PAGE = 50


def object_history_view(model_admin, request, object_id, extra_context=None):
    """Every recorded change of one object, newest first, with its diff and who/where."""
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    if not model_admin.has_view_or_change_permission(request, obj):
        raise PermissionDenied
    changes = Change.objects.filter(object_id=obj.pk).select_related("user").order_by("-id")
    page = Paginator(changes, CHANGES_PER_PAGE).get_page(request.GET.get("p"))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"History: {obj}",
        "subtitle": None,
        "object": obj,
        "opts": model_admin.opts,
        "page": page,
        "changes": page.object_list,
        **(extra_context or {}),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/console/object_history.html", context)
