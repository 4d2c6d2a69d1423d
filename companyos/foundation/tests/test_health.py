"""GET /healthz: states and latencies, 200/503, brief caching of healthy answers only."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from companyos.foundation import health
from companyos.foundation.cache import get_layer
from dev import free_port


def caches_at(url: str) -> dict:
    """settings.CACHES with every layer pointed at ``url``."""
    return {alias: {**config, "LOCATION": url} for alias, config in settings.CACHES.items()}


@pytest.fixture
def fresh(db, settings):
    """No healthy answer cached by an earlier test, a fresh channel-layer client, and the
    test client's address (127.0.0.1) allowed the details."""
    settings.HEALTHZ_DETAIL_NETWORKS = ["127.0.0.0/8"]
    get_layer("api").delete(health.CACHE_KEY)
    health._channel_layer_client.cache_clear()
    yield
    get_layer("api").delete(health.CACHE_KEY)
    health._channel_layer_client.cache_clear()


def test_healthy_answer_lists_each_check_and_is_cached_for_a_second(client, fresh):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "channel_layer"}
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert 0 <= check["latency_ms"] < 1000
    assert response["Cache-Control"].startswith("max-age=0")
    raw = redis.Redis.from_url(settings.REDIS_URL)
    assert 0 < raw.pttl(get_layer("api").redis_key(health.CACHE_KEY)) <= 1000
    raw.close()


def test_healthz_runs_no_orm_query_beyond_select_1(client, fresh, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        assert client.get("/healthz").status_code == 200


def test_unreachable_cache_gives_503_with_details_and_is_not_cached(client, fresh):
    with override_settings(CACHES=caches_at(f"redis://127.0.0.1:{free_port()}/0")):
        response = client.get("/healthz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "fail"
        assert body["checks"]["cache"]["status"] == "fail"
        assert "ConnectionError" in body["checks"]["cache"]["error"]
        assert body["checks"]["database"]["status"] == "ok"
        assert body["checks"]["channel_layer"]["status"] == "ok"
    # Nothing cached in the real api layer either.
    assert get_layer("api").get(health.CACHE_KEY) is None


def test_unreachable_channel_layer_gives_503(client, fresh):
    layers = {"default": {**settings.CHANNEL_LAYERS["default"]}}
    layers["default"]["CONFIG"] = {
        **layers["default"]["CONFIG"],
        "hosts": [f"redis://127.0.0.1:{free_port()}/0"],
    }
    with override_settings(CHANNEL_LAYERS=layers):
        health._channel_layer_client.cache_clear()
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["channel_layer"]["status"] == "fail"
    assert response.json()["checks"]["cache"]["status"] == "ok"


def test_healthz_is_served_over_plain_http_when_ssl_is_forced(client, fresh):
    with override_settings(SECURE_SSL_REDIRECT=True):
        assert client.get("/healthz").status_code == 200
        assert client.get("/admin/login/").status_code == 301


def test_healthz_only_answers_get(client, fresh):
    assert client.post("/healthz").status_code == 405


def test_public_answer_is_the_status_only(client, fresh, settings):
    settings.HEALTHZ_DETAIL_NETWORKS = ["10.0.0.0/8"]
    with override_settings(CACHES=caches_at(f"redis://127.0.0.1:{free_port()}/0")):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "fail"}


def test_staff_get_the_details_from_anywhere(client, fresh, settings):
    settings.HEALTHZ_DETAIL_NETWORKS = []
    client.force_login(get_user_model().objects.create_user("ops@example.com", password=None, is_staff=True))
    body = client.get("/healthz").json()

    assert set(body["checks"]) == {"database", "cache", "channel_layer"}
