"""Benchmark: a page of 100 deployments and of 100 events through the API, at two table sizes.

    python manage.py bench_api --rows 10000 1000000 [--requests 2000 --concurrency 8 --runs 3]

For each size, the organization's deployments (and one event about each) are
grown to that many rows with ``INSERT ... SELECT generate_series``, then, in
the same run: ``GET /api/v1/orgs/<org>/deployments/?limit=100`` (and
``events/``) on a uvicorn process, from concurrent keep-alive connections,
against the same data queries written by hand (the organization's newest
event id, then the page with each row's newest event id) with psycopg on one
connection and ``json.dumps``. Medians of ``--runs``; the ratio is the API's
requests/s over the hand-written pages/s. The API's queries per page are
counted at each size (the same count means no query grows with the table).
Everything it created is deleted at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from functools import cache

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from companyos.foundation.events import topic_prefixes
from companyos.foundation.tests.support import current_database_url, uvicorn_server
from core.models import ApiToken, Organization, OrganizationMember, User
from core.services import api_token_create

GROW_DEPLOYMENTS = """
INSERT INTO development_deployment (id, created_at, updated_at, metadata, organization_id, external_id, project_name,
    url, environment, state, commit_sha, branch, error_message)
SELECT gen_random_uuid(), now() - make_interval(secs => i), now(), '{}', %(org)s, %(prefix)s || i, 'web',
    'https://web-' || i || '.vercel.app', 'preview', 'error', md5(i::text), 'main', 'Build failed'
FROM generate_series(%(start)s, %(stop)s - 1) AS i
"""
GROW_EVENTS = """
INSERT INTO analytics_event (id, created_at, updated_at, organization_id, event_type, category, source,
    subject_type, subject_id, payload, occurred_at)
SELECT gen_random_uuid(), d.created_at, d.created_at, d.organization_id, 'deployment.error', 'development', 'vercel',
    'development.deployment', d.id, jsonb_build_object('id', d.id, 'state', d.state), d.created_at
FROM development_deployment d
WHERE d.organization_id = %(org)s AND NOT EXISTS (SELECT 1 FROM analytics_event e WHERE e.subject_id = d.id)
"""
HAND_POSITION = "SELECT id FROM analytics_event WHERE organization_id = %s ORDER BY id DESC LIMIT 1"
HAND_PAGES = {
    "deployments": """
        SELECT id, created_at, updated_at, repository_id, integration_id, pull_request_id, external_id, project_name,
            url, environment, state, commit_sha, branch, creator_id, error_message, started_at, ready_at,
            build_duration_ms, last_event_at,
            (SELECT e.id FROM analytics_event e
             WHERE e.subject_type = 'development.deployment' AND e.subject_id = d.id
                AND e.event_type LIKE ANY(%(topics)s)
             ORDER BY e.id DESC LIMIT 1) AS last_event_id
        FROM development_deployment d WHERE organization_id = %(org)s ORDER BY created_at DESC, id DESC LIMIT 101""",
    "events": """
        SELECT id, created_at, event_type, category, source, actor_user_id, actor_agent_id, subject_type, subject_id,
            payload, occurred_at
        FROM analytics_event WHERE organization_id = %(org)s ORDER BY id DESC LIMIT 101""",
}


@cache
def topic_patterns() -> list[str]:
    """LIKE patterns of the topics' event types: an object's last_event_id counts only those, as the API's does."""
    return [connection.ops.prep_for_like_query(prefix) + "%" for prefix in topic_prefixes()]


def hand_page(conn: psycopg.Connection, organization_id: uuid.UUID, kind: str) -> str:
    position = conn.execute(HAND_POSITION, (organization_id,)).fetchone()
    cursor = conn.execute(HAND_PAGES[kind], {"org": organization_id, "topics": topic_patterns()})
    names = [column.name for column in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()[:100]]
    return json.dumps({"items": rows, "next_cursor": None, "event_position": position and position[0]}, default=str)


