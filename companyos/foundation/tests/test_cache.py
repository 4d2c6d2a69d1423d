"""The cache layers against the real Redis: prefixes, TTLs, families, stampede protection."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid

import pytest
from django.conf import settings

from companyos.foundation.cache import LAYER_NAMES, get_layer

LAYER_TTLS = {"default": 300, "sessions": 24 * 3600, "api": 5 * 60, "agent_results": 3600, "analytics": 15 * 60}


@pytest.fixture
def key():
    """A key no other test (or test run sharing this Redis) uses."""
    return f"test:{uuid.uuid4().hex}"


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_each_layer_has_its_prefix_and_default_ttl(name, raw, key):
    layer = get_layer(name)
    layer.set(key, {"answer": 42})
    real_key = f"{settings.REDIS_KEY_PREFIX}:{name}:1:{key}"
    try:
        assert layer.redis_key(key) == real_key
        assert raw.exists(real_key)
        ttl_ms = raw.pttl(real_key)
        assert LAYER_TTLS[name] * 1000 - 5000 < ttl_ms <= LAYER_TTLS[name] * 1000
        assert layer.get(key) == {"answer": 42}
    finally:
        layer.delete(key)
    assert not raw.exists(real_key)


def test_explicit_ttl_overrides_the_layer_default(raw, key):
    layer = get_layer("analytics")
    layer.set(key, "x", ttl=7)
    try:
        assert 6000 < raw.pttl(layer.redis_key(key)) <= 7000
    finally:
        layer.delete(key)


def test_layers_do_not_see_each_others_keys(key):
    get_layer("api").set(key, "api value")
    try:
        assert get_layer("analytics").get(key) is None
        assert get_layer("api").get(key) == "api value"
    finally:
        get_layer("api").delete(key)


def test_a_cached_none_is_a_hit_and_a_missing_key_gives_the_default(key):
    layer = get_layer("default")
    assert layer.get(key, "fallback") == "fallback"
    calls = []
    assert layer.get_or_set(key, lambda: calls.append(1)) is None
    assert layer.get_or_set(key, lambda: calls.append(1)) is None
    layer.delete(key)
    assert calls == [1]


def test_unknown_layer_is_refused():
    with pytest.raises(ValueError, match="unknown cache layer 'nope'"):
        get_layer("nope")


def test_session_is_cached_in_the_sessions_layer(client, admin_user, raw):
    client.force_login(admin_user)
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    real_key = f"{settings.REDIS_KEY_PREFIX}:sessions:1:django.contrib.sessions.cached_db{session_key}"
    assert raw.exists(real_key)
    assert 24 * 3600 * 1000 - 5000 < raw.pttl(real_key) <= 24 * 3600 * 1000


def test_family_invalidation_drops_only_that_family(key):
    layer = get_layer("analytics")
    org_a, org_b = layer.family(f"org:{key}:a"), layer.family(f"org:{key}:b")
    org_a.set("summary", "a1")
    org_a.set("chart", "a2")
    org_b.set("summary", "b1")
    version = org_a.version()

    org_a.invalidate()

    assert org_a.get("summary") is None
    assert org_a.get("chart") is None
    assert org_b.get("summary") == "b1"
    assert org_a.version() != version
    assert org_a.get_or_set("summary", lambda: "a1 recomputed") == "a1 recomputed"
    assert org_a.get("summary") == "a1 recomputed"
    org_a.invalidate()
    org_b.invalidate()


def test_family_keys_carry_the_version_and_the_version_key_has_a_ttl(raw, key):
    layer = get_layer("analytics")
    family = layer.family(key)
    family.set("k", 1)
    version = family.version()
    assert raw.exists(layer.redis_key(f"family:{key}:{version}:k"))
    assert raw.pttl(layer.redis_key(f"family:{key}:version")) > 0
    family.invalidate()
    assert not raw.exists(layer.redis_key(f"family:{key}:version"))


def test_concurrent_threads_compute_an_expired_key_once(key):
    layer = get_layer("api")
    computed = []
    results = []
    barrier = threading.Barrier(16)

    def compute():
        computed.append(threading.get_ident())
        time.sleep(0.3)
        return "fresh"

    def caller():
        barrier.wait()
        results.append(layer.get_or_set(key, compute))

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    layer.delete(key)
    assert len(computed) == 1
    assert results == ["fresh"] * 16


def test_a_failing_compute_frees_the_fill_lock(raw, key):
    layer = get_layer("api")

    def boom():
        raise RuntimeError("compute failed")

    with pytest.raises(RuntimeError):
        layer.get_or_set(key, boom)
    assert not raw.exists(layer.redis_key(f"{key}:fill"))
    started = time.monotonic()
    assert layer.get_or_set(key, lambda: "ok") == "ok"
    assert time.monotonic() - started < 0.5
    layer.delete(key)


def test_waiters_compute_themselves_when_the_filler_takes_too_long(raw, key):
    layer = get_layer("api")
    # A filler that died holding the fill lock.
    raw.set(layer.redis_key(f"{key}:fill"), "dead-process", px=10_000)
    started = time.monotonic()
    assert layer.get_or_set(key, lambda: "computed anyway", lock_timeout=0.3) == "computed anyway"
    assert 0.25 < time.monotonic() - started < 2
    raw.delete(layer.redis_key(f"{key}:fill"))
    layer.delete(key)


def _get_or_set_in_process(key: str, counter_key: str, start, out) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.config.settings")
    import django

    django.setup()
    from django_redis import get_redis_connection

    from companyos.foundation.cache import get_layer as layer_of

    def compute():
        get_redis_connection("default").incr(counter_key)
        time.sleep(0.5)
        return f"computed by {os.getpid()}"

    start.wait()
    # A generous lock_timeout: on a loaded machine a waiter must not give up and compute too.
    out.put(layer_of("analytics").get_or_set(key, compute, lock_timeout=60))


@pytest.mark.slow
def test_concurrent_processes_compute_an_expired_key_once(raw, key):
    ctx = multiprocessing.get_context("spawn")
    counter_key = f"{settings.REDIS_KEY_PREFIX}:{key}:computations"
    # The barrier releases the 8 callers together, once each has set Django up.
    start, out = ctx.Barrier(8), ctx.Queue()
    processes = [ctx.Process(target=_get_or_set_in_process, args=(key, counter_key, start, out)) for _ in range(8)]
    for process in processes:
        process.start()
    results = [out.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    try:
        assert int(raw.get(counter_key)) == 1
        assert len(set(results)) == 1
    finally:
        raw.delete(counter_key)
        get_layer("analytics").delete(key)


def test_close_connections_disconnects_the_pools_and_the_cache_reconnects(raw, key):
    from django_redis import get_redis_connection

    from companyos.foundation.redis_client import close_connections

    client_id = get_redis_connection("default").client_id()
    close_connections()
    deadline = time.monotonic() + 2
    while any(int(client["id"]) == client_id for client in raw.client_list()):
        assert time.monotonic() < deadline, "the connection is still open"
        time.sleep(0.02)
    layer = get_layer("default")
    layer.set(key, "after close")
    assert layer.get(key) == "after close"
    layer.delete(key)
