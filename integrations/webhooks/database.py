"""The intake's asynchronous connections to the primary database.

Django's ORM is synchronous: under ASGI each of its queries runs in the one
thread that synchronous code shares, so every delivery would wait there for
the others, and for any other view. The intake's two statements (find the
endpoint, store the delivery with its job) run on psycopg's asynchronous
connections instead, on the request's event loop, so concurrent deliveries
share PostgreSQL's commits.

The pool is configured from Django's ``default`` alias, the primary every
write goes to (``companyos.foundation.db``): the same server and options
(through PgBouncer in transaction mode too: each statement is its own
transaction, and prepared statements stay off as Django leaves them, while
without a pooler psycopg prepares them), the same pool sizes, and the same
check of each connection as it is taken when ``CONN_HEALTH_CHECKS`` is on.
With Django's pool turned off (``DATABASE_POOL_MAX_SIZE=0``) each statement
connects, as Django then does.

A pool belongs to one event loop: uvicorn runs one per process, Django's
test client one per request. It is opened by the loop's first delivery and
closed when the loop shuts down and cancels what still runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from django.db import connections
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, AsyncNullConnectionPool

from companyos.foundation.db import session_alias

ALIAS = "default"

_pools: dict[asyncio.AbstractEventLoop, asyncio.Future[AsyncConnectionPool]] = {}
# The tasks that keep each loop's pool open (the loop holds only weak references to tasks).
_lifetimes: set[asyncio.Task] = set()
_held: ContextVar[AsyncConnection | None] = ContextVar("webhook_intake_connection", default=None)


def _new_pool() -> AsyncConnectionPool:
    database = connections[ALIAS]
    params = database.get_connection_params()
    # Django's synchronous cursor class; psycopg's asynchronous default binds on the server.
    params.pop("cursor_factory", None)
    if session_alias() == ALIAS and "prepare_threshold" not in database.settings_dict["OPTIONS"]:
        # Django turns prepared statements off for a transaction-mode pooler's
        # sake; with none in front of the primary, psycopg prepares the
        # intake's two statements on each connection after a few uses, and
        # PostgreSQL no longer parses and plans them for every delivery.
        del params["prepare_threshold"]
    check = AsyncConnectionPool.check_connection if database.settings_dict["CONN_HEALTH_CHECKS"] else None
    sizes = database.settings_dict["OPTIONS"].get("pool")
    if not sizes:
        return AsyncNullConnectionPool(kwargs={**params, "autocommit": True}, check=check, open=False)
    return AsyncConnectionPool(
        kwargs={**params, "autocommit": True},
        min_size=sizes["min_size"],
        max_size=sizes["max_size"],
        timeout=sizes["timeout"],
        check=check,
        name="webhook-intake",
        open=False,
    )


async def _keep_open(loop: asyncio.AbstractEventLoop, opened: asyncio.Future) -> None:
    pool = _new_pool()
    try:
        # Its first connections made before any is handed out: a loop that ends
        # right after (a test client's request) then has no connection attempt
        # still under way, which its cancellation would leave open.
        await pool.open(wait=True, timeout=pool.timeout)
    except BaseException as exc:
        # The next delivery tries again.
        _pools.pop(loop, None)
        if isinstance(exc, Exception):
            opened.set_exception(exc)
            return
        opened.cancel()
        raise
    opened.set_result(pool)
    try:
        await asyncio.Event().wait()  # until the loop shuts down and cancels this task
    finally:
        _pools.pop(loop, None)
        # The shutdown cancelled the pool's own tasks too: waiting for them
        # would stop close() before it closes the idle connections.
        await pool.close(timeout=0)


@asynccontextmanager
async def primary_connection() -> AsyncIterator[AsyncConnection]:
    """A connection to the primary in autocommit mode, from this event loop's pool.

    Inside another ``primary_connection()`` block it is that block's
    connection: a request's statements share one checkout (and one check).
    """
    held = _held.get()
    if held is not None:
        yield held
        return
    loop = asyncio.get_running_loop()
    opened = _pools.get(loop)
    if opened is None:
        opened = _pools[loop] = loop.create_future()
        lifetime = loop.create_task(_keep_open(loop, opened))
        _lifetimes.add(lifetime)
        lifetime.add_done_callback(_lifetimes.discard)
    # Shielded: a request that gives up must not cancel the pool's opening for the others.
    pool = opened.result() if opened.done() else await asyncio.shield(opened)
    async with pool.connection() as connection:
        token = _held.set(connection)
        try:
            yield connection
        finally:
            _held.reset(token)
