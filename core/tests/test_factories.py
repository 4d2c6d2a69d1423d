"""Every factory builds a valid row that survives a round trip through PostgreSQL."""

import pytest
from django.apps import apps
from factory.django import DjangoModelFactory

from agents.tests import factories as agents
from analytics.tests import factories as analytics
from core.tests import factories as core
from design.tests import factories as design
from development.tests import factories as development
from integrations.tests import factories as integrations
from social.tests import factories as social

MODULES = (core, integrations, development, design, social, agents, analytics)
FACTORIES = [
    value
    for module in MODULES
    for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, DjangoModelFactory) and value.__module__ == module.__name__
]


@pytest.mark.django_db
@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_factory_creates_a_valid_row(factory):
    obj = factory()
    obj.full_clean()
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_every_model_of_our_apps_has_a_factory():
    covered = {factory._meta.model for factory in FACTORIES}
    ours = {m for m in apps.get_models() if m._meta.app_label in {module.__name__.split(".")[0] for module in MODULES}}
    # Rollups are aggregates written by analytics.ingest, never a row one builds by hand.
    assert sorted(m._meta.label for m in ours - covered) == ["analytics.EventRollup", "analytics.MetricRollup"]
