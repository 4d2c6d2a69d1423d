"""``GET /healthz``: is this process able to serve? For load balancers, every second.

The answer is 200 when the database (``SELECT 1``), the cache (``PING`` on
the cache layers' server) and the channel layer (``PING`` on its server) all
answer, 503 otherwise. Anyone gets ``{"status": ...}`` only: the failing
dependency's error names hosts and ports. Logged-in staff and callers from
``HEALTHZ_DETAIL_NETWORKS`` (monitoring) also get each check's state,
latency and error.

Cost: three round trips, no ORM query. The checks bypass the cache's circuit
breaker on purpose: health reports what is true now, not what a breaker
remembered. A healthy answer is kept for one second in the ``api`` layer, so
any number of load balancers probing a process costs it one check a second;
an unhealthy answer is never cached, so a failure shows at once and a
recovery within a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_redis import get_redis_connection
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from companyos.foundation.cache import get_layer
from companyos.foundation.network import address_in, client_address

CACHE_KEY = "healthz"
CACHE_TTL = 1.0
# Fail a check quickly: a dependency slower than this is as good as down for a load balancer.
CHECK_TIMEOUT = 0.5


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


@cache
def _plain_client(pool: redis.ConnectionPool) -> redis.Redis:
    # Same server and connections as the cache layers, without the circuit
    # breaker of companyos.foundation.redis_client.ResilientRedis.
    return redis.Redis(connection_pool=pool)


def _check_cache() -> None:
    _plain_client(get_redis_connection("default").connection_pool).ping()


@cache
def _channel_layer_client() -> redis.Redis:
    """A small client of the channel layer's Redis (channels-redis' own pools are async, per event loop)."""
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    # channels-redis accepts a URL, an (host, port) pair, a dict of connection
    # kwargs with an "address", or one with a Sentinel "master_name".
    if isinstance(host, str):
        host = {"address": host}
    elif not isinstance(host, dict):
        host = {"host": host[0], "port": host[1]}
    kwargs = {key: value for key, value in host.items() if key != "address"} | {
        # The check's own short timeouts and no retry win over the layer's.
        "socket_connect_timeout": CHECK_TIMEOUT,
        "socket_timeout": CHECK_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
        "max_connections": 4,
    }
    if "address" in host:
        return redis.Redis.from_url(host["address"], **kwargs)
    if "master_name" in host:
        sentinels = kwargs.pop("sentinels")
        kwargs.pop("sentinel_kwargs", None)
        sentinel = Sentinel(sentinels, sentinel_kwargs={"socket_timeout": CHECK_TIMEOUT})
        return sentinel.master_for(kwargs.pop("master_name"), **kwargs)
    return redis.Redis(**kwargs)


def _check_channel_layer() -> None:
    _channel_layer_client().ping()


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "cache": _check_cache,
    "channel_layer": _check_channel_layer,
}


def run_checks() -> dict[str, Any]:
    """Run every check; returns ``{"status": "ok"|"fail", "checks": {name: {...}}}``."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure is reported, never raised
            results[name] = {"status": "fail", "error": f"{type(exc).__name__}: {exc}"}
        else:
            results[name] = {"status": "ok"}
        results[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    healthy = all(result["status"] == "ok" for result in results.values())
    return {"status": "ok" if healthy else "fail", "checks": results}


def _may_see_details(request: HttpRequest) -> bool:
    # The address first: a monitoring probe carries no session to look up.
    return address_in(client_address(request), settings.HEALTHZ_DETAIL_NETWORKS) or request.user.is_staff


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when everything answers, 503 when something does not; the checks only for staff and monitoring."""
    api = get_layer("api")
    report = api.get(CACHE_KEY)
    if report is None:
        report = run_checks()
        if report["status"] == "ok":
            api.set(CACHE_KEY, report, ttl=CACHE_TTL)
    answer = report if _may_see_details(request) else {"status": report["status"]}
    return JsonResponse(answer, status=200 if report["status"] == "ok" else 503)


def close_connections() -> None:
    """Disconnect the channel layer check's client (called on process exit)."""
    if _channel_layer_client.cache_info().currsize:
        _channel_layer_client().close()
