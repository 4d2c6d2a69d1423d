"""Route the reads that tolerate lag to a read replica, everything else to the primary.

A read goes to a replica only when all of these hold:

* replicas are configured (``DATABASE_REPLICA_URLS``);
* the code around it said lag is fine: a GET or HEAD request
  (:class:`~companyos.foundation.db.middleware.ReadYourWritesMiddleware`:
  admin changelists and dashboards, selectors behind views) or a block in
  :func:`replica_reads` / :func:`current_replica_reads` (event replay);
* its model is neither ``AUTH_USER_MODEL`` nor in ``DATABASE_PRIMARY_MODELS``
  (auth, sessions, the queues: what decides who someone is or who owns a task);
* no transaction is open on the primary (a read inside one belongs to it);
* a replica is healthy, lags less than the bound, and has replayed the LSN
  this reader last wrote (:func:`read_after`): read-your-writes by WAL
  position, not by a guessed delay.

Otherwise the read stays on ``default``. Writes always go to ``default``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache

from django.conf import settings
from django.db import connections

from companyos.foundation.db import DIRECT_ALIAS, replica_aliases
from companyos.foundation.db.replicas import parse_lsn, replica

_lag_tolerant: ContextVar[bool] = ContextVar("companyos_replica_reads", default=False)
_min_lsn: ContextVar[int] = ContextVar("companyos_min_lsn", default=0)


@contextmanager
def replica_reads(allowed: bool = True) -> Iterator[None]:
    """Within the block, reads may (``allowed``) or may not go to a replica."""
    token = _lag_tolerant.set(allowed)
    try:
        yield
    finally:
        _lag_tolerant.reset(token)


@contextmanager
def read_after(lsn: int) -> Iterator[None]:
    """Within the block, a replica serves reads only once it replayed WAL position ``lsn``."""
    token = _min_lsn.set(max(lsn, _min_lsn.get()))
    try:
        yield
    finally:
        _min_lsn.reset(token)


@contextmanager
def current_replica_reads() -> Iterator[None]:
    """Within the block, reads go to a replica only once it has replayed everything committed before it.

    For reads that must miss nothing yet are heavy (an event replay after a
    reconnect): one ``pg_current_wal_lsn()`` on the primary buys the replica
    the rest of the work. Without replicas it costs nothing.
    """
    if not replica_aliases():
        yield
        return
    with replica_reads(), read_after(primary_position()):
        yield


def primary_position() -> int:
    """The primary's WAL position now: everything committed so far is at or before it."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return parse_lsn(cursor.fetchone()[0])


@cache
def _primary_only() -> frozenset[str]:
    return frozenset(label.lower() for label in [*settings.DATABASE_PRIMARY_MODELS, settings.AUTH_USER_MODEL])


def choose_replica() -> str | None:
    """A healthy replica that has replayed what this reader wrote, or None for the primary."""
    now = time.monotonic()
    min_lsn = _min_lsn.get()
    usable = [alias for alias in replica_aliases() if replica(alias).usable(min_lsn=min_lsn, now=now)]
    return random.choice(usable) if usable else None


class ReplicaRouter:
    """The database router of ``DATABASE_ROUTERS``; see the module's docstring."""

    def db_for_read(self, model, **hints) -> str | None:
        if not _lag_tolerant.get():
            return None
        meta = model._meta
        primary_only = _primary_only()
        if meta.app_label in primary_only or meta.label_lower in primary_only:
            return None
        if connections["default"].in_atomic_block:
            return None
        return choose_replica()

    def db_for_write(self, model, **hints) -> str:
        return "default"

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        # Replicas and the direct alias hold the primary's rows.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints) -> bool:
        # Replicas replay the primary's schema; the direct alias is the primary.
        return db != DIRECT_ALIAS and db not in replica_aliases()
