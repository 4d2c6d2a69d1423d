"""Factories for events and metric samples."""

import factory
from factory.django import DjangoModelFactory

from analytics.models import Event, Metric, Source
from core.tests.factories import OrganizationFactory


class EventFactory(DjangoModelFactory):
    class Meta:
        model = Event

    organization = factory.SubFactory(OrganizationFactory)
    event_type = "deployment.ready"
    category = Event.Category.DEVELOPMENT
    source = Event.Source.VERCEL
    subject_type = "development.deployment"
    subject_id = factory.Faker("uuid4", cast_to=None)
    payload = factory.LazyFunction(lambda: {"environment": "production"})


class MetricFactory(DjangoModelFactory):
    class Meta:
        model = Metric

    organization = factory.SubFactory(OrganizationFactory)
    name = "deployment.build_duration_ms"
    value = 84_000.0
    unit = "ms"
    dimensions = factory.LazyFunction(lambda: {"environment": "production"})
    source = Source.VERCEL
