"""What a caller may see and change.

Seeing: the active organizations the caller is an active member of, looked
up on every request (a membership removed takes effect on the next one).
Anything of another organization, or of none, is a 404, never a 403: the
answer must not tell who exists.

Changing: the same Django permissions the staff console's actions require
(``companyos.foundation.console.roles``: a ``viewer`` changes nothing, an
``operator`` changes the operational models, an ``admin`` everything), on
top of the membership.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.http import HttpRequest

from companyos.api.problems import Problem
from companyos.foundation.console.history import change_context
from core.models import Organization


def organization_of(request: HttpRequest, organization: str) -> Organization:
    """The active organization ``organization`` (id or slug) the caller is a member of, else a 404."""
    organizations = Organization.objects.filter(
        is_active=True, memberships__user_id=request.user.pk, memberships__user__is_active=True
    )
    try:
        organizations = organizations.filter(pk=uuid.UUID(organization))
    except ValueError:
        organizations = organizations.filter(slug=organization)
    found = organizations.first()
    if found is None:
        raise Problem(404, f"No organization {organization!r} among yours.")
    return found


def require_permission(request: HttpRequest, permission: str) -> None:
    """Refuse with a 403 unless the caller's role grants ``permission`` (``app_label.codename``)."""
    if not request.user.has_perm(permission):
        raise Problem(403, f"Your role does not allow this ({permission}).")


@contextmanager
def acting_as_caller(request: HttpRequest) -> Iterator[None]:
    """Attribute the writes of the block, in the change history, to the caller and the API."""
    with change_context(source="api", user=request.user.pk, url=request.path):
        yield
