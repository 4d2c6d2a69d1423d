"""Publishing real-time events: the one way events leave the application.

:func:`publish_on_commit` writes the ``analytics.Event`` row in the caller's
transaction (an outbox: the row commits with the change, a rollback leaves
nothing) and, once the transaction commits, sends the websocket envelope to
the organization's topic group on the channel layer. Consumers
(``companyos.realtime.consumers``) forward it to their clients.

A failed send (Redis down) is logged, rate-limited, and never raises into the
code that made the change: the row is already committed, and a reconnecting
client replays it with ``since`` (docs/realtime.md).

The 11 event types of ``events.md`` are not published by hand: the ``post_save``
receivers in ``development/events.py``, ``social/events.py`` and
``agents/events.py`` publish them from state changes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction

logger = logging.getLogger(__name__)

# Topic → analytics.Event category. A topic is the event type without its
# last word ("agent.task.started" → "agent.task"). Add a line to publish a new family.
TOPICS: dict[str, str] = {
    "deployment": "development",
    "pull_request": "development",
    "agent.task": "agents",
    "social.post": "social",
    # design.component.outdated, from design.services.components_mark_outdated.
    "design.component": "design",
}
ALL_TOPICS = "*"

# Messages on the channel layer, handled by EventsConsumer.events_deliver / events_control.
DELIVER = "events.deliver"
CONTROL = "events.control"


def topic_of(event_type: str) -> str:
    """The topic an event type belongs to; ValueError for an unknown family."""
    topic = event_type.rpartition(".")[0]
    if topic not in TOPICS:
        raise ValueError(f"Unknown event family {event_type!r}: add its topic to companyos.foundation.events.TOPICS.")
    return topic


def topic_group(organization_id: uuid.UUID | str, topic: str) -> str:
    """The channel-layer group of one organization's topic (group names allow [a-zA-Z0-9._-])."""
    return f"{settings.EVENTS_GROUP_PREFIX}.{uuid.UUID(str(organization_id)).hex}.{topic.replace('.', '_')}"


def user_group(user_id: uuid.UUID | str) -> str:
    """The group of every connection of one user (control messages: revoked membership or token)."""
    return f"{settings.EVENTS_GROUP_PREFIX}.user.{uuid.UUID(str(user_id)).hex}"


def isoformat(value: dt.datetime | None) -> str | None:
    """An aware datetime as ISO 8601 in UTC with a ``Z``; None stays None."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def model_data(instance: models.Model, fields: tuple[str, ...]) -> dict[str, Any]:
    """A JSON-ready snapshot of ``fields`` of ``instance`` (foreign keys as ``<name>_id``).

    Ids become strings and datetimes ISO 8601 strings (microseconds kept).
    """
    data: dict[str, Any] = {}
    for name in fields:
        field = instance._meta.get_field(name)
        key = field.attname
        value = getattr(instance, key)
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, dt.datetime):
            value = isoformat(value)
        elif isinstance(value, list):
            value = list(value)
        data[key] = value
    return data


def envelope_event(event) -> dict[str, Any]:
    """The ``event`` object of the websocket envelope for an ``analytics.Event`` row."""
    return {
        "id": str(event.id),
        "type": event.event_type,
        "organization": str(event.organization_id),
        "occurred_at": isoformat(event.occurred_at),
        "subject": {"type": event.subject_type, "id": str(event.subject_id) if event.subject_id else None},
        "data": event.payload,
    }


def event_frame(event, *, replay: bool = False) -> str:
    """The JSON text frame a client receives for an ``analytics.Event`` row."""
    frame: dict[str, Any] = {"type": "event"}
    if replay:
        frame["replay"] = True
    frame["event"] = envelope_event(event)
    return json.dumps(frame, separators=(",", ":"))


def publish_on_commit(
    *,
    organization_id: uuid.UUID | str,
    event_type: str,
    subject: models.Model | None,
    data: dict[str, Any],
    source: str = "system",
    actor_user_id: uuid.UUID | str | None = None,
    actor_agent_id: uuid.UUID | str | None = None,
) -> None:
    """Record ``event_type`` now and send it to websocket clients after commit.

    The ``analytics.Event`` row is inserted in the current transaction; the
    websocket message follows ``transaction.on_commit``, so a rollback sends
    and stores nothing. ``data`` must be JSON-serialisable (UUIDs, datetimes
    and Decimals are converted); it is stored as the row's payload.
    """
    from analytics.models import Event

    topic = topic_of(event_type)
    # Store exactly what clients receive: one JSON round trip normalises the types.
    payload = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    event = Event.objects.create(
        organization_id=organization_id,
        event_type=event_type,
        category=TOPICS[topic],
        source=source,
        actor_user_id=actor_user_id,
        actor_agent_id=actor_agent_id,
        subject_type=subject._meta.label_lower if subject is not None else "",
        subject_id=subject.pk if subject is not None else None,
        payload=payload,
    )
    message = {
        "type": DELIVER,
        "id": str(event.id),
        "organization": str(event.organization_id),
        # Serialised once here rather than once per connected client.
        "text": event_frame(event),
    }
    transaction.on_commit(partial(_send, topic_group(organization_id, topic), message))


def control_on_commit(*, user_id: uuid.UUID | str, **message: Any) -> None:
    """After commit, tell every connection of ``user_id`` something (e.g. ``action="membership_revoked"``)."""
    transaction.on_commit(partial(_send, user_group(user_id), {"type": CONTROL, **message}))


def _send(group: str, message: dict[str, Any]) -> None:
    try:
        _sender.group_send(group, message)
    except Exception as exc:  # a lost live message must not fail the committed change
        _failures.report(exc)


class _FailureLog:
    """Logs send failures at most once per interval, with the count suppressed since."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last = -interval
        self._suppressed = 0

    def report(self, exc: BaseException) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        logger.error(
            "Real-time event not sent (%s: %s); %d more failures suppressed. Clients catch up with 'since'.",
            type(exc).__name__,
            exc,
            suppressed,
        )


class _LayerSender:
    """Sends channel-layer messages from synchronous code through one event loop per process.

    ``async_to_sync`` would start a fresh event loop for every call made
    outside an ASGI server (shell, worker, management command), and the
    channel layer keeps its Redis connections per loop: every event would open
    a new connection. One long-lived loop in a daemon thread keeps them.
    The caller waits for the send (bounded by ``EVENTS_SEND_TIMEOUT``), so a
    script that exits right after its save has still published.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child (pre-fork servers, test workers) needs its own thread.
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="events-sender", daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def group_send(self, group: str, message: dict[str, Any]) -> None:
        layer = get_channel_layer()
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), self._running_loop())
        try:
            future.result(timeout=settings.EVENTS_SEND_TIMEOUT)
        except FutureTimeout:
            future.cancel()
            raise


_sender = _LayerSender()
_failures = _FailureLog()
