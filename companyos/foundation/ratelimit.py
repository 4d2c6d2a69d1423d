"""Fixed-window rate limits counted in Redis, for doors anyone can knock on.

    retry_after = hit("webhook-address", client_address(request), limit=600)
    if retry_after:
        return too_many_requests(retry_after)

A window is one minute: the first request of a window creates its counter
with an expiry, every request is one ``INCR`` (in a small Lua script, so a
new counter gets its expiry in the same round trip), so a refused request
costs one Redis round trip and no database work. :func:`hit_all` counts a
request against several limits in that one round trip (a webhook delivery:
its address and its endpoint). A fixed window lets a client
send up to twice the limit across a window boundary; for limits whose job
is to keep floods cheap, not to meter exactly, that is the price of one
round trip (a sliding window needs a sorted set per key).

A library was weighed: django-ratelimit counts in the cache too, but answers
a refusal with a 403 and no ``Retry-After``, and needs the same glue again.

While Redis is unreachable the limits are off (requests pass): failing shut
would turn a cache outage into an outage of every limited door.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import redis
from django.conf import settings
from django.http import JsonResponse
from django_redis import get_redis_connection

__all__ = ["WINDOW_SECONDS", "Limit", "hit", "hit_all", "too_many_requests"]

WINDOW_SECONDS = 60
# A little longer than the window, so a late INCR never finds an immortal key.
_COUNTER_TTL = WINDOW_SECONDS + 5

# KEYS: the counters; ARGV: the counters' TTL, then each counter's limit.
# Counting stops at the first counter over its limit: a refused request is not
# counted against the limits after it. Returns the counts made.
_COUNT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
    local count = redis.call('INCR', key)
    if count == 1 then redis.call('EXPIRE', key, ARGV[1]) end
    counts[i] = count
    if count > tonumber(ARGV[i + 1]) then break end
end
return counts
"""


class Limit(NamedTuple):
    """At most ``limit`` requests a minute for ``key`` in ``scope``; 0 (or less) is unlimited."""

    scope: str
    key: str
    limit: int


def hit_all(*limits: Limit) -> int | None:
    """Count one request against each limit, in order, in one round trip.

    Seconds until the window ends when the request is over one of them (the
    later ones are then not counted), else None. Unlimited ones cost nothing.
    """
    counted = [limit for limit in limits if limit.limit > 0]
    if not counted:
        return None
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    keys = [f"{settings.REDIS_KEY_PREFIX}:ratelimit:{scope}:{key}:{window}" for scope, key, _ in counted]
    # EVALSHA goes through the client's circuit breaker (a pipeline would not).
    script = get_redis_connection("default").register_script(_COUNT_SCRIPT)
    try:
        counts = script(keys=keys, args=[_COUNTER_TTL, *(limit.limit for limit in counted)])
    except redis.RedisError:
        return None
    if all(count <= limit.limit for count, limit in zip(counts, counted, strict=False)):
        return None
    return max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))


def hit(scope: str, key: str, *, limit: int) -> int | None:
    """Count one request against ``limit`` per minute; seconds until the window ends when over it, else None.

    ``limit`` 0 (or less) means unlimited and costs nothing.
    """
    return hit_all(Limit(scope, key, limit))


def too_many_requests(retry_after: int) -> JsonResponse:
    """A 429 saying when to come back."""
    response = JsonResponse({"error": f"Too many requests; retry in {retry_after} s."}, status=429)
    response["Retry-After"] = str(retry_after)
    return response
