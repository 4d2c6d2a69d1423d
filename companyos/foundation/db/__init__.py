"""Where database work goes: the primary, read replicas, or a direct session.

* ``default`` is the primary, maybe through PgBouncer in transaction mode and
  maybe a multi-host URL with ``target_session_attrs=read-write`` (libpq then
  finds whichever host is the primary, also after a failover).
* ``replica_1`` … ``replica_n`` (``DATABASE_REPLICA_URLS``) take the reads that
  tolerate lag, chosen by :mod:`companyos.foundation.db.router`.
* ``direct`` (``DATABASE_DIRECT_URL``) reaches the primary without the pooler,
  for what needs a session of its own: LISTEN, session-level advisory locks.

:func:`aliases_from_environment` builds those entries for settings.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

REPLICA_PREFIX = "replica_"
DIRECT_ALIAS = "direct"


def aliases_from_environment(
    parse: Callable[[str], dict[str, Any]],
    *,
    primary_url: str,
    replica_urls: list[str],
    direct_url: str,
    configure: Callable[[dict[str, Any]], None],
) -> dict[str, dict[str, Any]]:
    """The DATABASES setting: ``default``, one alias per replica URL, and ``direct`` when given.

    ``parse`` turns a URL into a Django entry (django-environ's, which keeps a
    multi-host URL's hosts and ports comma-separated for libpq); ``configure``
    applies the pool and timeout options to each entry. Replicas and the
    direct alias reach the same data, so tests treat them as mirrors of
    ``default`` instead of creating databases of their own.
    """
    databases = {"default": parse(primary_url)}
    for number, url in enumerate(replica_urls, start=1):
        databases[f"{REPLICA_PREFIX}{number}"] = parse(url) | {"TEST": {"MIRROR": "default"}}
    if direct_url:
        databases[DIRECT_ALIAS] = parse(direct_url) | {"TEST": {"MIRROR": "default"}}
        # A transaction-mode pooler gives each transaction whichever server
        # connection is free: a cursor kept open across transactions
        # (QuerySet.iterator()'s server-side cursor) would vanish.
        databases["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    for entry in databases.values():
        entry.setdefault("OPTIONS", {})
        configure(entry)
    return databases


def replica_aliases() -> list[str]:
    """The configured replicas' aliases, in the order of ``DATABASE_REPLICA_URLS``."""
    return [alias for alias in settings.DATABASES if alias.startswith(REPLICA_PREFIX)]


def session_alias(databases: dict[str, Any] | None = None) -> str:
    """The alias for work that needs a server session of its own (LISTEN, session advisory locks).

    ``databases`` is the DATABASES setting (given while settings.py builds it).
    """
    return DIRECT_ALIAS if DIRECT_ALIAS in (settings.DATABASES if databases is None else databases) else "default"


def connect_outside_pool(alias: str, **overrides: Any) -> psycopg.Connection:
    """An autocommit connection of its own to ``alias``, for one held a long time (a LISTEN,
    a replica's health check): never one of the alias's pool, whose slot a connection
    closed outright instead of handed back would keep for good."""
    return psycopg.connect(**(connections[alias].get_connection_params() | overrides), autocommit=True)


# The error types a lost or refused connection raises (a failover, a restarted server), Django's and
# the driver's. They also cover errors of the work itself (a deadlock, a statement timeout):
# connection_lost() tells those apart.
CONNECTION_LOST = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
# SQLSTATEs of a connection the server ended or refused: the connection exception class, and the
# server shutting down, crashing, starting up, dropping the database or timing the session out.
_CONNECTION_SQLSTATES = ("08", "57P0")


def _driver_error(error: BaseException) -> BaseException:
    """The driver's error that ``error`` wraps (Django's and Procrastinate's errors carry it as their
    cause), or ``error`` itself: what any other error was raised from says less than it does."""
    wraps_one = not isinstance(error, psycopg.Error) and isinstance(error.__cause__, psycopg.Error)
    return error.__cause__ if wraps_one else error


def connection_lost(error: BaseException) -> bool:
    """Whether ``error``, or the driver's error it wraps, is a lost or refused connection: expected
    in a failover, and retried. The driver's own errors (the socket closed, no host accepted) carry
    no SQLSTATE; a deadlock or a timeout carries its own."""
    driver_error = _driver_error(error)
    if not isinstance(driver_error, psycopg.Error):
        return isinstance(error, CONNECTION_LOST)
    sqlstate = driver_error.sqlstate
    return isinstance(driver_error, CONNECTION_LOST) and (
        sqlstate is None or sqlstate.startswith(_CONNECTION_SQLSTATES)
    )


def session_lost(using: str = "default") -> bool:
    """Whether this thread's connection to ``using`` is gone: an error just raised there was the
    connection's (a failover, a restarted server), not the work's."""
    session = connections[using].connection
    return session is not None and (session.closed or session.broken)


def error_summary(error: BaseException) -> str:
    """The first line of an error (of the driver's, if it wraps one), for a log line: psycopg's
    connection errors list every host tried, a line each; Procrastinate's say only "Database error"."""
    error = _driver_error(error)
    return next(iter(str(error).strip().splitlines()), type(error).__name__)
