"""Reads for the websocket consumer: organization memberships.

The stored events it replays are read through ``companyos.foundation.events``.
"""

from __future__ import annotations

import uuid

from core.models import Organization, OrganizationMember


def organization_of_member(*, user_id: uuid.UUID, organization: str) -> uuid.UUID | None:
    """The id of the active organization ``organization`` (uuid or slug) if the active user is a member.

    None whether it does not exist or the user is not a member: the answer
    must not tell non-members which organizations exist.
    """
    organizations = Organization.objects.filter(
        is_active=True, memberships__user_id=user_id, memberships__user__is_active=True
    )
    try:
        organizations = organizations.filter(pk=uuid.UUID(organization))
    except ValueError:
        organizations = organizations.filter(slug=organization)
    return organizations.values_list("id", flat=True).first()


def members_among(*, organization_id: uuid.UUID | str, user_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``user_ids`` who are active members of the active organization (the rule above, for many users)."""
    members = OrganizationMember.objects.filter(
        organization_id=organization_id, organization__is_active=True, user_id__in=user_ids, user__is_active=True
    )
    return set(members.values_list("user_id", flat=True))
