"""The intake's asynchronous connections: configured as Django's primary, one pool per event loop."""

import asyncio
import time

import pytest
from django.conf import settings
from django.db import connections

from companyos.foundation.db import DIRECT_ALIAS
from integrations.webhooks import database

pytestmark = pytest.mark.django_db(transaction=True)


async def use_a_connection():
    async with database.primary_connection() as connection:
        async with database.primary_connection() as nested:
            assert nested is connection, "a nested block shares its connection"
        cursor = await connection.execute("SELECT current_database()")
        assert (await cursor.fetchone())[0] == connections["default"].settings_dict["NAME"]
        assert connection.autocommit
        return connection


def test_connections_reach_djangos_primary_and_prepare_statements_when_no_pooler_is_in_between(monkeypatch):
    asyncio.run(use_a_connection())

    # No DATABASE_DIRECT_URL: DATABASE_URL reaches the primary itself (this
    # suite also runs through the topology's PgBouncer, where it is set).
    monkeypatch.delitem(settings.DATABASES, DIRECT_ALIAS, raising=False)
    pool = database._new_pool()
    assert "prepare_threshold" not in pool.kwargs, "psycopg's default: prepared after a few uses"
    assert pool.max_size == connections["default"].settings_dict["OPTIONS"]["pool"]["max_size"]


def test_behind_a_transaction_mode_pooler_statements_are_not_prepared(monkeypatch):
    # DATABASE_DIRECT_URL set: DATABASE_URL is a PgBouncer in transaction mode,
    # which gives each transaction any server connection: no named statements.
    monkeypatch.setitem(settings.DATABASES, DIRECT_ALIAS, connections["default"].settings_dict)

    assert database._new_pool().kwargs["prepare_threshold"] is None


def sessions() -> int:
    """The server's sessions on the test database (this test's own included)."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_a_loops_pool_closes_its_connections_when_the_loop_ends():
    before = sessions()

    connection = asyncio.run(use_a_connection())

    assert database._pools == {}
    assert connection.closed
    # None is left behind, not even one the pool was still making as the loop
    # ended: such a one reaches the server within moments, and stays.
    time.sleep(0.5)
    deadline = time.monotonic() + 5  # the server drops a closed session a moment later
    while sessions() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sessions() == before


def test_without_djangos_pool_each_block_connects(monkeypatch):
    monkeypatch.delitem(connections["default"].settings_dict["OPTIONS"], "pool")

    async def twice():
        first = await use_a_connection()
        assert first.closed, "closed as soon as its block ended"
        return first, await use_a_connection()

    first, second = asyncio.run(twice())
    assert first is not second
