"""Fixed-window rate limits counted in Redis, for doors anyone can knock on.

    retry_after = hit("webhook-address", client_address(request), limit=600)
    if retry_after:
        return too_many_requests(retry_after)

A window is one minute: the first request of a window creates its counter
with an expiry, every request is one ``INCR``, so a refused request costs
one Redis round trip and no database work. A fixed window lets a client
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

import redis
from django.conf import settings
from django.http import JsonResponse
from django_redis import get_redis_connection

__all__ = ["WINDOW_SECONDS", "hit", "too_many_requests"]

WINDOW_SECONDS = 60


def hit(scope: str, key: str, *, limit: int) -> int | None:
    """Count one request against ``limit`` per minute; seconds until the window ends when over it, else None.

    ``limit`` 0 (or less) means unlimited and costs nothing.
    """
    if limit <= 0:
        return None
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    redis_key = f"{settings.REDIS_KEY_PREFIX}:ratelimit:{scope}:{key}:{window}"
    client = get_redis_connection("default")
    try:
        count = client.incr(redis_key)
        if count == 1:
            # A little longer than the window, so a late INCR never finds an immortal key.
            client.expire(redis_key, WINDOW_SECONDS + 5)
    except redis.RedisError:
        return None
    if count <= limit:
        return None
    return max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))


def too_many_requests(retry_after: int) -> JsonResponse:
    """A 429 saying when to come back."""
    response = JsonResponse({"error": f"Too many requests; retry in {retry_after} s."}, status=429)
    response["Retry-After"] = str(retry_after)
    return response
