"""Scale check of the Event changelist: SQL time at 10,000 rows vs --rows rows.

Runs against a dedicated database (``<DATABASE name>_bench``, created and
migrated if missing; --reset empties it), fills ``analytics_event`` with COPY,
and for each size requests the admin changelist (unfiltered, and filtered by
an organization) several times through Django's test client. Every SQL
statement the page runs is captured, timed on its own (median of the runs)
and EXPLAINed: a sequential scan of ``analytics_event`` fails the check. The
raw baseline is the page's essential statement written by hand (newest 100
rows by primary key), timed the same way.

    python manage.py bench_admin_changelist --rows 1000000
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

SMALL = 10_000
EVENT_TYPES = [
    "deployment.ready",
    "deployment.error",
    "pull_request.opened",
    "agent.task.completed",
    "social.post.published",
]
# Six months back: a page in the middle of the table, not at either end.
MONTH = datetime.now(UTC) - timedelta(days=182)
RAW_PAGE = "SELECT * FROM analytics_event ORDER BY id DESC LIMIT 100"


def uuid7_at(moment: datetime) -> uuid.UUID:
    """A UUIDv7 carrying ``moment`` (the application's ids carry their creation time)."""
    ms = int(moment.timestamp() * 1000)
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | random.getrandbits(12) << 64 | 0b10 << 62 | random.getrandbits(62)
    )
    return uuid.UUID(int=value)


