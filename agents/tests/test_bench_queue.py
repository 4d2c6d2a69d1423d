import pytest
from django.core.management import CommandError, call_command

from agents.models import AgentTask


@pytest.mark.django_db
def test_too_few_latency_samples_are_refused_before_anything_is_written():
    with pytest.raises(CommandError, match="--latency-samples must be at least 2"):
        call_command("bench_queue", latency_samples=1, tasks=10)
    assert not AgentTask.objects.exists()
