"""The intake's asynchronous connections: configured as Django's primary, one pool per event loop."""

import asyncio
import time

import pytest
from django.db import connections

from integrations.webhooks import database

pytestmark = pytest.mark.django_db(transaction=True)


async def server_pid_and_settings() -> tuple[int, str, bool]:
    async with database.primary_connection() as connection:
        async with database.primary_connection() as nested:
            assert nested is connection, "a nested block shares its connection"
        cursor = await connection.execute("SELECT pg_backend_pid(), current_database()")
        pid, name = await cursor.fetchone()
        return pid, name, connection.autocommit


def test_connections_reach_djangos_primary_without_prepared_statements():
    pid, name, autocommit = asyncio.run(server_pid_and_settings())

    assert name == connections["default"].settings_dict["NAME"]
    assert autocommit
    pool = database._new_pool()
    # A transaction-mode PgBouncer gives each transaction any server connection: no named statements.
    assert pool.kwargs["prepare_threshold"] is None
    assert pool.max_size == connections["default"].settings_dict["OPTIONS"]["pool"]["max_size"]


def test_a_loops_pool_closes_when_the_loop_ends():
    pid, _, _ = asyncio.run(server_pid_and_settings())

    assert database._pools == {}
    # The server process ends a moment after its client said goodbye.
    deadline = time.monotonic() + 5
    while server_alive(pid):
        assert time.monotonic() < deadline, "its connection was closed"
        time.sleep(0.05)


def server_alive(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1


def test_without_djangos_pool_each_block_connects(monkeypatch):
    monkeypatch.delitem(connections["default"].settings_dict["OPTIONS"], "pool")

    async def twice():
        return [await server_pid_and_settings() for _ in range(2)]

    (one, _, _), (two, _, _) = asyncio.run(twice())
    assert one != two
