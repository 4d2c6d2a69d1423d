"""What an operator can type that the database would refuse is a form error, never a 500."""

import json

import pytest
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper

from agents.models import AgentTask
from agents.tests.factories import AgentTaskFactory

pytestmark = pytest.mark.django_db


def posted(response) -> dict:
    """The change form's data as a browser would post it back unchanged (inlines included)."""
    data = {}
    form = response.context["adminform"].form
    for bound in form:
        widget = bound.field.widget
        if isinstance(widget, RelatedFieldWidgetWrapper):
            widget = widget.widget
        context = widget.get_context(bound.html_name, bound.value(), {})["widget"]
        for sub in context.get("subwidgets") or [context]:
            if sub.get("type") == "checkbox":
                if sub["attrs"].get("checked"):
                    data[sub["name"]] = "on"
            elif sub.get("value") is not None:
                data[sub["name"]] = sub["value"]
    for formset in response.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
    return data


def change(client, task, **changes):
    url = f"/admin/agents/agenttask/{task.pk}/change/"
    return client.post(url, {**posted(client.get(url)), **changes})


def test_unticking_requires_approval_on_a_task_awaiting_approval_is_a_form_error(operator_client):
    task = AgentTaskFactory(status=AgentTask.Status.AWAITING_APPROVAL, requires_approval=True)
    url = f"/admin/agents/agenttask/{task.pk}/change/"
    assert change(operator_client, task).status_code == 302, "the untouched form saves"

    unticked = posted(operator_client.get(url))
    del unticked["requires_approval"]
    page = operator_client.post(url, unticked)

    assert page.status_code == 200
    assert page.context["adminform"].form.non_field_errors()
    task.refresh_from_db()
    assert task.requires_approval


@pytest.mark.parametrize("depth", [65, 5_000, 100_000])
def test_json_nested_too_deep_in_a_task_input_is_a_form_error(operator_client, settings, depth):
    task = AgentTaskFactory()
    typed = "[" * depth + "]" * depth

    page = change(operator_client, task, input=typed)

    assert page.status_code == 200
    errors = page.context["adminform"].form.errors["input"]
    assert errors == [f"The JSON nests arrays and objects deeper than {settings.JSON_MAX_DEPTH} levels."]
    task.refresh_from_db()
    assert task.input == {"pull_request": 1}


def test_json_within_the_bounds_saves(operator_client):
    task = AgentTaskFactory()
    value = {"nested": json.loads("[" * 40 + "]" * 40)}

    assert change(operator_client, task, input=json.dumps(value)).status_code == 302
    task.refresh_from_db()
    assert task.input == value


@pytest.mark.parametrize("typed", ['{"a": "\\u0000"}', '{"a": 1e999}'], ids=["nul", "infinite"])
def test_json_the_database_cannot_store_is_a_form_error(operator_client, typed):
    task = AgentTaskFactory()

    page = change(operator_client, task, input=typed)

    assert page.status_code == 200
    assert page.context["adminform"].form.errors["input"]
