"""The analytics cache layer: one versioned family per organization.

Everything cached about an organization's analytics lives in its family, so
one ``invalidate()`` after a write makes every cached chart of it stale
without knowing the keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from django.db import transaction

from companyos.foundation.cache import Family, get_layer


def organization_cache(organization_id: UUID) -> Family:
    """The cache family holding an organization's analytics reads."""
    return get_layer("analytics").family(f"org:{organization_id}")


def invalidate_on_commit(organization_ids: Iterable[UUID]) -> None:
    """After the current transaction commits, drop what is cached for these organizations."""
    ids = frozenset(organization_ids)

    def invalidate() -> None:
        for organization_id in ids:
            organization_cache(organization_id).invalidate()

    if ids:
        transaction.on_commit(invalidate)
