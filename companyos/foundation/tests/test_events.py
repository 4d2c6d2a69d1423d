"""A model's events are declared on the model alone: the platform's dispatcher does the rest."""

import asyncio
import datetime as dt
import json
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.test.utils import CaptureQueriesContext, isolate_apps

from companyos.foundation import events
from companyos.foundation.events import (
    StateEvents,
    declared_topics,
    event_frame,
    get_event_model,
    insert_with_events,
    publish_state_change,
)
from companyos.foundation.models import BaseModel
from companyos.foundation.tests.support import child_env
from companyos.foundation.tracking import TrackedFieldsMixin


@contextmanager
def declared_model(model_name: str, state_events: StateEvents, /, **fields: models.Field):
    """A model no app knows, with its table: only its declaration says it has events."""
    with isolate_apps("companyos.foundation"):
        meta = type("Meta", (), {"app_label": "foundation"})
        namespace = {"__module__": __name__, "Meta": meta, "state_events": state_events, **fields}
        model = type(model_name, (TrackedFieldsMixin, BaseModel), namespace)
        with connection.schema_editor() as editor:
            editor.create_model(model)
        yield model


@pytest.fixture
def widget_model(db):
    declaration = StateEvents(
        topic="widget",
        category="core",  # the event model's own check allows only its categories and sources
        state_field="state",
        created="widget.created",
        states={"done": "widget.done"},
        snapshot=("id", "name", "state"),
        source="user",
        extra_data=lambda widget: {"shouted": widget.name.upper()},
    )
    with declared_model(
        "Widget",
        declaration,
        organization_id=models.UUIDField(),
        name=models.CharField(max_length=50),
        state=models.CharField(max_length=10, default="new"),
    ) as widget:
        yield widget


@pytest.fixture
def organization_id(db):
    # Through the registry: the platform imports no domain app, even in tests.
    return apps.get_model("core", "Organization").objects.create(name="Widgets", slug="widgets").pk


def test_a_declared_model_publishes_with_no_other_registration(
    widget_model, organization_id, django_capture_on_commit_callbacks
):
    assert widget_model.tracked_fields == ("state",)  # the tracking mixin compares what the declaration names
    with django_capture_on_commit_callbacks() as sends:
        widget = widget_model.objects.create(organization_id=organization_id, name="cog")
        widget.name = "sprocket"
        widget.save()  # not a declared change: nothing
        widget.state = "done"
        widget.save()
        widget.save()  # no change: nothing

    rows = get_event_model().objects.filter(subject_id=widget.pk).order_by("id")
    assert [(row.event_type, row.category, row.source, row.subject_type) for row in rows] == [
        ("widget.created", "core", "user", "foundation.widget"),
        ("widget.done", "core", "user", "foundation.widget"),
    ]
    assert {row.organization_id for row in rows} == {organization_id}
    assert rows[1].payload == {
        "id": str(widget.pk),
        "name": "sprocket",
        "state": "done",
        "shouted": "SPROCKET",
        "previous_state": "new",
    }
    assert len(sends) == 2  # one websocket send per event, after commit


def test_a_bulk_write_publishes_through_the_same_declaration(widget_model, organization_id):
    widget = widget_model.objects.create(organization_id=organization_id, name="cog")
    widget_model.objects.filter(pk=widget.pk).update(state="done")
    widget.state = "done"

    publish_state_change(widget, previous="new", by_user=None)
    widget.save()  # the published change counts as saved

    types = get_event_model().objects.filter(subject_id=widget.pk).order_by("id").values_list("event_type", flat=True)
    assert list(types) == ["widget.created", "widget.done"]


def test_topics_come_from_the_registered_models_declarations():
    assert declared_topics() == {
        "deployment": "development",
        "pull_request": "development",
        "agent.task": "agents",
        "social.post": "social",
        "design.component": "design",
        "webhook.delivery": "integrations",
    }


def test_a_declaration_refuses_an_event_type_of_another_topic():
    with pytest.raises(ValueError, match="is not of topic 'widget'"):
        StateEvents(topic="widget", category="widgets", state_field="s", states={"done": "gadget.done"}, snapshot=())


