"""generate_data fills every model, twice over on the same database, with a progress bar and summary."""

from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command

from analytics.models import Event, EventRollup, Metric, MetricRollup

APPS = ("core", "integrations", "development", "design", "social", "agents", "analytics")
# Filled by other paths than generate_data (tokens, deliveries, history).
NOT_GENERATED = {"core.ApiToken", "integrations.WebhookDelivery"}


@pytest.mark.slow
def test_generate_data_fills_every_model_and_can_run_again(db):
    out, err = StringIO(), StringIO()
    options = {"organizations": 1, "users": 2, "events": 300, "metrics": 2_000, "batch_size": 700}

    call_command("generate_data", seed=7, stdout=out, stderr=err, **options)
    call_command("generate_data", seed=7, stdout=StringIO(), stderr=StringIO(), **options)

    for app_label in APPS:
        for model in apps.get_app_config(app_label).get_models():
            if model._meta.label not in NOT_GENERATED:
                assert model._base_manager.exists(), model._meta.label
    assert Metric.objects.count() == 4_000
    assert Event.objects.filter(payload__synthetic=True).count() == 600
    assert MetricRollup.objects.exists() and EventRollup.objects.exists()
    assert "100% 2,000/2,000" in err.getvalue()  # the metrics progress bar, finished
    assert "analytics.Metric" in out.getvalue() and "Done in" in out.getvalue()
