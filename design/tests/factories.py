"""Factories for Figma files and design components."""

import factory
from factory.django import DjangoModelFactory

from core.tests.factories import OrganizationFactory
from design.models import DesignComponent, FigmaFile


class FigmaFileFactory(DjangoModelFactory):
    class Meta:
        model = FigmaFile

    organization = factory.SubFactory(OrganizationFactory)
    file_key = factory.Sequence(lambda n: f"FgK{n:019d}")
    name = factory.Sequence(lambda n: f"Design System v{n}")
    url = factory.LazyAttribute(lambda o: f"https://www.figma.com/design/{o.file_key}")
    project_name = "Product"
    version = "1"


class DesignComponentFactory(DjangoModelFactory):
    class Meta:
        model = DesignComponent

    figma_file = factory.SubFactory(FigmaFileFactory)
    node_id = factory.Sequence(lambda n: f"{n}:1")
    name = factory.Sequence(lambda n: f"Button/Variant {n}")
    kind = DesignComponent.Kind.COMPONENT
    properties = factory.LazyFunction(lambda: {"size": ["sm", "md", "lg"], "variant": ["primary", "ghost"]})