def test_the_live_frame_is_the_one_replay_rebuilds_from_the_stored_row(
    widget_model, organization_id, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(events, "_send", sent.extend)
    with django_capture_on_commit_callbacks(execute=True):
        widget = widget_model.objects.create(organization_id=organization_id, name="cog")
    row = get_event_model().objects.get(subject_id=widget.pk)
    ((_group, message),) = sent
    ((event_id, text),) = message["events"]
    assert event_id == str(row.id)
    assert json.loads(text) == json.loads(event_frame(row))
    assert json.loads(event_frame(row, replay=True))["replay"] is True


def test_several_changes_insert_their_events_in_one_statement(widget_model, organization_id):
    widgets = [widget_model(organization_id=organization_id, name=f"cog {n}") for n in range(3)]
    with CaptureQueriesContext(connection) as queries:
        insert_with_events(widgets)
    assert len(queries) == 1
    rows = get_event_model().objects.filter(subject_id__in=[widget.pk for widget in widgets]).order_by("id")
    assert [row.subject_id for row in rows] == [widget.pk for widget in widgets]
    assert widget_model.objects.filter(pk__in=[widget.pk for widget in widgets]).count() == 3
    assert not widgets[0]._state.adding


@pytest.fixture
def gauge_model(db):
    """A declared model with the column types ``insert_with_events`` sends as JSON text."""
    declaration = StateEvents(
        topic="gauge", category="core", state_field="state", states={}, created="gauge.created",
        snapshot=("id", "state"), source="user",
    )  # fmt: skip
    with declared_model(
        "Gauge",
        declaration,
        organization_id=models.UUIDField(),
        state=models.CharField(max_length=10, default="new"),
        reading=models.DecimalField(max_digits=12, decimal_places=6),
        calibrated_on=models.DateField(),
        settings=models.JSONField(encoder=DjangoJSONEncoder),
        note=models.JSONField(null=True),
        labels=ArrayField(models.CharField(max_length=20), default=list),
        checksum=models.BinaryField(null=True),
    ) as gauge:
        yield gauge


def test_inserted_rows_hold_what_a_save_writes(gauge_model, organization_id):
    """The rows travel as JSON text: every column type must come back as the value a save stores."""
    values = {
        "organization_id": organization_id,
        "reading": Decimal("3.141593"),
        "calibrated_on": dt.date(2026, 2, 28),
        "settings": {"at": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC), "scale": [1, 2.5, None]},
        "note": "a JSON string, not an object",
        "labels": ["north", 'it\'s "quoted"'],
    }
    inserted, saved = gauge_model(**values), gauge_model(**values)
    insert_with_events([inserted])
    saved.save()
    columns = [field.attname for field in gauge_model._meta.concrete_fields if field.attname != "id"]
    rows = gauge_model.objects.filter(pk__in=[inserted.pk, saved.pk]).values("pk", *columns)
    by_pk = {row.pop("pk"): row for row in rows}
    # The saved twin has its own timestamps; the inserted row's are its instance's, to the microsecond.
    timestamps = {"created_at": inserted.created_at, "updated_at": inserted.updated_at}
    assert by_pk[inserted.pk] == {**by_pk[saved.pk], **timestamps}


def test_a_value_json_cannot_carry_is_refused_and_nothing_is_written(gauge_model, organization_id):
    gauge = gauge_model(
        organization_id=organization_id, reading=1, calibrated_on=dt.date(2026, 1, 1), settings={}, checksum=b"\x00"
    )
    with pytest.raises(TypeError, match="cannot send a Binary column value as JSON"):
        insert_with_events([gauge])
    assert not gauge_model.objects.exists()
    assert not get_event_model().objects.filter(subject_id=gauge.pk).exists()


class _SlowLayer:
    """A channel layer whose sends take 10 ms each, recording what arrived."""

    sent: list[int] = []

    async def group_send(self, group: str, message: dict) -> None:
        await asyncio.sleep(0.01)
        self.sent.append(message["n"])


