"""Template tags of the staff console."""

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode

from companyos.foundation.console.large import bounded_date_hierarchy

register = template.Library()


@register.tag(name="bounded_date_hierarchy")
def bounded_date_hierarchy_tag(parser, token):
    """Like Django's ``date_hierarchy``, without scanning the table (admin_large)."""
    return InclusionAdminNode(
        parser, token, func=bounded_date_hierarchy, template_name="date_hierarchy.html", takes_context=False
    )
