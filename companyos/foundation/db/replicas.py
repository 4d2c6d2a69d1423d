"""What each read replica has replayed, checked cheaply and remembered briefly.

One query per replica per ``DATABASE_REPLICA_CHECK_SECONDS`` and process,
on a connection of its own (not the alias's pool, whose ``getconn`` would
wait its whole timeout for a replica that is down):

* ``pg_last_wal_replay_lsn()``: how far the replica has replayed; a reader
  that wrote at LSN *n* may use it only once it reached *n* (read-your-writes);
* its lag: 0 while it streams and has replayed all it received, else the age
  of the last transaction it replayed (paused replay, a broken stream). A
  replica lagging more than ``DATABASE_REPLICA_MAX_LAG_SECONDS`` is skipped.
  Seeing the stream's state takes ``pg_read_all_stats`` (docs/scaling.md);
  without it an idle primary makes the replica look late, which only sends
  reads to the primary.

A replica that cannot be reached is skipped for ``DATABASE_REPLICA_RETRY_SECONDS``
before it is tried again, so an outage costs one connect timeout per period,
not one per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import psycopg
from django.conf import settings

from companyos.foundation.db import connect_outside_pool

logger = logging.getLogger("companyos.db")

STATUS_QUERY = """
SELECT pg_is_in_recovery(),
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                 AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
            THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END
"""
# libpq rounds anything lower up to 2 s.
CHECK_CONNECT_TIMEOUT = 2
# A reader that needs a newer LSN than the one remembered re-checks, but not
# more often than this: a burst of such reads costs one query, not one each.
RECHECK_MIN_SECONDS = 0.02


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` as a number that orders like the WAL position."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass
class Replica:
    """One replica alias's last known state in this process."""

    alias: str
    lock: threading.Lock
    replayed: int = 0
    lag: float = math.inf
    checked_at: float = -math.inf
    down_until: float = 0.0
    connection: psycopg.Connection | None = None

    def usable(self, *, min_lsn: int, now: float) -> bool:
        """Whether reads that must see ``min_lsn`` may go here, checking again when needed."""
        if now < self.down_until:
            return False
        age = now - self.checked_at
        if age >= settings.DATABASE_REPLICA_CHECK_SECONDS or (self.replayed < min_lsn and age >= RECHECK_MIN_SECONDS):
            self.refresh()
        return self.lag <= settings.DATABASE_REPLICA_MAX_LAG_SECONDS and self.replayed >= min_lsn

    def refresh(self) -> None:
        # Another thread checking right now: use what it last found.
        if not self.lock.acquire(blocking=False):
            return
        try:
            self._check()
        finally:
            self.lock.release()

    def _check(self) -> None:
        try:
            if self.connection is None or self.connection.closed:
                self.connection = connect_outside_pool(
                    self.alias, connect_timeout=CHECK_CONNECT_TIMEOUT, application_name="companyos-replica-check"
                )
            in_recovery, replayed, lag = self.connection.execute(STATUS_QUERY).fetchone()
        except psycopg.Error as exc:
            self._mark_down(f"unreachable ({exc})")
            return
        self.checked_at = time.monotonic()
        if not in_recovery:
            # Promoted (or misconfigured): it is a primary now, and reads on it
            # would bypass the routing's guarantees; failover tooling re-points it.
            self._mark_down("is not in recovery (promoted?)")
            return
        if self.down_until:
            logger.info("replica %s is back (lag %.1f s)", self.alias, lag or 0.0)
            self.down_until = 0.0
        self.replayed = parse_lsn(replayed) if replayed else 0
        self.lag = math.inf if lag is None else lag

    def _mark_down(self, reason: str) -> None:
        if not self.down_until:
            logger.warning("replica %s skipped: %s", self.alias, reason)
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        self.lag = math.inf
        self.checked_at = time.monotonic()
        self.down_until = self.checked_at + settings.DATABASE_REPLICA_RETRY_SECONDS


_replicas: dict[str, Replica] = {}
_replicas_lock = threading.Lock()


def replica(alias: str) -> Replica:
    state = _replicas.get(alias)
    if state is None:
        with _replicas_lock:
            state = _replicas.setdefault(alias, Replica(alias=alias, lock=threading.Lock()))
    return state
