"""The Redis client every cache layer and lock uses: a circuit breaker around redis-py.

django-redis can ignore connection errors (``IGNORE_EXCEPTIONS``), but each
call still waits for its own connect timeout and, if logging is on, logs its
own traceback. During an outage that means every request pays the timeout and
the log fills up. :class:`ResilientRedis` fixes both for all aliases at once:

* after a connection failure the server's breaker opens: for
  ``REDIS_BREAKER_SECONDS`` every command fails at once with
  :class:`RedisUnavailable` (a ``redis.ConnectionError``, so django-redis turns
  it into a cache miss / skipped write, and locks fail closed); then one call
  probes the server, and the first success closes the breaker;
* the outage is logged once when it starts, then at most once per
  ``REDIS_OUTAGE_LOG_SECONDS`` with the number of skipped calls, and once
  when it ends;
* a cache write (SET, DEL, EXPIRE...) that could not reach Redis leaves a stale
  value behind when Redis comes back (a session that was logged out, a family
  that was invalidated). Its key is remembered and deleted on recovery, so the
  next read goes to the source of truth.

The breaker is per server (host, port, db), not per alias: the aliases share
one server and one pool, and an outage is the server's.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass, field

import redis
from django.conf import settings

logger = logging.getLogger("companyos.redis")

# Writes of cache values whose failure may leave a stale value behind.
# Counters and data structures (INCR, HSET, SADD...) are left out: deleting
# one on recovery would lose more than the failed write. So is SET ... NX: it
# only creates short-lived locks, and deleting one later could free a lock
# somebody else took after the outage.
_CACHE_WRITES = frozenset(
    {
        "SET",
        "SETEX",
        "PSETEX",
        "GETSET",
        "GETDEL",
        "DEL",
        "UNLINK",
        "EXPIRE",
        "PEXPIRE",
        "EXPIREAT",
        "PEXPIREAT",
        "PERSIST",
    }
)
_MULTI_KEY_WRITES = frozenset({"DEL", "UNLINK"})
# Beyond this many remembered keys an outage is logged as possibly leaving
# stale entries (they still expire with their TTL).
MAX_PENDING_INVALIDATIONS = 10_000


class RedisUnavailable(redis.ConnectionError):
    """Raised without touching the network while the server's breaker is open."""


