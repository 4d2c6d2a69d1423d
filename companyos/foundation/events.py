"""Real-time events: declared on each model, published one way, stored as an outbox.

A model that has events declares them next to its fields, as a class
attribute ``state_events = StateEvents(...)``: the topic and analytics
category, the state field and which of its values are which event types, an
optional event on creation, content fields whose change on a live object is
``<topic>.updated``, the fields of the ``data`` snapshot, and the facts that
need the instance (organization, source, actors, extra data). Nothing else
registers a model: one ``post_save`` receiver, connected by
``FoundationConfig.ready``, publishes for every model with a declaration, and
:func:`declared_topics` lists the topics from the app registry's models.

Models with events mix in :class:`~companyos.foundation.tracking.TrackedFieldsMixin`;
the declaration tells it which fields to remember (the state field and the
content fields), so a save knows what changed. Writes that bypass ``save()``
(the task queue's ``UPDATE … RETURNING``, a ``QuerySet.update``) call
:func:`publish_state_change` with each changed instance and its previous
state, which publishes through the same code.

Each event is an ``EVENTS_MODEL`` row (``analytics.Event``) inserted in the
caller's transaction (an outbox: the row commits with the change, a rollback
leaves nothing); once the transaction commits, the websocket envelope goes to
the organization's topic group on the channel layer. Each server process's
relay (``companyos.realtime.feed``) hands it to its connections, which replay
the stored rows (:func:`events_to_replay`) to clients that reconnect with ``since``.

A failed send (Redis down) is logged, rate-limited, and never raises into the
code that made the change: the row is already committed, and a reconnecting
client replays it (docs/realtime.md).

Control messages are not events: :func:`control_on_commit` tells every open
connection of one user something (a revoked membership, a revoked token),
stores nothing and is never replayed.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import decimal
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from channels.layers import get_channel_layer
from django.apps import apps
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, router, transaction
from django.db.models import Q
from django.utils import timezone
from psycopg.types.json import Jsonb

from companyos.foundation import declarations
from companyos.foundation.db.router import current_replica_reads
from companyos.foundation.ids import uuid7, uuid7_floor

logger = logging.getLogger(__name__)

ALL_TOPICS = "*"

# Messages on the channel layer: DELIVER to a topic group, read by each server process's relay
# (companyos/realtime/feed.py); CONTROL to a user's group, handled by EventsConsumer.events_control.
DELIVER = "events.deliver"
CONTROL = "events.control"

# The class attribute a model declares its events in.
DECLARATION = "state_events"

InstanceFact = Callable[[models.Model], Any]


def _no_actor(instance: models.Model) -> None:
    return None


def _no_extra_data(instance: models.Model) -> dict[str, Any]:
    return {}


class StateEvents:
    """The events of one model, declared as its ``state_events`` class attribute.

    ``states`` maps values of ``state_field`` to full event types
    (``"deployment.ready"``); a save that moves the state to one of them
    publishes that type. ``created`` is published first when a row is
    created, then the event of the state it was created in. A save that
    changes ``content_fields`` without changing the state publishes
    ``<topic>.updated`` while the state is one of ``content_states``, with the
    changed names in ``data.changed``.

    ``data`` is the snapshot of ``snapshot`` fields, then ``extra_data``, then
    ``previous_<state_field>`` (None on creation), then ``changed`` for models
    with content fields. The callables take the instance: ``organization``
    (its organization's id), ``source`` (or a string), ``actor_user`` and
    ``actor_agent`` (ids or None).
    """

    def __init__(
        self,
        *,
        topic: str,
        category: str,
        state_field: str,
        states: Mapping[str, str],
        snapshot: tuple[str, ...],
        created: str | None = None,
        content_fields: tuple[str, ...] = (),
        content_states: tuple[str, ...] = (),
        organization: InstanceFact = lambda instance: instance.organization_id,
        source: str | InstanceFact = "system",
        actor_user: InstanceFact = _no_actor,
        actor_agent: InstanceFact = _no_actor,
        extra_data: Callable[[models.Model], dict[str, Any]] = _no_extra_data,
    ) -> None:
        for event_type in [*states.values(), *([created] if created else [])]:
            if event_type.rpartition(".")[0] != topic:
                raise ValueError(f"Event type {event_type!r} is not of topic {topic!r}.")
        if bool(content_fields) != bool(content_states):
            raise ValueError("Content fields need the states in which their changes are published, and vice versa.")
        self.topic = topic
        self.category = category
        self.state_field = state_field
        self.states = dict(states)
        self.snapshot = snapshot
        self.created = created
        self.content_fields = content_fields
        self.content_states = content_states
        self.organization = organization
        self.source = source if callable(source) else lambda instance: source
        self.actor_user = actor_user
        self.actor_agent = actor_agent
        self.extra_data = extra_data

    @property
    def tracked_fields(self) -> tuple[str, ...]:
        """The fields whose saved values tell what a save changed."""
        return (self.state_field, *self.content_fields)

    def __set_name__(self, owner: type, name: str) -> None:
        from companyos.foundation.tracking import TrackedFieldsMixin

        if name != DECLARATION or not issubclass(owner, TrackedFieldsMixin):
            raise TypeError(
                f"{owner.__name__}: declare events as `{DECLARATION} = StateEvents(...)` on a model "
                "that mixes in TrackedFieldsMixin."
            )
        # The mixin remembers exactly what the declaration compares.
        owner.tracked_fields = self.tracked_fields

    def event_types(
        self, instance: models.Model, *, created: bool, previous: str | None, changed: Iterable[str]
    ) -> list[str]:
        """What a change of ``instance`` from state ``previous`` means, in publishing order."""
        state = getattr(instance, self.state_field)
        event_types = [self.created] if created and self.created else []
        if created or previous != state:
            if state in self.states:
                event_types.append(self.states[state])
        elif any(name in self.content_fields for name in changed) and state in self.content_states:
            event_types.append(f"{self.topic}.updated")
        return event_types

    def data(self, instance: models.Model, *, previous: str | None, changed: Iterable[str]) -> dict[str, Any]:
        """The ``data`` of an event about ``instance``."""
        data = {**model_data(instance, self.snapshot), **self.extra_data(instance)}
        data[f"previous_{self.state_field}"] = previous
        if self.content_fields:
            data["changed"] = sorted(name for name in changed if name in self.content_fields)
        return data


def declaration_of(model: type[models.Model]) -> StateEvents | None:
    """The events ``model`` declares, or None."""
    return declarations.declaration_of(model, DECLARATION, StateEvents)


def _declaration_required(model: type[models.Model]) -> StateEvents:
    declaration = declaration_of(model)
    if declaration is None:
        raise TypeError(f"{model.__name__} declares no events ({DECLARATION} = StateEvents(...)).")
    return declaration


def declared_topics() -> dict[str, str]:
    """Every topic a model declares, with its analytics category."""
    return {
        declaration.topic: declaration.category
        for _model, declaration in declarations.declaring_models(DECLARATION, StateEvents)
    }


def of_topics(topics: Iterable[str]) -> Q:
    """The events of ``topics``: their types are ``<topic>.…``. The websocket delivers these, and only these."""
    condition = Q()
    for topic in topics:
        condition |= Q(event_type__startswith=f"{topic}.")
    return condition


@cache
def topic_prefixes() -> tuple[str, ...]:
    """``"<topic>."`` of every declared topic. Event types so named are the platform's: stored for a
    state change of the model that declares the topic, never ingested as analytics."""
    return tuple(f"{topic}." for topic in declared_topics())


def publish_state_change(
    instance: models.Model, *, previous: str | None, by_user: uuid.UUID | str | None = None
) -> None:
    """Publish what moving ``instance`` from state ``previous`` to its current one means, as a save would.

    For writes that bypass ``save()`` (``UPDATE … RETURNING``,
    ``QuerySet.update``): call it inside the transaction that changed the row,
    with the instance holding the values written. Nothing is published when
    the state did not move to a declared one. Afterwards the instance's values
    count as saved, so a later ``save()`` does not publish the change again.
    ``by_user``, when the caller knows who acted, is the events' actor and
    makes their source ``user``. (A hot path that writes the events in its
    own statement uses an :class:`Outbox`.)
    """
    outbox = Outbox()
    outbox.add_state_change(instance, previous=previous, by_user=by_user)
    outbox.write()


def insert_with_events(instances: Sequence[models.Model]) -> None:
    """Insert new ``instances`` of one model and their creation events in one statement.

    What ``save(force_insert=True)`` on each would write, in one round trip
    (its own transaction unless the caller has one), for paths that create
    rows often or in numbers. The events are sent after commit, as a save's;
    unlike a save, it sends no ``pre_save``/``post_save`` signal.
    """
    model = type(instances[0])
    declaration = _declaration_required(model)
    using = router.db_for_write(model)
    insert_sql, rows = _insert_rows_sql(model, instances, connections[using])
    outbox = Outbox()
    for instance in instances:
        outbox.add(declaration, instance, created=True, previous=None, changed=(), by_user=None)
    events_sql, events = outbox.insert_sql()
    with connections[using].cursor() as cursor:
        cursor.execute(f"WITH inserted AS ({insert_sql}) {events_sql}", (rows, events))
    for instance in instances:
        instance._state.adding, instance._state.db = False, using
        instance.remember_tracked()
    outbox.send_on_commit()


def _insert_rows_sql(model: type[models.Model], instances: Sequence[models.Model], connection) -> tuple[str, str]:
    """The INSERT of ``instances`` and the value of its one placeholder: the rows as a JSON array.

    The rows travel as one parameter, as the event rows do: one value for the
    driver to quote however many rows there are, where a compiled INSERT binds
    an array per column. Each value is the one a save would write: the field's
    ``pre_save`` (``auto_now``), then its ``get_db_prep_save``.
    """
    sql, fields = _insert_rows_statement(model, connection.alias)
    rows = [{field.column: _prepared(field, instance, connection) for field in fields} for instance in instances]
    return sql, json.dumps(rows, default=_row_value_json, separators=_COMPACT)


@cache
def _insert_rows_statement(
    model: type[models.Model], using: str, placeholder: str = "%s"
) -> tuple[str, list[models.Field]]:
    """The INSERT of ``model``'s rows from a JSON array in ``placeholder``, and the fields it writes:
    built once per model (new rows in :func:`_insert_rows_sql`, event rows in an :class:`Outbox`)."""
    fields = [field for field in model._meta.local_concrete_fields if not field.generated]
    quote = connections[using].ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(field.column) for field in fields)
    # Only the model's table and column names are interpolated.
    sql = f"INSERT INTO {table} ({columns}) SELECT {columns} "  # noqa: S608
    return sql + f"FROM jsonb_populate_recordset(NULL::{table}, {placeholder}::jsonb)", fields


def _prepared(field: models.Field, instance: models.Model, connection) -> Any:
    value = field.get_db_prep_save(field.pre_save(instance, True), connection)
    if isinstance(value, Jsonb):
        # A JSONField's value, wrapped with its encoder's dumps: nested as JSON in the row.
        return value.obj if value.dumps is json.dumps else json.loads(value.dumps(value.obj))
    return value


def _row_value_json(value: Any) -> Any:
    """A column value JSON has no type for, as text PostgreSQL reads back into the column's type."""
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()  # microseconds kept, unlike DjangoJSONEncoder's
    raise TypeError(f"insert_with_events cannot send a {type(value).__name__} column value as JSON: {value!r}")


def publish_saved(sender, instance: models.Model, created: bool, raw: bool, update_fields=None, **kwargs) -> None:
    """Publish what a save means, for any model that declares events.

    The one ``post_save`` receiver, connected for all senders by
    ``FoundationConfig.ready``: a model needs no registration beyond its
    declaration, and other models' saves return at once.
    """
    declaration = declaration_of(sender)
    if raw or declaration is None:  # raw: fixtures load silently
        return
    changes = instance.tracked_changes(update_fields)
    if created or changes:
        state = declaration.state_field
        previous = changes.get(state, None if created else getattr(instance, state))
        outbox = Outbox()
        outbox.add(declaration, instance, created=created, previous=previous, changed=tuple(changes), by_user=None)
        outbox.write()


class Outbox:
    """The event rows of some changes and their live sends, written with the changes.

    The rows are built in Python (ids, timestamps, the ``data`` snapshot) and
    inserted by one statement: on their own (:meth:`write`), or inside the
    caller's own statement (:meth:`insert_sql`, then :meth:`send_on_commit`),
    so that a hot path writes a change and its events in one round trip.
    Either way each row commits with the change, and its send goes to the
    channel layer once the transaction has committed.
    """

    def __init__(self) -> None:
        self._rows: list[str] = []
        # (group, envelope, data JSON): the channel-layer messages are built once the rows are written.
        self._sends: list[tuple[str, dict[str, Any], str]] = []

    def add_state_change(
        self, instance: models.Model, *, previous: str | None, by_user: uuid.UUID | str | None = None
    ) -> None:
        """Add the events of a write that bypassed ``save()`` (see :func:`publish_state_change`);
        the instance's values count as saved from now on."""
        declaration = _declaration_required(type(instance))
        self.add(declaration, instance, created=False, previous=previous, changed=(), by_user=by_user)
        instance.remember_tracked()

    def add(
        self,
        declaration: StateEvents,
        instance: models.Model,
        *,
        created: bool,
        previous: str | None,
        changed: tuple[str, ...],
        by_user: uuid.UUID | str | None,
    ) -> None:
        """Add the events of one change of ``instance``, in publishing order."""
        event_types = declaration.event_types(instance, created=created, previous=previous, changed=changed)
        if not event_types:
            return
        data = declaration.data(instance, previous=None if created else previous, changed=changed)
        # Serialised once: the stored row and the frame clients receive carry the same text.
        data_json = json.dumps(data, cls=DjangoJSONEncoder, separators=_COMPACT)
        organization_id = str(declaration.organization(instance))
        actor_user = by_user or declaration.actor_user(instance)
        actor_agent = declaration.actor_agent(instance)
        subject_id = str(instance.pk)
        row = {
            "organization_id": organization_id,
            "category": declaration.category,
            "source": "user" if by_user else declaration.source(instance),
            "actor_user_id": None if actor_user is None else str(actor_user),
            "actor_agent_id": None if actor_agent is None else str(actor_agent),
            "subject_type": instance._meta.label_lower,
            "subject_id": subject_id,
        }
        group = topic_group(organization_id, declaration.topic)
        for event_type in event_types:
            event_id, now = str(uuid7()), isoformat(timezone.now())
            # Every column of the event model: the INSERT takes them all from these rows.
            stored = {**row, "id": event_id, "event_type": event_type, "occurred_at": now, "created_at": now}
            self._rows.append(_json_with({**stored, "updated_at": now}, "payload", data_json))
            envelope = {
                "id": event_id,
                "type": event_type,
                "organization": organization_id,
                "occurred_at": now,
                "subject": {"type": row["subject_type"], "id": subject_id},
            }
            self._sends.append((group, envelope, data_json))

    def insert_sql(self, *, placeholder: str = "%s", only_if_rows_in: str | None = None) -> tuple[str, str]:
        """The INSERT of the rows, and the value for its one ``placeholder``.

        ``only_if_rows_in`` names a CTE of the caller's statement: the rows are
        inserted only if it returned a row (the change happened).
        """
        model = get_event_model()
        sql, _ = _insert_rows_statement(model, router.db_for_write(model), placeholder)
        if only_if_rows_in:
            sql += f" WHERE EXISTS (SELECT FROM {only_if_rows_in})"
        return sql, f"[{','.join(self._rows)}]"

    def write(self) -> None:
        """Insert the rows in the current transaction; send them after commit."""
        if not self._rows:
            return
        sql, rows = self.insert_sql()
        with connections[router.db_for_write(get_event_model())].cursor() as cursor:
            cursor.execute(sql, [rows])
        self.send_on_commit()

    def send_on_commit(self) -> None:
        """Send each event to its group once the transaction that wrote the rows commits."""
        if self._sends:
            transaction.on_commit(partial(_send_events, list(self._sends)))


_COMPACT = (",", ":")


def _json_with(head: dict[str, Any], key: str, value_json: str) -> str:
    """``head`` as compact JSON with ``key`` appended, its value the already serialised ``value_json``."""
    text = json.dumps(head, separators=_COMPACT)
    return f'{text[:-1]}{"," if head else ""}"{key}":{value_json}}}'


def _deliver_message(envelope: dict[str, Any], data_json: str) -> dict[str, Any]:
    """The channel-layer message of one event: ``events`` lists ``[id, frame]`` pairs, the client's
    frame serialised once here rather than once per connected client. The events of one group
    that go out together travel as one message listing them all (:func:`_merged`)."""
    return {"type": DELIVER, "events": [[envelope["id"], _frame(envelope, data_json, replay=False)]]}


def _frame(envelope: dict[str, Any], data_json: str, *, replay: bool) -> str:
    head = '{"type":"event","replay":true,"event":' if replay else '{"type":"event","event":'
    return f"{head}{_json_with(envelope, 'data', data_json)}}}"


def get_event_model() -> type[models.Model]:
    """The model of stored events, ``settings.EVENTS_MODEL`` (as ``get_user_model`` for users)."""
    return apps.get_model(settings.EVENTS_MODEL, require_ready=False)


# --- Replay: the stored events a client missed ---------------------------------


def events_to_replay(
    *, organization_id: uuid.UUID, topics: Iterable[str], since: uuid.UUID, limit: int
) -> list[models.Model]:
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


def events_from(
    *, organization_id: uuid.UUID, topics: Collection[str], floor: uuid.UUID, limit: int
) -> list[models.Model]:
    """The organization's events of ``topics`` with an id from ``floor`` on, oldest first, at most ``limit``."""
    if not topics:
        return []
    # A replica serves the replay only once it has everything committed before it: nothing is missed.
    with current_replica_reads():
        events = get_event_model().objects.filter(of_topics(topics), organization_id=organization_id, id__gte=floor)
        return list(events.order_by("id")[:limit])


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
    envelope = envelope_event(event)
    data = envelope.pop("data")
    return _frame(envelope, json.dumps(data, separators=_COMPACT), replay=replay)


def control_on_commit(*, user_id: uuid.UUID | str, **message: Any) -> None:
    """After commit, tell every connection of ``user_id`` something (e.g. ``action="membership_revoked"``)."""
    transaction.on_commit(partial(_send, [(user_group(user_id), {"type": CONTROL, **message})]))


@contextmanager
def sends_in_background(*, wait_at_end: bool = True) -> Iterator[None]:
    """Within the block, this thread's sends do not wait for the channel layer.

    They queue (up to :data:`BACKGROUND_SENDS`; past that the sender waits
    for room) and go out in order from the sender's loop, so a loop of short
    units of work (the agent worker) never waits on Redis between them.
    Leaving the block waits until the queue is sent (at most
    ``EVENTS_SEND_TIMEOUT``), so a process that stops after the block has
    still published. With ``wait_at_end=False`` it does not (a call that
    returns to its caller, like enqueueing a task): the queue is sent
    meanwhile, and a process that exits sends what is left first.
    """
    token = _in_background.set(True)
    try:
        yield
    finally:
        _in_background.reset(token)
        if wait_at_end:
            _flush_reporting_failures()


def _flush_reporting_failures() -> None:
    try:
        _sender.flush()
    except Exception as exc:  # as for any send: logged, never raised into the caller
        _failures.report(exc)


def _send_events(sends: list[tuple[str, dict[str, Any], str]]) -> None:
    _send([(group, _deliver_message(envelope, data_json)) for group, envelope, data_json in sends])


def _send(sends: list[tuple[str, dict[str, Any]]]) -> None:
    """Send one commit's messages, in order: in the background within :func:`sends_in_background`."""
    try:
        if _in_background.get():
            _sender.send_later(sends)
        else:
            _sender.send_now(sends)
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


# Commits whose sends a thread in sends_in_background() may have waiting before it waits for room.
BACKGROUND_SENDS = 1000
# Events one DELIVER message carries at most.
EVENTS_PER_MESSAGE = 100


@dataclass
class _SenderLoop:
    """A process's sending loop, and the queue of background sends it drains in order."""

    loop: asyncio.AbstractEventLoop
    background: asyncio.Queue
    room: threading.Semaphore
    # A forked child (pre-fork servers, test workers) inherits its parent's, without the thread.
    pid: int


class _LayerSender:
    """Sends channel-layer messages from synchronous code through one event loop per process.

    ``async_to_sync`` would start a fresh event loop for every call made
    outside an ASGI server (shell, worker, management command), and the
    channel layer keeps its Redis connections per loop: every event would open
    a new connection. One long-lived loop in a daemon thread keeps them.
    :meth:`send_now` waits for the sends (each bounded by ``EVENTS_SEND_TIMEOUT``),
    so a script that exits right after its save has still published;
    :meth:`send_later` queues them for the loop to send in order, and
    :meth:`flush` waits for that queue. Either way the events of one group
    that go out together travel as one message (:func:`_merged`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: _SenderLoop | None = None

    def _running(self) -> _SenderLoop:
        current = self._current
        if current is not None and current.pid == os.getpid():
            return current  # the common case, once per send: no lock
        with self._lock:
            if self._current is None or self._current.pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="events-sender", daemon=True).start()
                current = _SenderLoop(loop, asyncio.Queue(), threading.Semaphore(BACKGROUND_SENDS), os.getpid())
                asyncio.run_coroutine_threadsafe(self._drain(current), loop)
                self._current = current
                # Exit handlers run while daemon threads still do: the loop sends what is queued.
                atexit.register(self.flush_at_exit, os.getpid())
            return self._current

    def send_now(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        messages = _merged(sends)
        self._wait(_send_each(messages), timeout=settings.EVENTS_SEND_TIMEOUT * len(messages))

    def send_later(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        current = self._running()
        if not current.room.acquire(timeout=settings.EVENTS_SEND_TIMEOUT):
            raise TimeoutError(f"{BACKGROUND_SENDS} commits' sends are still waiting for the channel layer")
        current.loop.call_soon_threadsafe(current.background.put_nowait, sends)

    def flush(self) -> None:
        """Wait until every queued send has been made (or has failed)."""
        self._wait(self._running().background.join())

    def flush_at_exit(self, pid: int) -> None:
        """:meth:`flush` in the process that started the loop (a forked child inherits the handler)."""
        if pid == os.getpid():
            _flush_reporting_failures()

    def _wait(self, coroutine, *, timeout: float | None = None) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running().loop)
        try:
            future.result(timeout=timeout or settings.EVENTS_SEND_TIMEOUT)
        except FutureTimeout:
            future.cancel()
            raise

    @staticmethod
    async def _drain(current: _SenderLoop) -> None:
        queue = current.background
        while True:
            waiting = list(await queue.get())
            commits = 1
            # What else is queued goes out with it (a claimed batch's commits, say).
            while len(waiting) < EVENTS_PER_MESSAGE and not queue.empty():
                waiting.extend(queue.get_nowait())
                commits += 1
            try:
                await _send_each(_merged(waiting))
            finally:
                for _ in range(commits):
                    queue.task_done()
                    current.room.release()


async def _send_each(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Send the messages in order, each within ``EVENTS_SEND_TIMEOUT``; a failure is logged and the next goes out."""
    layer = get_channel_layer()
    for group, message in messages:
        try:
            # A timeout context, not wait_for(): no task created per send.
            async with asyncio.timeout(settings.EVENTS_SEND_TIMEOUT):
                await layer.group_send(group, message)
        except Exception as exc:  # as in _send: a lost live message never fails anything
            _failures.report(exc)


def _merged(sends: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """``sends`` with the events of each group in DELIVER messages of up to :data:`EVENTS_PER_MESSAGE`,
    each group's in their order.

    A send of a user's group (CONTROL) is never merged, and no event queued
    after it moves ahead of it: a removed member gets nothing committed later.
    """
    merged: list[tuple[str, dict[str, Any]]] = []
    open_deliveries: dict[str, dict[str, Any]] = {}
    for group, message in sends:
        if message["type"] != DELIVER:
            open_deliveries.clear()
            merged.append((group, message))
        elif group in open_deliveries and len(open_deliveries[group]["events"]) < EVENTS_PER_MESSAGE:
            open_deliveries[group]["events"].extend(message["events"])
        else:
            open_deliveries[group] = {**message, "events": list(message["events"])}
            merged.append((group, open_deliveries[group]))
    return merged


_sender = _LayerSender()
_failures = _FailureLog()
_in_background: ContextVar[bool] = ContextVar("sends_in_background", default=False)
