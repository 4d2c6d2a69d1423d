"""Limits per API token (or per user, for browser sessions) across connections and server processes.

The per-connection limits of the consumer are multiplied by a client that
opens many connections with one token; these are counted in Redis, so every
process of every host sees the same total:

* open connections and held (organization, topic) subscriptions: one sorted
  set per token each, a member per connection (its channel name) or per
  subscription, scored by the instant it expires. A connection adds its
  members on connect and subscribe, removes them when it leaves, and pushes
  their expiry forward every third of ``EVENTS_SESSION_TTL_SECONDS``. The
  members of a process that died unannounced expire on their own, even while
  the token's other connections stay active (a plain counter would keep
  them until the token went quiet). Check and add are one Lua script, timed
  by the Redis server's clock, so two processes cannot both take the last
  place and hosts' clocks need not agree;
* subscribes with ``since`` a minute: ``companyos.foundation.ratelimit.hit``.

While Redis is unreachable these limits are off (the per-connection ones
still hold), as the platform's other rate limits are: refusing every
connection would turn a cache outage into an outage of the websocket edge.
The channel layer is down then too.
"""

from __future__ import annotations

import logging

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django_redis import get_redis_connection

from companyos.foundation.ratelimit import hit

logger = logging.getLogger(__name__)

# KEYS[1]: the sorted set; ARGV[1]: the limit (0: none); ARGV[2]: the members' time to live (ms); ARGV[3..]: members.
# Answers {1, held} after adding the members, or {0, held} when they would exceed the limit (nothing added).
# Members already held are not counted again.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[1])
if limit > 0 then
  local new = 0
  for i = 3, #ARGV do
    if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then new = new + 1 end
  end
  if held + new > limit then return {0, held} end
end
local expires = now + tonumber(ARGV[2])
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], expires, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, redis.call('ZCARD', KEYS[1])}
"""

# KEYS[1]: the sorted set; ARGV[1]: time to live (ms); ARGV[2..]: members. Pushes back the expiry of the
# members still there: one a leave removed meanwhile is not brought back (XX).
_REFRESH = """
local clock = redis.call('TIME')
local expires = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


class TokenLimits:
    """The shared counts of one connection's token (or user), and this connection's members in them."""

    def __init__(self, scope: dict, channel_name: str) -> None:
        token_id = scope.get("api_token_id")
        if token_id:
            self.holder, identity = "This token", f"token:{token_id}"
        else:
            self.holder, identity = "Your browser sessions", f"user:{scope['user'].pk}"
        self.identity = identity
        self.channel_name = channel_name
        prefix = f"{settings.REDIS_KEY_PREFIX}:ws-limits:{identity}"
        self.connections_key = f"{prefix}:connections"
        self.subscriptions_key = f"{prefix}:subscriptions"

    def subscription_member(self, organization_id: str, topic: str) -> str:
        return f"{self.channel_name}|{organization_id}|{topic}"

    def subscription_members(self, subscriptions: dict[str, set[str]]) -> list[str]:
        """The members of a connection's subscriptions (organization id → topics)."""
        return [self.subscription_member(org, topic) for org, topics in subscriptions.items() for topic in topics]

    async def take_connection(self) -> bool:
        """Count this connection; False when the token already holds its most."""
        return await self._reserve(self.connections_key, settings.EVENTS_MAX_CONNECTIONS_PER_TOKEN, [self.channel_name])

    async def take_subscriptions(self, members: list[str]) -> bool:
        """Count these subscriptions of this connection; False (none counted) when they would exceed the limit."""
        if not members:
            return True
        return await self._reserve(self.subscriptions_key, settings.EVENTS_MAX_SUBSCRIPTIONS_PER_TOKEN, members)

    async def take_replay(self) -> int | None:
        """Count one subscribe with ``since``: seconds to wait when over the limit, else None."""
        return await sync_to_async(hit, thread_sensitive=False)(
            "ws-replays", self.identity, limit=settings.EVENTS_REPLAYS_PER_MINUTE_PER_TOKEN
        )

    async def refresh(self, subscriptions: list[str]) -> None:
        """Push back the expiry of this connection and its subscriptions (the connection's heartbeat)."""
        await sync_to_async(self._refresh, thread_sensitive=False)(subscriptions)

    async def release(self, subscriptions: list[str], *, connection: bool = False) -> None:
        """Stop counting these subscriptions (and the connection itself)."""
        await sync_to_async(self._release, thread_sensitive=False)(subscriptions, connection)

    # --- Redis, in a worker thread -----------------------------------------------

    @staticmethod
    def _ttl_ms() -> int:
        return int(settings.EVENTS_SESSION_TTL_SECONDS * 1000)

    async def _reserve(self, key: str, limit: int, members: list[str]) -> bool:
        return await sync_to_async(self._reserve_sync, thread_sensitive=False)(key, limit, members)

    def _reserve_sync(self, key: str, limit: int, members: list[str]) -> bool:
        client = get_redis_connection("default")
        try:
            taken, _held = client.eval(_RESERVE, 1, key, max(limit, 0), self._ttl_ms(), *members)
        except redis.RedisError as error:
            logger.debug("Token limits off: %s", error)
            return True
        return bool(taken)

    def _refresh(self, subscriptions: list[str]) -> None:
        client = get_redis_connection("default")
        try:
            pipeline = client.pipeline(transaction=False)
            pipeline.eval(_REFRESH, 1, self.connections_key, self._ttl_ms(), self.channel_name)
            if subscriptions:
                pipeline.eval(_REFRESH, 1, self.subscriptions_key, self._ttl_ms(), *subscriptions)
            pipeline.execute()
        except redis.RedisError as error:
            logger.debug("Token limits not refreshed: %s", error)

    def _release(self, subscriptions: list[str], connection: bool) -> None:
        client = get_redis_connection("default")
        try:
            pipeline = client.pipeline(transaction=False)
            if subscriptions:
                pipeline.zrem(self.subscriptions_key, *subscriptions)
            if connection:
                pipeline.zrem(self.connections_key, self.channel_name)
            pipeline.execute()
        except redis.RedisError as error:
            # Its members expire with EVENTS_SESSION_TTL_SECONDS.
            logger.debug("Token limits not released: %s", error)
