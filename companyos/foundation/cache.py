"""The cache layers: computed results cached on purpose, invalidated on purpose.

    from companyos.foundation.cache import get_layer

    summary = get_layer("analytics").family(f"org:{org_id}").get_or_set("summary:24h", compute)
    get_layer("analytics").family(f"org:{org_id}").invalidate()   # new events landed

Each layer is a Django cache alias (settings.CACHES) with its own key prefix
and default TTL. Nothing here caches querysets automatically: callers cache
a computed value and invalidate it when its inputs change.

* ``get_or_set`` protects a hot key against a stampede: when it is missing,
  one process (holding a short ``SET NX PX`` fill lock) computes it while the
  others poll for the result, and compute it themselves only if the filler
  takes longer than ``lock_timeout``.
* A family versions its keys: the version lives in Redis under the family
  name, and :meth:`Family.invalidate` deletes it, so every key of the family
  is orphaned at once (they expire with their TTL) without ``KEYS``/``SCAN``.
  A new version is the current time in nanoseconds, so it never repeats one
  whose entries may still be alive.
* While Redis is down every call behaves like a miss: ``get`` returns the
  default, ``set``/``delete``/``invalidate`` are skipped (and replayed as
  invalidations on recovery, see :mod:`companyos.foundation.redis_client`), and
  ``get_or_set`` just computes.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from contextlib import suppress
from functools import cache
from typing import Any, Literal, TypeVar

import redis
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django_redis import get_redis_connection

from companyos.foundation.locks import release_if_owner

__all__ = ["LAYER_NAMES", "Family", "Layer", "LayerName", "get_layer"]

LayerName = Literal["default", "sessions", "api", "agent_results", "analytics"]
LAYER_NAMES: tuple[LayerName, ...] = ("default", "sessions", "api", "agent_results", "analytics")

T = TypeVar("T")
_MISSING: Any = object()
# A family version outlives any entry of the family; if it is evicted or
# expires, the family simply starts over with a new version.
_FAMILY_VERSION_TTL = 7 * 24 * 3600


class Layer:
    """One cache layer (a Django cache alias backed by Redis)."""

    def __init__(self, alias: LayerName) -> None:
        self.alias = alias

    def __repr__(self) -> str:
        return f"<Layer {self.alias}>"

    @property
    def backend(self) -> BaseCache:
        # Django keeps one backend object per thread/async context.
        return caches[self.alias]

    def redis_key(self, key: str) -> str:
        """The key as stored in Redis (prefix, Django version, key)."""
        return self.backend.make_key(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self.backend.get(key, default)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` in seconds, ``None`` meaning the layer's default."""
        self.backend.set(key, value, timeout=DEFAULT_TIMEOUT if ttl is None else ttl)

    def delete(self, key: str) -> None:
        self.backend.delete(key)

    def get_or_set(
        self, key: str, compute: Callable[[], T], ttl: float | None = None, *, lock_timeout: float = 10.0
    ) -> T:
        """The cached value of ``key``, or ``compute()`` stored for ``ttl`` s, computed by one caller at a time.

        ``lock_timeout`` bounds both how long the fill lock lives (a filler that
        dies frees it then) and how long the others wait before computing too.
        """
        value = self.backend.get(key, _MISSING)
        if value is not _MISSING:
            return value
        fill_key = self.redis_key(f"{key}:fill")
        token = secrets.token_hex(8)
        conn = get_redis_connection(self.alias)
        deadline = time.monotonic() + lock_timeout
        wait = 0.005
        while True:
            try:
                filler = conn.set(fill_key, token, nx=True, px=int(lock_timeout * 1000))
            except redis.RedisError:
                # Redis is down: nothing to share a result through.
                return compute()
            if filler:
                try:
                    # Filled between our miss and our lock: the previous filler's result.
                    value = self.backend.get(key, _MISSING)
                    if value is _MISSING:
                        value = compute()
                        self.set(key, value, ttl)
                    return value
                finally:
                    self._release_fill_lock(conn, fill_key, token)
            time.sleep(wait * random.uniform(0.5, 1.5))
            wait = min(wait * 1.5, 0.05)
            value = self.backend.get(key, _MISSING)
            if value is not _MISSING:
                return value
            if time.monotonic() >= deadline:
                return compute()

    def family(self, name: str) -> Family:
        """A group of keys invalidated together, e.g. everything cached for one organization."""
        return Family(self, name)

    @staticmethod
    def _release_fill_lock(conn: redis.Redis, fill_key: str, token: str) -> None:
        # If Redis is gone, the fill lock expires with lock_timeout.
        with suppress(redis.RedisError):
            release_if_owner(conn, fill_key, token)


class Family:
    """Keys of one layer sharing a version; :meth:`invalidate` drops them all in one command."""

    def __init__(self, layer: Layer, name: str) -> None:
        self.layer = layer
        self.name = name
        self._version_key = f"family:{name}:version"

    def __repr__(self) -> str:
        return f"<Family {self.layer.alias}:{self.name}>"

    def version(self) -> int:
        """The current version, created (or re-created after an invalidation) on first use."""
        backend = self.layer.backend
        version = backend.get(self._version_key)
        if version is None:
            backend.add(self._version_key, time.time_ns(), timeout=_FAMILY_VERSION_TTL)
            # Another process may have won the add; read back whichever is stored.
            version = backend.get(self._version_key)
        # None only while Redis is down: the keys below are never found then.
        return version or 0

    def invalidate(self) -> None:
        """Orphan every key of the family; the next read computes afresh."""
        self.layer.delete(self._version_key)

    def key(self, key: str) -> str:
        return f"family:{self.name}:{self.version()}:{key}"

    def get(self, key: str, default: Any = None) -> Any:
        return self.layer.get(self.key(key), default)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self.layer.set(self.key(key), value, ttl)

    def delete(self, key: str) -> None:
        self.layer.delete(self.key(key))

    def get_or_set(
        self, key: str, compute: Callable[[], T], ttl: float | None = None, *, lock_timeout: float = 10.0
    ) -> T:
        return self.layer.get_or_set(self.key(key), compute, ttl, lock_timeout=lock_timeout)


@cache
def get_layer(name: LayerName) -> Layer:
    """The layer called ``name`` (one of :data:`LAYER_NAMES`)."""
    if name not in LAYER_NAMES:
        raise ValueError(f"unknown cache layer {name!r}; expected one of {', '.join(LAYER_NAMES)}")
    return Layer(name)
