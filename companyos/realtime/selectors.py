"""Reads for the websocket consumer: memberships, the events to replay, the events to repair gaps with."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable

from django.conf import settings
from django.db.models import Q

from analytics.models import Event
from companyos.foundation.db.router import current_replica_reads
from companyos.foundation.ids import uuid7_floor
from core.models import Organization


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


def events_to_replay(*, organization_id: uuid.UUID, topics: Iterable[str], since: uuid.UUID, limit: int) -> list[Event]:
    """The organization's events of ``topics`` after event id ``since``, oldest first, at most ``limit``.

    Ids are UUIDv7 taken at INSERT, but transactions commit in any order: an
    event inserted just before ``since`` may have committed (and been
    published) after the client saw ``since``. So the window opens
    ``EVENTS_REPLAY_OVERLAP_SECONDS`` earlier (this also absorbs clock skew
    between hosts); clients drop the ids they already have.
    """
    overlap_ms = int(settings.EVENTS_REPLAY_OVERLAP_SECONDS * 1000)
    floor = uuid7_floor((since.int >> 80) - overlap_ms)
    return [
        event
        for event in events_from(organization_id=organization_id, topics=topics, floor=floor, limit=limit + 1)
        if event.id != since
    ][:limit]


def events_from(*, organization_id: uuid.UUID, topics: Collection[str], floor: uuid.UUID, limit: int) -> list[Event]:
    """The organization's events of ``topics`` with an id from ``floor`` on, oldest first, at most ``limit``."""
    if not topics:
        return []
    of_topics = Q()
    for topic in topics:
        of_topics |= Q(event_type__startswith=f"{topic}.")
    # A replica serves the replay only once it has everything committed before it: nothing is missed.
    with current_replica_reads():
        events = Event.objects.filter(of_topics, organization_id=organization_id, id__gte=floor)
        return list(events.order_by("id")[:limit])