class Command(BaseCommand):
    help = "Event changelist SQL time with 10,000 rows vs --rows rows; fails on a sequential scan of the table."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--runs", type=int, default=15)
        parser.add_argument("--reset", action="store_true", help="Refill the bench databases from scratch.")
        parser.add_argument("--max-ratio", type=float, default=1.2)

    def handle(self, *args, rows: int, runs: int, reset: bool, max_ratio: float, **options):
        if rows <= SMALL:
            raise CommandError(f"--rows must be more than {SMALL}.")
        self.verbosity = options["verbosity"]
        base = settings.DATABASES["default"]["NAME"]
        sizes = {SMALL: f"{base}_bench_small", rows: f"{base}_bench_{rows}"}

        # The statements each database's page runs, and their plans.
        pages: dict[int, dict[str, list[str]]] = {}
        problems: list[str] = []
        for size, name in sizes.items():
            started = time.perf_counter()
            organization = self._prepare(name, size, reset)
            self.stdout.write(f"{name}: {size:,} events ready in {time.perf_counter() - started:.1f}s")
            urls = {
                "unfiltered": "/admin/analytics/event/",
                "by organization": f"/admin/analytics/event/?organization__id__exact={organization.pk}",
                "one month": f"/admin/analytics/event/?created_at__year={MONTH.year}&created_at__month={MONTH.month}",
            }
            pages[size] = {page: self._capture(url) for page, url in urls.items()}
            pages[size]["raw baseline"] = [RAW_PAGE]
            problems += [
                problem
                for statements in pages[size].values()
                for sql in statements
                for problem in self._plan_problems(sql)
            ]
        connections.close_all()

        # Both databases timed in the same loop, so machine noise hits both alike.
        timings = {size: {page: [] for page in pages[size]} for size in sizes}
        handles = {size: psycopg.connect(dbname=name, **_connect_kwargs()) for size, name in sizes.items()}
        try:
            for _ in range(runs):
                for size, handle in handles.items():
                    for page, statements in pages[size].items():
                        timings[size][page].append(sum(_time(handle, sql) for sql in statements))
        finally:
            for handle in handles.values():
                handle.close()
        results = {
            size: {page: statistics.median(values) for page, values in by_page.items()}
            for size, by_page in timings.items()
        }
        self._report(results, pages, problems, rows, max_ratio)

    def _prepare(self, name: str, size: int, reset: bool):
        """Point the default connection at ``name`` (created, migrated, filled to ``size`` events)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
        connections.close_all()
        connection.settings_dict["NAME"] = name
        if connection.pool is not None:  # a pool keeps connecting to the database it was made for
            connection.close_pool()
        call_command("migrate", verbosity=0, interactive=False)
        from analytics.models import Event
        from core.models import Organization, User

        if reset:
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE analytics_event")
        organizations = [
            Organization.objects.get_or_create(slug=f"bench-{n}", defaults={"name": f"Bench {n}"})[0] for n in range(3)
        ]
        self.user = User.objects.filter(email="bench@example.com").first() or User.objects.create_superuser(
            "bench@example.com", None, name="Bench"
        )
        existing = Event.objects.count()
        if existing > size:
            raise CommandError(f"{name} holds {existing:,} events, more than {size:,}: run with --reset.")
        self._fill(organizations, size - existing)
        return organizations[1]

    def _fill(self, organizations, missing: int) -> None:
        """COPY ``missing`` events, spread over the last year, then ANALYZE."""
        now = datetime.now(UTC)
        columns = (
            "id", "created_at", "updated_at", "organization_id", "event_type", "category", "source",
            "subject_type", "subject_id", "payload", "occurred_at",
        )  # fmt: skip
        with connection.cursor() as cursor:
            raw: psycopg.Cursor = cursor.cursor
            with raw.copy(f"COPY analytics_event ({', '.join(columns)}) FROM STDIN") as copy:
                # Oldest first, so ids (time-ordered) grow like the real table's.
                for n in range(missing):
                    moment = now - timedelta(days=365) + timedelta(seconds=n * 365 * 86400 / max(missing, 1))
                    copy.write_row((
                        uuid7_at(moment), moment, moment, organizations[n % 3].pk, EVENT_TYPES[n % 5], "development",
                        "system", "development.deployment", uuid.uuid4(), json.dumps({"n": n}), moment,
                    ))  # fmt: skip
            cursor.execute("VACUUM ANALYZE analytics_event")

    def _capture(self, url: str) -> list[str]:
        """The SQL statements the admin page runs (logged in, through Django's test client)."""
        with self._admin_get() as get:
            get(url)  # warm caches (content types, session)
            with CaptureQueriesContext(connection) as captured:
                response = get(url)
        if response.status_code != 200:
            raise CommandError(f"{url} answered {response.status_code}")
        return [query["sql"] for query in captured.captured_queries]

    @contextmanager
    def _admin_get(self) -> Iterator[Callable[[str], HttpResponse]]:
        """GET as the bench user, through one test client. Over HTTPS, as the proxy in front
        of the app forwards requests: without DEBUG, plain HTTP is only redirected."""
        client = Client()
        client.force_login(self.user)
        with override_settings(ALLOWED_HOSTS=["testserver"]):
            yield partial(client.get, secure=True)

    def _plan_problems(self, sql: str) -> list[str]:
        if sql.lstrip().upper().startswith("EXPLAIN"):
            return []  # planning only: reads statistics, no rows
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return [
            f"Seq Scan on analytics_event in: {sql[:160]}" for node in _nodes(plan[0]["Plan"]) if _scans_events(node)
        ]

    def _report(self, results, pages, problems, rows: int, max_ratio: float) -> None:
        if self.verbosity > 1:
            for sql in pages[rows]["unfiltered"]:
                self.stdout.write(f"  {sql[:150]}")
        self.stdout.write(f"\n{'page (median SQL time)':<24}{SMALL:>12,} rows{rows:>14,} rows{'ratio':>9}  queries")
        failed = False
        for page in results[SMALL]:
            small, large = results[SMALL][page], results[rows][page]
            counts = f"{len(pages[SMALL][page])}/{len(pages[rows][page])}"
            self.stdout.write(f"{page:<24}{small:>14.2f} ms{large:>14.2f} ms{large / small:>9.2f}  {counts}")
        ratio = results[rows]["unfiltered"] / results[SMALL]["unfiltered"]
        if ratio > max_ratio:
            failed = True
            self.stderr.write(f"unfiltered ratio {ratio:.2f} > {max_ratio}")
        for problem in sorted(set(problems)):
            failed = True
            self.stderr.write(problem)
        page, raw = results[rows]["unfiltered"], results[rows]["raw baseline"]
        self.stdout.write(
            f"At {rows:,} rows the changelist's SQL takes {page / raw:.1f}x the raw page query ({raw:.2f} ms)."
        )
        if failed:
            raise CommandError("Scale check failed.")
        self.stdout.write(self.style.SUCCESS("Scale check passed: SQL time bounded, no sequential scan of the table."))


def _connect_kwargs() -> dict:
    database = settings.DATABASES["default"]
    return {
        key: value
        for key, value in {
            "host": database.get("HOST"), "port": database.get("PORT"),
            "user": database.get("USER"), "password": database.get("PASSWORD"),
        }.items()
        if value
    }  # fmt: skip


def _time(handle: psycopg.Connection, sql: str) -> float:
    """Milliseconds to run ``sql`` and fetch its rows."""
    started = time.perf_counter()
    with handle.cursor() as cursor:
        cursor.execute(sql)
        cursor.fetchall()
    return (time.perf_counter() - started) * 1000


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _scans_events(node: dict) -> bool:
    return node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "analytics_event"
