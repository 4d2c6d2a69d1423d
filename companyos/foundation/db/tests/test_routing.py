"""Routing without replicas, and the WAL positions the routing compares.

The routing to real replicas (read-your-writes with replay paused, skipped
replicas) is exercised against a started topology in companyos/config/tests/test_topology.py.
"""

import pytest
from django.db import router

from companyos.foundation.console.models import Change
from companyos.foundation.db import aliases_from_environment, session_alias
from companyos.foundation.db.replicas import format_lsn, parse_lsn
from companyos.foundation.db.router import replica_reads


@pytest.mark.parametrize("text", ["0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"])
def test_lsn_round_trips_and_orders_like_the_wal(text):
    assert format_lsn(parse_lsn(text)) == text
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")


def test_without_replicas_lag_tolerant_reads_stay_on_the_primary():
    with replica_reads():
        assert router.db_for_read(Change) == "default"


def test_replicas_and_the_direct_url_become_mirrored_aliases_and_the_pooler_loses_server_side_cursors():
    def parse(url):
        return {"NAME": url}

    def configure(entry):
        entry["OPTIONS"]["configured"] = True

    databases = aliases_from_environment(
        parse, primary_url="bouncer", replica_urls=["r1", "r2"], direct_url="primary", configure=configure
    )

    assert list(databases) == ["default", "replica_1", "replica_2", "direct"]
    assert {alias: entry["NAME"] for alias, entry in databases.items()} == {
        "default": "bouncer", "replica_1": "r1", "replica_2": "r2", "direct": "primary",
    }  # fmt: skip
    assert all(entry["OPTIONS"]["configured"] for entry in databases.values())
    assert all(databases[alias]["TEST"] == {"MIRROR": "default"} for alias in ("replica_1", "replica_2", "direct"))
    assert databases["default"]["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert session_alias(databases) == "direct"
    assert session_alias({"default": {}}) == "default"
