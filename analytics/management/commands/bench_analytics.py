"""Benchmark analytics ingest and reads against raw baselines, on one metrics table.

Run it against a database of its own (it empties the analytics tables when it
is done, and refuses to start on a database that holds metrics):

    createdb companyos_analytics_bench
    DATABASE_URL=postgres://.../companyos_analytics_bench manage.py migrate
    DATABASE_URL=postgres://.../companyos_analytics_bench manage.py bench_analytics [--full]

Figures (medians of ``--repeats`` runs):
1. ingest rows/s into an empty table: ``record_metrics`` vs raw psycopg binary
   COPY vs ``bulk_create`` (goal: API >= 0.5x COPY);
2. ingest rows/s through the API into the table at ``--large`` rows vs empty
   (goal >= 0.8x);
3. a fixed 1-day window of one series from raw rows at ``--small`` vs
   ``--large`` rows (goal <= 1.5x the time);
4. a 30-day hourly series from rollups vs the same from raw rows (goal >= 100x).

Samples arrive at a fixed rate (2 organizations x 8 series, one sample every
``STEP``: each series gets one every 16 s, 225 per hourly bucket), so a bigger
table is a longer history, as in production.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from analytics.ingest import METRICS, record_metrics
from analytics.management.commands.generate_data import ProgressBar
from analytics.models import Metric
from analytics.selectors import metric_series
from analytics.synthetic import SERIES, metric_rows
from companyos.foundation.ids import uuid7
from core.models import Organization

STEP = timedelta(seconds=1)
ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
SERIES_NAME = SERIES[0].name
ORGANIZATIONS = 2


class Command(BaseCommand):
    help = "Benchmark analytics ingest and queries against raw psycopg COPY and raw SQL (use a dedicated database)."

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true", help="1 M and 10 M rows, batches of 50 000 (minutes).")
        parser.add_argument("--small", type=int, default=None, help="Rows for the small table (default 200 000).")
        parser.add_argument("--large", type=int, default=None, help="Rows for the large table (default 1 000 000).")
        parser.add_argument("--batch", type=int, default=None, help="Rows per measured ingest batch (default 10 000).")
        parser.add_argument("--repeats", type=int, default=5)
        parser.add_argument("--keep", action="store_true", help="Leave the rows in place afterwards.")

    def handle(self, *args, full, small, large, batch, repeats, keep, **options):
        small = small or (1_000_000 if full else 200_000)
        large = large or (10_000_000 if full else 1_000_000)
        batch = batch or (50_000 if full else 10_000)
        if Metric.objects.exists():
            raise CommandError("analytics_metric is not empty: run the benchmark on a database of its own.")
        self.rng = random.Random(8)
        self.organizations = [
            Organization.objects.create(name=f"Bench {i}", slug=f"bench-analytics-{uuid7().hex[-8:]}").id
            for i in range(ORGANIZATIONS)
        ]
        self.written = 0  # rows generated so far: the next sample's position in time
        db = connection.settings_dict
        # The baseline's own connection: plain psycopg, no Django in the way.
        self.raw = psycopg.connect(
            dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"] or 5432
        )
        try:
            self._run(small=small, large=large, batch=batch, repeats=repeats)
        finally:
            self.raw.close()
            if not keep:
                with connection.cursor() as cursor:
                    cursor.execute("TRUNCATE analytics_metric, analytics_metricrollup")
                Organization.objects.filter(id__in=self.organizations).delete()

    # --- data -----------------------------------------------------------------

    def _rows(self, count: int) -> list[dict]:
        start = ORIGIN + self.written * STEP
        self.written += count
        return list(
            metric_rows(
                organizations=self.organizations, count=count, start=start, end=start + count * STEP, rng=self.rng
            )
        )

    def _fill(self, total: int, chunk: int = 100_000) -> None:
        """Grow the table to ``total`` rows through the API (as generate_data does), then vacuum it."""
        before = self.written
        bar = ProgressBar(f"fill {total / 1e6:g}M", total - before, self.stderr)
        while self.written < total:
            rows = self._rows(min(chunk, total - self.written))
            record_metrics(rows)
            bar.advance(len(rows))
        self._report(
            f"fill {before / 1e6:g}M -> {total / 1e6:g}M rows via API (incl. generation), rows/s",
            f"{(total - before) / bar.elapsed:,.0f}",
            f"{bar.elapsed:,.0f} s",
            "",
        )
        # Vacuum now, as autovacuum would soon: otherwise it starts in the
        # middle of the next measurement and competes with it.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) analytics_metric, analytics_metricrollup")

    def _truncate(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE analytics_metric, analytics_metricrollup")

    # --- timing ---------------------------------------------------------------

    @staticmethod
    def _median(run: Callable[[], None], repeats: int) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def _ingest_rates(self, methods: tuple[str, ...], batch: int, repeats: int, *, empty: bool) -> dict[str, float]:
        """Median rows/s of committing one batch per method ("api", "copy", "bulk_create").

        The methods take turns within each repeat, so a burst of load on this
        shared machine hits them all alike.
        """
        times: dict[str, list[float]] = {method: [] for method in methods}
        for _ in range(repeats):
            for method in methods:
                if empty:
                    self._truncate()
                rows = self._prepared(method, self._rows(batch))
                started = time.perf_counter()
                self._ingest(method, rows)
                times[method].append(time.perf_counter() - started)
        return {method: batch / statistics.median(spent) for method, spent in times.items()}

    @staticmethod
    def _prepared(method: str, rows: list[dict]) -> list:
        """The batch as each path takes it; building it is not timed."""
        if method == "copy":
            now = datetime.now(UTC)
            columns = list(METRICS.fields)
            return [(uuid7(), now, now, *(row[c] for c in columns)) for row in rows]
        if method == "bulk_create":
            return [Metric(organization_id=row.pop("organization"), **row) for row in rows]
        return rows

    def _ingest(self, method: str, rows: list) -> None:
        if method == "api":
            with transaction.atomic():
                record_metrics(rows)
        elif method == "bulk_create":
            Metric.objects.bulk_create(rows, batch_size=5_000)
        else:
            self._raw_copy(rows)

    def _raw_copy(self, rows: list[tuple]) -> None:
        """The baseline: binary COPY of ready-made tuples, no validation, no rollups; then commit."""
        with self.raw.cursor() as cursor, cursor.copy(METRICS.copy_sql) as copy:
            copy.set_types(METRICS.pg_types)
            for row in rows:
                copy.write_row(row)
        self.raw.commit()

    def _series_time(self, *, start: datetime, end: datetime, bucket: timedelta, source: str, repeats: int) -> float:
        def run() -> None:
            metric_series(
                organization=self.organizations[0],
                name=SERIES_NAME,
                start=start,
                end=end,
                bucket=bucket,
                source=source,
                cached=False,
            )

        run()  # warm up: compare steady states, not the first read from disk
        return self._median(run, repeats)

    def _report(self, label: str, project: str, baseline: str, ratio: str) -> None:
        self.stdout.write(f"{label:<52} {project:>16} {baseline:>16} {ratio:>14}")

    # --- the benchmark ----------------------------------------------------------

    def _run(self, *, small: int, large: int, batch: int, repeats: int) -> None:
        self.stdout.write(
            f"bench_analytics: small={small:,} large={large:,} batch={batch:,} repeats={repeats} "
            f"({ORGANIZATIONS} organizations x {len(SERIES)} series, one sample per {STEP.total_seconds():g}s)"
        )
        self.stdout.write(f"{'':<52} {'project':>16} {'baseline':>16} {'ratio (goal)':>14}")

        rates = self._ingest_rates(("api", "copy", "bulk_create"), batch, repeats, empty=True)
        self._report(
            "ingest into empty table, rows/s: API vs raw COPY",
            f"{rates['api']:,.0f}",
            f"{rates['copy']:,.0f}",
            f"{rates['api'] / rates['copy']:.2f}x (>=0.5)",
        )
        self._report(
            "ingest into empty table, rows/s: bulk_create vs raw COPY",
            f"{rates['bulk_create']:,.0f}",
            f"{rates['copy']:,.0f}",
            f"{rates['bulk_create'] / rates['copy']:.2f}x",
        )
        self._truncate()
        self.written = 0

        day = (ORIGIN + timedelta(days=1), ORIGIN + timedelta(days=2))
        if small * STEP < timedelta(days=2):
            raise CommandError(
                f"--small must cover two days of samples: at least {2 * 86400 / STEP.total_seconds():,.0f}"
            )
        self._fill(small)
        window_small = self._series_time(
            start=day[0], end=day[1], bucket=timedelta(minutes=5), source="raw", repeats=repeats
        )
        self._fill(large)
        window_large = self._series_time(
            start=day[0], end=day[1], bucket=timedelta(minutes=5), source="raw", repeats=repeats
        )
        self._report(
            f"1-day window (raw rows), ms: {large / 1e6:g}M vs {small / 1e6:g}M rows",
            f"{window_large * 1000:.1f}",
            f"{window_small * 1000:.1f}",
            f"{window_large / window_small:.2f}x (<=1.5)",
        )

        at_large = self._ingest_rates(("api", "copy"), batch, repeats, empty=False)
        api_large, copy_large = at_large["api"], at_large["copy"]
        self._report(
            f"ingest via API, rows/s: into {large / 1e6:g}M rows vs empty",
            f"{api_large:,.0f}",
            f"{rates['api']:,.0f}",
            f"{api_large / rates['api']:.2f}x (>=0.8)",
        )
        self._report(
            f"ingest via raw COPY, rows/s: into {large / 1e6:g}M rows vs empty",
            f"{copy_large:,.0f}",
            f"{rates['copy']:,.0f}",
            f"{copy_large / rates['copy']:.2f}x",
        )

        end = ORIGIN + self.written * STEP
        end = end.replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(days=30)
        rollup = self._series_time(start=start, end=end, bucket=timedelta(hours=1), source="rollup", repeats=repeats)
        raw = self._series_time(
            start=start, end=end, bucket=timedelta(hours=1), source="raw", repeats=max(repeats // 2, 1)
        )
        self._report(
            "30-day hourly series, ms: rollups vs raw rows",
            f"{rollup * 1000:.2f}",
            f"{raw * 1000:.1f}",
            f"{raw / rollup:,.0f}x faster (>=100)",
        )
