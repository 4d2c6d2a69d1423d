"""A model's events are declared on the model alone: the platform's dispatcher does the rest."""

import pytest
from django.apps import apps
from django.db import connection, models
from django.test.utils import isolate_apps

from companyos.foundation.events import StateEvents, declared_topics, get_event_model, publish_state_change
from companyos.foundation.models import BaseModel
from companyos.foundation.tracking import TrackedFieldsMixin


@pytest.fixture
def widget_model(db):
    """A model no app knows, with its table: only its declaration says it has events."""
    with isolate_apps("companyos.foundation"):

        class Widget(TrackedFieldsMixin, BaseModel):
            state_events = StateEvents(
                topic="widget",
                category="core",  # the event model's own check allows only its categories and sources
                state_field="state",
                created="widget.created",
                states={"done": "widget.done"},
                snapshot=("id", "name", "state"),
                source="user",
                extra_data=lambda widget: {"shouted": widget.name.upper()},
            )
            organization_id = models.UUIDField()
            name = models.CharField(max_length=50)
            state = models.CharField(max_length=10, default="new")

            class Meta:
                app_label = "foundation"

        with connection.schema_editor() as editor:
            editor.create_model(Widget)
        yield Widget


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
