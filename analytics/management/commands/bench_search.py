"""Global search at scale: the search page's SQL vs the deployments changelist's, among --events events.

Runs against a dedicated database (``<DATABASE name>_bench_<events>``, the
one ``bench_admin_changelist`` fills; created and migrated if missing) with
--events events and --deployments deployments (COPY), then requests through
Django's test client, as a superuser who may view every model:

- the search for one deployment's Vercel id (``dpl_…``),
- the search for one event's id (a UUID, looked up in every model),
- the search for a project name fragment (trigram matches),
- the deployments changelist (its first page), the baseline.

Each page's SQL statements are captured, EXPLAINed (a search statement no
index serves, a sequential scan of the events or the deployments, fails
the check) and timed on their own connection
(median of --runs), all pages in the same loop so machine noise hits them
alike. The search must find its object and take less than the changelist.

    python manage.py bench_search --events 1000000 --deployments 10000
"""

from __future__ import annotations

import json
import random
import statistics
import string
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import psycopg
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection, connections, transaction

from analytics.management.commands import bench_admin_changelist
from analytics.management.commands.bench_admin_changelist import _connect_kwargs, _nodes, _time, uuid7_at

# The tables a search must never read from end to end.
LARGE_TABLES = ("analytics_event", "development_deployment")
PROJECTS = 200


class Command(bench_admin_changelist.Command):
    help = "Global search SQL time vs the deployments changelist's, among many events and deployments."

    def add_arguments(self, parser):
        parser.add_argument("--events", type=int, default=1_000_000)
        parser.add_argument("--deployments", type=int, default=10_000)
        parser.add_argument("--runs", type=int, default=15)
        parser.add_argument("--reset", action="store_true", help="Refill the bench database from scratch.")

    def handle(self, *args, events: int, deployments: int, runs: int, reset: bool, **options):
        self.verbosity = options["verbosity"]
        name = f"{settings.DATABASES['default']['NAME']}_bench_{events}"
        organization = self._prepare(name, events, reset)  # the events, the bench user
        self._fill_deployments(organization, deployments, reset)
        from analytics.models import Event
        from development.models import Deployment

        deployment = Deployment.objects.order_by("id")[deployments // 2]
        event = Event.objects.filter(organization=organization).order_by("id")[events // 7]
        pages = {
            "search: deployment's dpl_ id": (f"/admin/search/?{urlencode({'q': deployment.external_id})}", deployment),
            "search: event's id": (f"/admin/search/?{urlencode({'q': str(event.pk)})}", event),
            "search: project name part": ("/admin/search/?q=project-17", None),
            "deployments changelist": ("/admin/development/deployment/", None),
        }
        statements = {page: self._capture_finding(url, found) for page, (url, found) in pages.items()}
        searches = [sql for page, sqls in statements.items() if page.startswith("search") for sql in sqls]
        problems = sorted({problem for sql in searches for problem in self._scans(sql)})
        connections.close_all()

        # Each statement's times, run after run; a page's time in a run is the sum of its statements'.
        timings = {page: [[] for _ in sqls] for page, sqls in statements.items()}
        with psycopg.connect(dbname=name, **_connect_kwargs()) as handle:
            order = list(statements)
            for run in range(runs):
                # Each page in turn goes first, so whatever the first statement of a run pays is shared.
                for page in order[run % len(order) :] + order[: run % len(order)]:
                    for times, sql in zip(timings[page], statements[page], strict=True):
                        times.append(_time(handle, sql))
        medians = {
            page: statistics.median(map(sum, zip(*by_statement, strict=True))) for page, by_statement in timings.items()
        }
        if self.verbosity > 1:
            for page, by_statement in timings.items():
                self.stdout.write(page)
                for times, sql in zip(by_statement, statements[page], strict=True):
                    self.stdout.write(f"  {statistics.median(times):7.2f} ms  {sql[:140]}")
        self._report_search(medians, statements, problems, events, deployments)

    def _fill_deployments(self, organization, size: int, reset: bool) -> None:
        """COPY deployments up to ``size`` (Vercel-like ids, ``PROJECTS`` project names), then ANALYZE."""
        from development.models import Deployment

        if reset:
            Deployment.objects.all().delete()
        missing = size - Deployment.objects.count()
        if missing < 0:
            raise CommandError(f"The bench database holds more than {size:,} deployments: run with --reset.")
        now = datetime.now(UTC)
        columns = (
            "id", "created_at", "updated_at", "metadata", "organization_id", "external_id", "project_name", "url",
            "environment", "state", "commit_sha", "branch", "error_message", "started_at", "ready_at",
        )  # fmt: skip
        alphabet = string.ascii_letters + string.digits
        with connection.cursor() as cursor:
            raw: psycopg.Cursor = cursor.cursor
            with raw.copy(f"COPY development_deployment ({', '.join(columns)}) FROM STDIN") as copy:
                for n in range(missing):
                    moment = now - timedelta(days=90) + timedelta(seconds=n * 90 * 86400 / max(missing, 1))
                    external_id = "dpl_" + "".join(random.choices(alphabet, k=24))
                    project = f"project-{n % PROJECTS}"
                    copy.write_row((
                        uuid7_at(moment), moment, moment, "{}", organization.pk, external_id, project,
                        f"https://{project}-{external_id[-6:].lower()}.vercel.app", "preview", "ready",
                        f"{random.getrandbits(160):040x}", f"feature/{n}", "", moment, moment + timedelta(minutes=2),
                    ))  # fmt: skip
            cursor.execute("VACUUM ANALYZE development_deployment")

    def _capture_finding(self, url: str, found) -> list[str]:
        """The page's SQL; the search page must list ``found``."""
        statements = self._capture(url)
        if found is not None:
            with self._admin_get() as get:
                html = get(url).content.decode()
            meta = found._meta
            if f"/admin/{meta.app_label}/{meta.model_name}/{found.pk}/change/" not in html:
                raise CommandError(f"{url} does not list {meta.verbose_name} {found.pk}")
        return statements

    def _scans(self, sql: str) -> list[str]:
        """The large tables ``sql`` reads from end to end even when the planner is told to use any index instead.

        At benchmark sizes the planner may rightly prefer a scan of a few
        thousand rows; what must hold is that an index can serve the query.
        """
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return [
            f"Seq Scan on {node['Relation Name']} in: {sql[:160]}"
            for node in _nodes(plan[0]["Plan"])
            if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in LARGE_TABLES
        ]

    def _report_search(self, medians, statements, problems, events: int, deployments: int) -> None:
        baseline = medians["deployments changelist"]
        self.stdout.write(f"\n{events:,} events, {deployments:,} deployments")
        self.stdout.write(f"{'page (median SQL time)':<32}{'ms':>9}{'vs changelist':>15}  queries")
        for page, median in medians.items():
            self.stdout.write(f"{page:<32}{median:>9.2f}{median / baseline:>15.2f}  {len(statements[page])}")
        failed = False
        for problem in problems:
            failed = True
            self.stderr.write(problem)
        slower = [page for page, median in medians.items() if page.startswith("search") and median >= baseline]
        for page in slower:
            failed = True
            self.stderr.write(f"{page} takes {medians[page]:.2f} ms, not less than the changelist's {baseline:.2f} ms")
        if failed:
            raise CommandError("Search check failed.")
        self.stdout.write(self.style.SUCCESS("Search check passed: every search under one changelist page, no scans."))
