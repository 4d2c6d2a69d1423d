"""Rehearsal of sharding by organization: analytics events hash-partitioned by organization_id vs one table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/partitioning.py

In a throwaway database (created on DATABASE_URL's server, dropped at the
end): the columns of ``analytics_event`` that matter, once as a plain table
and once ``PARTITION BY HASH (organization_id)``; the same rows inserted in
both (timed, alternating), then per-organization reads (newest page, count
of a day) timed on both, median of the runs. It also shows the constraint
PostgreSQL refuses on the partitioned table: a primary key without the
partition key. docs/scaling.md records the figures.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg

COLUMNS = """
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    event_type varchar(100) NOT NULL,
    created_at timestamptz NOT NULL,
    payload jsonb NOT NULL
"""
FILL = """
INSERT INTO {table} (id, organization_id, event_type, created_at, payload)
SELECT gen_random_uuid(), organizations[1 + n %% %(organizations)s], 'deployment.ready',
       now() - (n || ' seconds')::interval, jsonb_build_object('n', n)
FROM generate_series(%(first)s, %(last)s) AS n,
     (SELECT array_agg(organization) AS organizations FROM bench_organization) AS o
"""
READS = {
    "newest page of one organization": "SELECT * FROM {table} WHERE organization_id = %(org)s "
    "ORDER BY created_at DESC LIMIT 100",
    "one organization's day (count)": "SELECT count(*) FROM {table} WHERE organization_id = %(org)s "
    "AND created_at > now() - interval '1 day'",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--organizations", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--batches", type=int, default=5, help="Insert batches per table, alternating.")
    parser.add_argument("--runs", type=int, default=200, help="Reads per query and table.")
    options = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name = f"companyos_partition_rehearsal_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(urlunsplit(urlsplit(url)._replace(path=f"/{name}")), autocommit=True) as conn:
            rehearse(conn, options)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def rehearse(conn: psycopg.Connection, options) -> None:
    conn.execute("CREATE TABLE bench_organization (organization uuid PRIMARY KEY)")
    organizations = [uuid.uuid4() for _ in range(options.organizations)]
    with conn.cursor().copy("COPY bench_organization FROM STDIN") as copy:
        for organization in organizations:
            copy.write_row((organization,))
    conn.execute(f"CREATE TABLE event_plain ({COLUMNS}, PRIMARY KEY (id))")
    conn.execute("CREATE INDEX ON event_plain (organization_id, created_at)")
    conn.execute(f"CREATE TABLE event_partitioned ({COLUMNS}) PARTITION BY HASH (organization_id)")
    try:
        conn.execute("ALTER TABLE event_partitioned ADD PRIMARY KEY (id)")
    except psycopg.errors.FeatureNotSupported as refused:
        print(f"PRIMARY KEY (id) on the partitioned table: refused: {refused.diag.message_primary}")
    conn.execute("ALTER TABLE event_partitioned ADD PRIMARY KEY (organization_id, id)")
    conn.execute("CREATE INDEX ON event_partitioned (organization_id, created_at)")
    for remainder in range(options.partitions):
        conn.execute(
            f"CREATE TABLE event_partitioned_{remainder} PARTITION OF event_partitioned "
            f"FOR VALUES WITH (MODULUS {options.partitions}, REMAINDER {remainder})"
        )

    inserts: dict[str, list[float]] = {"event_plain": [], "event_partitioned": []}
    batch = options.rows // options.batches
    for number in range(options.batches):
        for table in inserts:
            started = time.perf_counter()
            conn.execute(
                FILL.format(table=table),  # the table names are this script's own
                {"organizations": options.organizations, "first": number * batch, "last": (number + 1) * batch - 1},
            )
            inserts[table].append(batch / (time.perf_counter() - started))
    conn.execute("VACUUM ANALYZE")

    reads = {(query, table): [] for query in READS for table in inserts}
    for _ in range(options.runs):
        org = random.choice(organizations)
        for query, sql in READS.items():
            for table in inserts:
                started = time.perf_counter()
                conn.execute(sql.format(table=table), {"org": org}).fetchall()
                reads[(query, table)].append((time.perf_counter() - started) * 1000)

    print(
        f"\n{options.rows:,} events, {options.organizations} organizations, "
        f"{options.partitions} hash partitions; medians"
    )
    print(f"{'':<36}{'partitioned':>14}{'one table':>14}{'ratio':>8}")
    plain, partitioned = (statistics.median(inserts[t]) for t in ("event_plain", "event_partitioned"))
    print(f"{'insert (rows/s)':<36}{partitioned:>14,.0f}{plain:>14,.0f}{partitioned / plain:>8.2f}")
    for query in READS:
        plain, partitioned = (statistics.median(reads[(query, t)]) for t in ("event_plain", "event_partitioned"))
        print(f"{query + ' (ms)':<36}{partitioned:>14.3f}{plain:>14.3f}{partitioned / plain:>8.2f}")


if __name__ == "__main__":
    main()