@pytest.mark.django_db(transaction=True)
def test_sends_in_background_do_not_wait_and_go_out_in_order_by_the_end_of_the_block(monkeypatch):
    monkeypatch.setattr(events, "get_channel_layer", _SlowLayer)
    monkeypatch.setattr(_SlowLayer, "sent", [])
    user_id = uuid.uuid4()
    with events.sends_in_background():
        started = time.monotonic()
        for n in range(20):
            events.control_on_commit(user_id=user_id, n=n)  # in autocommit: sent at once
        assert time.monotonic() - started < 0.1, "twenty sends of 10 ms each were not waited for"
    assert _SlowLayer.sent == list(range(20))

    events.control_on_commit(user_id=user_id, n=20)  # outside the block, the caller waits for its send
    assert _SlowLayer.sent[-1] == 20


class _GatedLayer:
    """A channel layer that records each send and holds the first until the test opens the gate."""

    sent: list[tuple[str, dict]] = []
    gate = threading.Event()

    async def group_send(self, group: str, message: dict) -> None:
        self.sent.append((group, message))
        if len(self.sent) == 1:
            await asyncio.to_thread(self.gate.wait, 5)


@pytest.mark.django_db(transaction=True)
def test_events_waiting_for_the_channel_layer_go_out_as_one_message_in_order(
    widget_model, organization_id, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(events, "get_channel_layer", _GatedLayer)
    monkeypatch.setattr(_GatedLayer, "sent", [])
    monkeypatch.setattr(_GatedLayer, "gate", threading.Event())
    with events.sends_in_background():
        for n in range(5):
            widget_model.objects.create(organization_id=organization_id, name=f"cog {n}")  # autocommit: queued
        _GatedLayer.gate.set()
    stored = get_event_model().objects.filter(organization_id=organization_id).order_by("id")
    sent_ids = [[event_id for event_id, _ in message["events"]] for _, message in _GatedLayer.sent]
    assert len(sent_ids) == 2, "the four events queued behind the first did not go out together"
    assert sum(sent_ids, []) == [str(event_id) for event_id in stored.values_list("id", flat=True)]
    assert {group for group, _ in _GatedLayer.sent} == {events.topic_group(organization_id, "widget")}


def test_merging_keeps_each_groups_order_and_moves_no_event_ahead_of_a_control_message():
    def deliver(event_id: str) -> dict:
        return {"type": events.DELIVER, "events": [[event_id, f"frame {event_id}"]]}

    revoke = {"type": events.CONTROL, "action": "membership_revoked"}
    first = deliver("1")
    sends = [("g", first), ("h", deliver("2")), ("g", deliver("3")), ("user", revoke), ("g", deliver("4"))]
    merged = [(group, [event_id for event_id, _ in sent.get("events", [])]) for group, sent in events._merged(sends)]
    assert merged == [("g", ["1", "3"]), ("h", ["2"]), ("user", []), ("g", ["4"])]
    assert first["events"] == [["1", "frame 1"]], "the queued message itself was changed"
    many = events._merged([("g", deliver(str(n))) for n in range(events.EVENTS_PER_MESSAGE * 2 + 1)])
    assert [len(message["events"]) for _, message in many] == [events.EVENTS_PER_MESSAGE] * 2 + [1]


# A child process: twenty sends of 50 ms each (a second in all) queued without waiting, then it exits at once.
_EXIT_SENDS = """
import asyncio, sys, time, uuid
import django
django.setup()
from companyos.foundation import events

class FileLayer:
    async def group_send(self, group, message):
        await asyncio.sleep(0.05)
        with open(sys.argv[1], "a") as sent:
            sent.write(f"{message['n']}\\n")

events.get_channel_layer = FileLayer
started = time.monotonic()
with events.sends_in_background(wait_at_end=False):
    for n in range(20):
        events.control_on_commit(user_id=uuid.uuid4(), n=n)
print(time.monotonic() - started)
"""


def test_sends_not_waited_for_still_go_out_when_the_process_exits(tmp_path):
    sent = tmp_path / "sent"
    child = subprocess.run(
        [sys.executable, "-c", _EXIT_SENDS, str(sent)], env=child_env(), cwd=settings.BASE_DIR,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    # Queueing takes milliseconds (0.13 s once on a loaded machine); waiting would take the whole second.
    assert float(child.stdout) < 0.5, "leaving the block waited for the sends"
    assert sent.read_text().split() == [str(n) for n in range(20)]
