"""Events and metrics: constraints, JSONB, and history that outlives its actors."""

import math

import pytest

from agents.tests.factories import AgentFactory
from analytics.models import Event, Metric
from analytics.tests.factories import EventFactory, MetricFactory
from core.tests.factories import UserFactory
from core.tests.utils import violates

pytestmark = pytest.mark.django_db


class TestEvent:
    def test_category_check(self):
        with violates("analytics_event_category_valid"):
            EventFactory(category="misc")

    def test_source_check(self):
        with violates("analytics_event_source_valid"):
            EventFactory(source="carrier-pigeon")

    def test_deleting_the_actor_user_keeps_the_event(self):
        user = UserFactory()
        event = EventFactory(actor_user=user)
        user.delete()
        event.refresh_from_db()
        assert event.actor_user is None

    def test_deleting_the_actor_agent_keeps_the_event(self):
        agent = AgentFactory()
        event = EventFactory(organization=agent.organization, actor_agent=agent, source="agent")
        agent.delete()
        event.refresh_from_db()
        assert event.actor_agent is None

    def test_deleting_the_organization_deletes_its_events_and_metrics(self):
        event = EventFactory()
        metric = MetricFactory(organization=event.organization)
        event.organization.delete()
        assert not Event.objects.filter(pk=event.pk).exists()
        assert not Metric.objects.filter(pk=metric.pk).exists()

    def test_payload_jsonb_round_trips(self):
        payload = {"deployment": {"url": "https://x.vercel.app", "regions": ["iad1", "fra1"]}, "note": "✓ déployé"}
        event = EventFactory(payload=payload)
        assert Event.objects.get(pk=event.pk).payload == payload
        assert Event.objects.filter(payload__deployment__regions__contains=["fra1"]).get() == event

    def test_ids_follow_insertion_order(self):
        events = EventFactory.create_batch(5)
        assert sorted(e.pk for e in events) == [e.pk for e in events]


class TestMetric:
    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_values_are_refused(self, value):
        with violates("analytics_metric_value_finite"):
            MetricFactory(value=value)

    @pytest.mark.parametrize("value", [0.0, -1.5, 1e300, -1e300, 5e-324])
    def test_finite_values_are_kept_exactly(self, value):
        metric = MetricFactory(value=value)
        assert Metric.objects.get(pk=metric.pk).value == value

    def test_source_check(self):
        with violates("analytics_metric_source_valid"):
            MetricFactory(source="guess")

    def test_dimensions_are_filterable(self):
        metric = MetricFactory(dimensions={"environment": "production", "region": "fra1"})
        MetricFactory(organization=metric.organization, dimensions={"environment": "preview"})
        assert Metric.objects.filter(dimensions__contains={"environment": "production"}).get() == metric
