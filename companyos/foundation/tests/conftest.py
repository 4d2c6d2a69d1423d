"""Fixtures shared by the infrastructure tests."""

import pytest
import redis
from django.conf import settings


@pytest.fixture
def raw():
    """A plain redis-py client on the same server, to look at what the project really stored."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()
