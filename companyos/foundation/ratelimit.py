"""Fixed-window rate limits counted in Redis, for doors anyone can knock on.

    retry_after = hit("webhook-address", client_address(request), limit=600)
    if retry_after:
        return too_many_requests(retry_after)

A window is one minute: the first request of a window creates its counter
with an expiry, every request is one ``INCR`` (in a small Lua script, so a
new counter gets its expiry in the same round trip), so a refused request
costs one Redis round trip and no database work. :func:`hit_all` counts a
request against several limits in that one round trip (a webhook delivery:
its address and its endpoint); :class:`SharedCounts` lets the requests an
event loop serves at the same time share round trips. A fixed window lets a
client send up to twice the limit across a window boundary; for limits whose
job is to keep floods cheap, not to meter exactly, that is the price of one
round trip (a sliding window needs a sorted set per key).

A library was weighed: django-ratelimit counts in the cache too, but answers
a refusal with a 403 and no ``Retry-After``, and needs the same glue again.

While Redis is unreachable the limits are off (requests pass): failing shut
would turn a cache outage into an outage of every limited door.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple
from weakref import WeakKeyDictionary

import redis
from django.conf import settings
from django.http import JsonResponse
from django_redis import get_redis_connection

__all__ = ["WINDOW_SECONDS", "Limit", "SharedCounts", "hit", "hit_all", "hit_each", "too_many_requests"]

WINDOW_SECONDS = 60
# A little longer than the window, so a late INCR never finds an immortal key.
_COUNTER_TTL = WINDOW_SECONDS + 5

# KEYS: the counters of one or more requests, request after request; ARGV:
# the counters' TTL, then for each counter its limit and 1 if it is the first
# of its request's (else 0). Counting a request stops at its first counter
# over its limit: a refused request is not counted against the limits after
# it. Returns the counts made (0 for a counter not counted).
_COUNT_SCRIPT = """
local counts = {}
local refused = false
for i, key in ipairs(KEYS) do
    if ARGV[2 * i + 1] == '1' then refused = false end
    local count = 0
    if not refused then
        count = redis.call('INCR', key)
        if count == 1 then redis.call('EXPIRE', key, ARGV[1]) end
        refused = count > tonumber(ARGV[2 * i])
    end
    counts[i] = count
end
return counts
"""


class Limit(NamedTuple):
    """At most ``limit`` requests a minute for ``key`` in ``scope``; 0 (or less) is unlimited."""

    scope: str
    key: str
    limit: int


def hit_each(requests: Sequence[Sequence[Limit]]) -> list[int | None]:
    """Count several requests, each against its limits as :func:`hit_all` does, in one round trip.

    Each request's answer is the one :func:`hit_all` would give it alone.
    """
    counted = [[limit for limit in limits if limit.limit > 0] for limits in requests]
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    keys: list[str] = []
    args: list[int] = [_COUNTER_TTL]
    for limits in counted:
        for position, (scope, key, limit) in enumerate(limits):
            keys.append(f"{settings.REDIS_KEY_PREFIX}:ratelimit:{scope}:{key}:{window}")
            args += [limit, int(position == 0)]
    if not keys:
        return [None] * len(requests)
    # EVALSHA goes through the client's circuit breaker (a pipeline would not).
    script = get_redis_connection("default").register_script(_COUNT_SCRIPT)
    try:
        counts = script(keys=keys, args=args)
    except redis.RedisError:
        return [None] * len(requests)
    retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
    answers: list[int | None] = []
    for limits in counted:
        own, counts = counts[: len(limits)], counts[len(limits) :]
        over = any(count > limit.limit for limit, count in zip(limits, own, strict=True))
        answers.append(retry_after if over else None)
    return answers


def hit_all(*limits: Limit) -> int | None:
    """Count one request against each limit, in order, in one round trip.

    Seconds until the window ends when the request is over one of them (the
    later ones are then not counted), else None. Unlimited ones cost nothing.
    """
    return hit_each([limits])[0]


class SharedCounts:
    """Counts the requests of an event loop in shared round trips: the ones that arrive
    while a count is in flight go together in the next one.

    ``run`` runs :func:`hit_each` off the event loop (a caller's own Redis
    threads). Under a flood of concurrent requests one round trip, and one
    hand-over to a thread, serves several of them; a lone request goes at once.
    """

    def __init__(self, run: Callable[..., Awaitable[list[int | None]]]) -> None:
        self._run = run
        # Per loop: the requests waiting for the next round trip, and the task making them.
        self._waiting: WeakKeyDictionary[asyncio.AbstractEventLoop, list] = WeakKeyDictionary()
        self._tasks: set[asyncio.Task] = set()  # the loop holds only weak references to tasks

    async def hit_all(self, *limits: Limit) -> int | None:
        """:func:`hit_all`, its round trip shared with the requests waiting at the same time."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = []
            task = loop.create_task(self._count(loop, waiting))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        waiting.append((limits, answer))
        return await answer

    async def _count(self, loop: asyncio.AbstractEventLoop, waiting: list) -> None:
        batch: list = []
        try:
            while waiting:
                batch, waiting[:] = waiting[:], []
                answers = await self._run(hit_each, [limits for limits, _ in batch])
                for (_, future), retry_after in zip(batch, answers, strict=True):
                    if not future.done():  # not given up on
                        future.set_result(retry_after)
        except Exception as exc:  # raised to each request, as its own call would have
            for _, future in batch + waiting:
                if not future.done():
                    future.set_exception(exc)
        finally:
            del self._waiting[loop]
            for _, future in batch + waiting:
                future.cancel()  # left unanswered only when the loop shuts down


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
