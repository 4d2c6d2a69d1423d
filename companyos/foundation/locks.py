"""Distributed locks on Redis, owned by a token, always expiring, with fencing tokens.

    with distributed_lock(f"org:{org.id}:sync", timeout=30, blocking_timeout=5) as lock:
        ...                      # long work: lock.extend() before `timeout` runs out
        save_guarded(token=lock.fencing_token)

    @distributed_lock("nightly-rollup", timeout=300, blocking_timeout=0)
    def rollup(): ...

* Only the holder's random token can release or extend the lock (Lua
  compare-and-delete / compare-and-pexpire), so a slow holder whose lock expired
  cannot free the next holder's lock.
* Every lock has a TTL (``timeout``): a holder that dies blocks the others only
  until then.
* Acquisition and the fencing counter are one Lua script (one round trip):
  each acquisition of a name gets a number greater than all before it. A
  write that must not come from a stale holder compares it
  (:func:`check_fencing_token`, or a ``WHERE fence < %s`` on the guarded row).
* Failures are exceptions, never a silent ``False``: :class:`LockNotAcquired`
  when another holder keeps it past ``blocking_timeout``, :class:`LockUnavailable`
  when Redis cannot be reached (locks fail closed; unlike the cache they do
  not degrade to "go ahead").
"""

from __future__ import annotations

import random
import secrets
import time
from contextlib import ContextDecorator
from typing import Self

import redis
from django.conf import settings
from django_redis import get_redis_connection
from redis.commands.core import Script

__all__ = [
    "LockError",
    "LockNotAcquired",
    "LockNotOwned",
    "LockUnavailable",
    "StaleFencingToken",
    "check_fencing_token",
    "distributed_lock",
    "release_if_owner",
]

# Scripts are bytes so their SHA needs no client; redis-py sends EVALSHA and
# falls back to loading the script once per server.
_ACQUIRE = Script(
    None,
    b"""
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
""",
)
_RELEASE = Script(
    None,
    b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
""",
)
_EXTEND = Script(
    None,
    b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""",
)

# Polling while waiting: start fast (a lock is usually held for milliseconds),
# back off to at most 50 ms, with jitter so waiters do not move in lockstep.
_FIRST_WAIT = 0.002
_MAX_WAIT = 0.05


class LockError(Exception):
    """Base class of every lock failure."""


class LockNotAcquired(LockError):
    """Another holder kept the lock for longer than ``blocking_timeout``."""


class LockUnavailable(LockError):
    """Redis could not be reached, so no lock can be granted (fail closed)."""


class LockNotOwned(LockError):
    """Release or extend by someone who does not hold the lock (never had it, or it expired)."""


class StaleFencingToken(LockError):
    """A newer holder acquired the lock after this fencing token was issued."""


def _redis() -> redis.Redis:
    return get_redis_connection("default")


def _lock_key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:lock:{name}"


def _fence_key(name: str) -> str:
    # No TTL: the counter must never restart, or an old token would look new.
    return f"{settings.REDIS_KEY_PREFIX}:lock:{name}:fence"


def release_if_owner(conn: redis.Redis, key: str, token: str) -> bool:
    """Delete ``key`` only if it still holds ``token``; True when it did."""
    return bool(_RELEASE(keys=[key], args=[token], client=conn))


def check_fencing_token(name: str, token: int) -> None:
    """Raise :class:`StaleFencingToken` if lock ``name`` was acquired again after ``token``."""
    try:
        current = _redis().get(_fence_key(name))
    except redis.RedisError as exc:
        raise LockUnavailable(f"cannot check fencing token of lock {name!r}: Redis unavailable ({exc})") from exc
    if current is not None and int(current) > token:
        raise StaleFencingToken(
            f"fencing token {token} of lock {name!r} is stale: it was acquired again (token {int(current)})"
        )


class DistributedLock(ContextDecorator):
    """One acquisition of a named lock; use through :func:`distributed_lock`."""

    def __init__(self, name: str, *, timeout: float, blocking_timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("a distributed lock needs a positive timeout (it must expire if its holder dies)")
        if blocking_timeout < 0:
            raise ValueError("blocking_timeout must be >= 0 (0 means try once)")
        self.name = name
        self.timeout = timeout
        self.blocking_timeout = blocking_timeout
        self.key = _lock_key(name)
        self.token: str | None = None
        self.fencing_token: int | None = None

    def acquire(self) -> int:
        """Take the lock, waiting up to ``blocking_timeout``; returns the fencing token."""
        if self.token is not None:
            raise LockError(f"lock {self.name!r} is already held by this object")
        token = secrets.token_hex(16)
        conn = _redis()
        deadline = time.monotonic() + self.blocking_timeout
        wait = _FIRST_WAIT
        while True:
            try:
                fence = _ACQUIRE(
                    keys=[self.key, _fence_key(self.name)], args=[token, int(self.timeout * 1000)], client=conn
                )
            except redis.RedisError as exc:
                raise LockUnavailable(
                    f"cannot acquire lock {self.name!r}: Redis is unavailable ({exc}); not running unprotected"
                ) from exc
            if fence is not None:
                self.token, self.fencing_token = token, int(fence)
                return self.fencing_token
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockNotAcquired(
                    f"lock {self.name!r} is held by another process; gave up after {self.blocking_timeout:g} s"
                )
            time.sleep(min(remaining, wait * random.uniform(0.5, 1.5)))
            wait = min(wait * 2, _MAX_WAIT)

    def release(self) -> None:
        """Free the lock; raises :class:`LockNotOwned` if this object does not hold it any more."""
        token, self.token = self.token, None
        if token is None:
            raise LockNotOwned(f"lock {self.name!r} is not held by this object")
        try:
            released = release_if_owner(_redis(), self.key, token)
        except redis.RedisError as exc:
            raise LockUnavailable(f"cannot release lock {self.name!r}: Redis unavailable ({exc})") from exc
        if not released:
            raise LockNotOwned(f"lock {self.name!r} expired before it was released (timeout {self.timeout:g} s)")

    def extend(self, timeout: float | None = None) -> None:
        """Reset the lock's TTL to ``timeout`` (default: the original timeout) from now."""
        if self.token is None:
            raise LockNotOwned(f"lock {self.name!r} is not held by this object")
        ms = int((timeout or self.timeout) * 1000)
        try:
            extended = _EXTEND(keys=[self.key], args=[self.token, ms], client=_redis())
        except redis.RedisError as exc:
            raise LockUnavailable(f"cannot extend lock {self.name!r}: Redis unavailable ({exc})") from exc
        if not extended:
            raise LockNotOwned(f"lock {self.name!r} expired before it could be extended")

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _recreate_cm(self) -> DistributedLock:
        # As a decorator, each call (maybe in another thread) needs its own token.
        return type(self)(self.name, timeout=self.timeout, blocking_timeout=self.blocking_timeout)


def distributed_lock(name: str, *, timeout: float, blocking_timeout: float) -> DistributedLock:
    """A lock named ``name`` held at most ``timeout`` s, waited for at most ``blocking_timeout`` s.

    Context manager (``as lock`` gives ``lock.fencing_token`` and ``lock.extend()``)
    and decorator. Raises :class:`LockNotAcquired`, :class:`LockUnavailable`;
    leaving the block after the TTL ran out raises :class:`LockNotOwned`.
    """
    return DistributedLock(name, timeout=timeout, blocking_timeout=blocking_timeout)
