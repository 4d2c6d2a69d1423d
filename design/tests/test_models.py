"""Figma files and design components: constraints and deletion rules."""

import pytest

from agents.tests.factories import AgentFactory
from core.tests.utils import violates
from design.models import DesignComponent, FigmaFile
from design.tests.factories import DesignComponentFactory, FigmaFileFactory
from development.tests.factories import RepositoryFactory

pytestmark = pytest.mark.django_db


def test_file_key_is_unique_per_organization():
    figma_file = FigmaFileFactory()
    with violates("design_figmafile_key_unique"):
        FigmaFileFactory(organization=figma_file.organization, file_key=figma_file.file_key)
    FigmaFileFactory(file_key=figma_file.file_key)  # another organization may track it


def test_editor_type_check():
    with violates("design_figmafile_editor_type_valid"):
        FigmaFileFactory(editor_type="sketch")


def test_node_id_is_unique_per_file():
    component = DesignComponentFactory()
    with violates("design_component_node_unique"):
        DesignComponentFactory(figma_file=component.figma_file, node_id=component.node_id)


def test_kind_check():
    with violates("design_component_kind_valid"):
        DesignComponentFactory(kind="frame")


def test_code_status_check():
    with violates("design_component_code_status_valid"):
        DesignComponentFactory(code_status="done")


def test_properties_jsonb_round_trips_and_is_filterable():
    value = {"size": ["sm", "md", "lg"], "label": "Bouton « principal »", "states": {"hover": {"opacity": 0.9}}}
    component = DesignComponentFactory(properties=value)
    assert DesignComponent.objects.get(pk=component.pk).properties == value
    assert DesignComponent.objects.filter(properties__contains={"size": ["lg"]}).get() == component


def test_deleting_a_file_deletes_its_components():
    component = DesignComponentFactory()
    component.figma_file.delete()
    assert not DesignComponent.objects.filter(pk=component.pk).exists()


def test_deleting_the_organization_deletes_its_files():
    figma_file = FigmaFileFactory()
    figma_file.organization.delete()
    assert not FigmaFile.objects.filter(pk=figma_file.pk).exists()


def test_deleting_the_repository_or_the_agent_keeps_the_component():
    repository, agent = RepositoryFactory(), AgentFactory()
    component = DesignComponentFactory(code_repository=repository, generated_by_agent=agent, code_status="generated")
    repository.delete()
    agent.delete()
    component.refresh_from_db()
    assert (component.code_repository, component.generated_by_agent, component.code_status) == (None, None, "generated")