@dataclass
class CircuitBreaker:
    """Open/half-open/closed state of one Redis server, shared by the process's threads."""

    name: str
    cooldown: float
    log_interval: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    down_since: float | None = None
    retry_at: float = 0.0
    next_log_at: float = 0.0
    skipped: int = 0
    pending: set[bytes | str] = field(default_factory=set)
    pending_overflow: int = 0

    def allow(self) -> str:
        """``"closed"``: go ahead; ``"probe"``: this caller tests the server first; ``"open"``: skip Redis."""
        if self.down_since is None:
            return "closed"
        with self.lock:
            now = time.monotonic()
            if now >= self.retry_at:
                # This caller probes; the others keep skipping until it is done.
                self.retry_at = now + self.cooldown
                return "probe"
            self.skipped += 1
            self._log_still_down(now)
            return "open"

    def record_failure(self, exc: Exception) -> None:
        with self.lock:
            now = time.monotonic()
            self.retry_at = now + self.cooldown
            if self.down_since is None:
                self.down_since = now
                self.skipped = 0
                self.next_log_at = now + self.log_interval
                logger.warning(
                    "Redis %s is unreachable (%s): cache reads miss, cache writes are skipped and locks "
                    "fail until it answers; retrying every %.1f s",
                    self.name,
                    exc,
                    self.cooldown,
                )
            else:
                self.skipped += 1
                self._log_still_down(now)

    def record_success(self) -> None:
        with self.lock:
            if self.down_since is None:
                return
            logger.info(
                "Redis %s is reachable again after %.1f s (%d calls skipped); invalidating %d cache keys "
                "written during the outage",
                self.name,
                time.monotonic() - self.down_since,
                self.skipped,
                len(self.pending),
            )
            self.down_since = None

    def remember(self, keys: tuple) -> None:
        with self.lock:
            if len(self.pending) + len(keys) > MAX_PENDING_INVALIDATIONS:
                self.pending_overflow += len(keys)
                return
            self.pending.update(keys)

    def take_pending(self) -> list:
        with self.lock:
            keys, self.pending = list(self.pending), set()
            if self.pending_overflow:
                logger.error(
                    "Redis %s: %d cache writes during the outage could not be remembered; those entries "
                    "may be stale until their TTL ends",
                    self.name,
                    self.pending_overflow,
                )
                self.pending_overflow = 0
            return keys

    def _log_still_down(self, now: float) -> None:
        # Called with the lock held.
        if now >= self.next_log_at:
            self.next_log_at = now + self.log_interval
            logger.warning(
                "Redis %s still unreachable after %.0f s (%d calls skipped so far)",
                self.name,
                now - (self.down_since or now),
                self.skipped,
            )


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(pool: redis.ConnectionPool) -> CircuitBreaker:
    """The breaker of the server behind ``pool`` (one per host/port/db per process)."""
    # Remembered on the pool: this runs before every command.
    breaker = getattr(pool, "_companyos_breaker", None)
    if breaker is not None:
        return breaker
    kwargs = pool.connection_kwargs
    name = f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"
    breaker = _breakers.get(name)
    if breaker is None:
        with _breakers_lock:
            breaker = _breakers.setdefault(
                name,
                CircuitBreaker(
                    name=name,
                    cooldown=getattr(settings, "REDIS_BREAKER_SECONDS", 2.0),
                    log_interval=getattr(settings, "REDIS_OUTAGE_LOG_SECONDS", 30.0),
                ),
            )
    pool._companyos_breaker = breaker
    return breaker


class ResilientRedis(redis.Redis):
    """``redis.Redis`` whose commands go through the server's circuit breaker."""

    def execute_command(self, *args, **options):
        breaker = breaker_for(self.connection_pool)
        state = breaker.allow()
        try:
            if state == "open":
                raise RedisUnavailable(f"Redis {breaker.name} is unavailable (circuit open)")
            if state == "probe":
                # Invalidate what went stale during the outage before the
                # first real command can read it.
                super().execute_command("PING")
                breaker.record_success()
                self._replay_invalidations(breaker)
            return super().execute_command(*args, **options)
        except RedisUnavailable:
            self._remember_write(breaker, args)
            raise
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Other errors (a write refused when out of memory, a wrong type)
            # come from a server that answered: not an outage.
            breaker.record_failure(exc)
            self._remember_write(breaker, args)
            raise

    @staticmethod
    def _remember_write(breaker: CircuitBreaker, args: tuple) -> None:
        command = str(args[0]).upper() if args else ""
        if command not in _CACHE_WRITES or len(args) < 2:
            return
        if command == "SET" and any(str(arg).upper() == "NX" for arg in args[3:]):
            return
        breaker.remember(tuple(args[1:]) if command in _MULTI_KEY_WRITES else (args[1],))

    def _replay_invalidations(self, breaker: CircuitBreaker) -> None:
        keys = breaker.take_pending()
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            try:
                super().execute_command("DEL", *batch)
            except redis.RedisError:
                breaker.remember(tuple(batch))
                return


def close_connections() -> None:
    """Disconnect every Redis pool of this process (cache layers, locks, health checks).

    Registered with ``atexit``; an ASGI lifespan shutdown may call it too.
    """
    from django_redis.pool import ConnectionFactory

    from companyos.foundation import health

    # django-redis keeps its pools there, one per URL for the whole process.
    for pool in ConnectionFactory._pools.values():
        pool.disconnect()
    health.close_connections()


atexit.register(close_connections)
