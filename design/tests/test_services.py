"""Marking component code outdated: which components it touches and what it publishes."""

import pytest

from analytics.models import Event
from core.tests.factories import UserFactory
from design.models import DesignComponent
from design.services import components_mark_outdated
from design.tests.factories import DesignComponentFactory, FigmaFileFactory

pytestmark = pytest.mark.django_db

CodeStatus = DesignComponent.CodeStatus


def test_only_components_with_code_are_marked():
    figma_file = FigmaFileFactory()
    with_code = [
        DesignComponentFactory(figma_file=figma_file, code_status=status)
        for status in (CodeStatus.GENERATED, CodeStatus.IN_REVIEW, CodeStatus.SYNCED)
    ]
    left_alone = [
        DesignComponentFactory(figma_file=figma_file, code_status=status)
        for status in (CodeStatus.NOT_STARTED, CodeStatus.OUTDATED)
    ]

    marked = components_mark_outdated(components=[*with_code, *left_alone])

    assert sorted(component.pk for component in marked) == sorted(component.pk for component in with_code)
    assert all(component.code_status == CodeStatus.OUTDATED for component in marked)
    stored = dict(DesignComponent.objects.values_list("pk", "code_status"))
    assert [stored[component.pk] for component in with_code] == [CodeStatus.OUTDATED] * 3
    assert [stored[component.pk] for component in left_alone] == [CodeStatus.NOT_STARTED, CodeStatus.OUTDATED]


def test_each_marked_component_publishes_who_marked_it_and_what_it_was():
    user = UserFactory()
    component = DesignComponentFactory(code_status=CodeStatus.SYNCED)

    components_mark_outdated(components=[component], user=user)

    event = Event.objects.get(subject_id=component.pk, event_type="design.component.outdated")
    assert (event.organization_id, event.actor_user_id, event.source) == (
        component.figma_file.organization_id,
        user.pk,
        "user",
    )
    assert event.payload["previous_code_status"] == CodeStatus.SYNCED


def test_nothing_to_mark_publishes_nothing():
    component = DesignComponentFactory(code_status=CodeStatus.NOT_STARTED)

    assert components_mark_outdated(components=[component]) == []
    assert not Event.objects.filter(event_type="design.component.outdated").exists()