async def _connection(port: int, request: bytes, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if head[9:12] != b"200":
                raise SystemExit(f"unexpected answer: {head[:200]!r}")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
    finally:
        writer.close()


async def _load(port: int, request: bytes, requests: int, concurrency: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, requests // concurrency) for _ in range(concurrency)))
    return (requests // concurrency * concurrency) / (time.perf_counter() - started)


class Command(BaseCommand):
    help = __doc__.split("\n\n")[0]

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
        parser.add_argument("--requests", type=int, default=2000)
        parser.add_argument("--concurrency", type=int, default=8)
        parser.add_argument("--runs", type=int, default=3)

    def handle(self, *args, rows: list[int], requests: int, concurrency: int, runs: int, **options) -> None:
        organization = Organization.objects.create(name="API bench", slug=f"bench-{uuid.uuid4().hex[:12]}")
        user = User.objects.create_user(f"{organization.slug}@example.com")
        OrganizationMember.objects.create(organization=organization, user=user)
        _, raw = api_token_create(user=user, name="bench")
        env = {
            **os.environ, "DATABASE_URL": current_database_url(), "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
            "API_RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "WARNING",
        }  # fmt: skip
        results = []
        try:
            with psycopg.connect(current_database_url(), autocommit=True) as conn, uvicorn_server(env=env) as port:
                grown = 0
                for size in sorted(rows):
                    started = time.perf_counter()
                    params = {
                        "org": organization.pk,
                        "prefix": f"bench-{organization.pk}-",
                        "start": grown,
                        "stop": size,
                    }
                    conn.execute(GROW_DEPLOYMENTS, params)
                    conn.execute(GROW_EVENTS, {"org": organization.pk})
                    conn.execute("ANALYZE development_deployment")
                    conn.execute("ANALYZE analytics_event")
                    grown = size
                    self.stdout.write(f"{size:,} rows each: grown in {time.perf_counter() - started:.0f} s")
                    for kind in ("deployments", "events"):
                        path = f"/api/v1/orgs/{organization.slug}/{kind}/?limit=100"
                        results.append(
                            self.measure(conn, port, organization, raw, path, kind, size, requests, concurrency, runs)
                        )
        finally:
            ApiToken.objects.filter(user=user).delete()
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM analytics_event WHERE organization_id = %s", [organization.pk])
                cursor.execute("DELETE FROM development_deployment WHERE organization_id = %s", [organization.pk])
            organization.delete()
            user.delete()
        self.stdout.write(
            f"\nmedians of {runs} runs, {requests} requests each, concurrency {concurrency}, uvicorn 1 worker"
        )
        self.stdout.write(
            f"{'page of 100':<14}{'rows':>11}{'API req/s':>11}{'by hand/s':>11}{'ratio':>8}{'queries':>9}"
        )
        for kind, size, api_rate, hand_rate, queries in results:
            self.stdout.write(
                f"{kind:<14}{size:>11,}{api_rate:>11.0f}{hand_rate:>11.0f}{api_rate / hand_rate:>8.2f}{queries:>9}"
            )

    def measure(self, conn, port, organization, raw, path, kind, size, requests, concurrency, runs):
        client = Client(headers={"Authorization": f"Bearer {raw}", "Host": "localhost"})
        client.get(path, secure=True)  # records last_used_at once
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path, secure=True).status_code == 200
        # As the TLS-terminating proxy in front of it sends them: without DEBUG, plain HTTP is redirected.
        headers = f"Host: 127.0.0.1\r\nX-Forwarded-Proto: https\r\nAuthorization: Bearer {raw}\r\n"
        request = f"GET {path} HTTP/1.1\r\n{headers}\r\n".encode()
        asyncio.run(_load(port, request, concurrency * 10, concurrency))  # warm up
        api_rates, hand_rates = [], []
        for _ in range(runs):
            api_rates.append(asyncio.run(_load(port, request, requests, concurrency)))
            started, count = time.perf_counter(), max(200, requests // 4)
            for _ in range(count):
                hand_page(conn, organization.pk, kind)
            hand_rates.append(count / (time.perf_counter() - started))
        return kind, size, statistics.median(api_rates), statistics.median(hand_rates), len(captured)
