"""``manage.py bench_replica_reads``: admin reads served with one read replica vs the primary alone.

Starts the topology (companyos.foundation.topology: a PostgreSQL primary,
its synchronous standby and an asynchronous replica, Redis with sentinels),
migrates it, fills ``analytics_event`` with ``--events`` rows over three
organizations and logs in a superuser. Then, ``--runs`` times and in turns,
a uvicorn server (``--workers`` processes) on the topology's settings, once
with ``DATABASE_REPLICA_URLS`` empty (the primary alone) and once with the
replica, gets ``--concurrency`` keep-alive clients requesting the Event
changelist and then the analytics dashboard for ``--seconds`` each:
requests/s, medians of the runs, and their ratio.

Where the reads went: each server is stopped after its turn (its database
sessions report their statistics as they end), and ``pg_stat_database`` of
the primary and of the replica are read before and after; the transactions
and rows returned that each side served are summed per configuration.

    python3 dev.py manage bench_replica_reads --events 200000 --runs 3
"""

# Starting the topology's migrate and setup commands is this benchmark's job.
# ruff: noqa: S603
from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from companyos.foundation.tests.support import uvicorn_server
from companyos.foundation.topology import running_topology

PAGES = {"changelist": "/admin/analytics/event/", "dashboard": "/admin/analytics/dashboard/"}
CONFIGURATIONS = ("primary alone", "one replica")
SERVERS = ("primary", "replica1")
COUNTERS = ("xact_commit", "tup_returned", "tup_fetched")

SETUP = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.cached_db import SessionStore
from analytics.management.commands.bench_admin_changelist import Command as ChangelistBench
from core.models import Organization, User

organizations = [Organization.objects.create(slug=f"bench-{{n}}", name=f"Bench {{n}}") for n in range(3)]
ChangelistBench()._fill(organizations, {events})
user = User.objects.create_superuser("bench@example.com", None, name="Bench")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(json.dumps({{"session": session.session_key}}))
"""


class Command(BaseCommand):
    help = "Requests/s of the Event changelist and the analytics dashboard with one read replica vs the primary alone."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--events", type=int, default=200_000, help="Rows in analytics_event.")
        parser.add_argument("--runs", type=int, default=3, help="Turns of each configuration (medians reported).")
        parser.add_argument("--seconds", type=float, default=8.0, help="Load on each page per turn.")
        parser.add_argument("--concurrency", type=int, default=8, help="Keep-alive clients requesting at once.")
        parser.add_argument("--workers", type=int, default=4, help="uvicorn --workers of the server.")

    def handle(self, *args, events, runs, seconds, concurrency, workers, **options) -> None:
        rates = {configuration: {page: [] for page in PAGES} for configuration in CONFIGURATIONS}
        served = {configuration: {server: dict.fromkeys(COUNTERS, 0) for server in SERVERS} for configuration in rates}
        with running_topology() as topology:
            # Every statement in the servers' logs is for the failover tests; here it would only cost both sides.
            for name in topology.postgres:
                with topology.postgres[name].connect("postgres") as conn:
                    conn.execute("ALTER SYSTEM SET log_statement = 'none'")
                    conn.execute("SELECT pg_reload_conf()")
            environments = self._environments(topology)
            session = self._setup(environments["one replica"], events)
            # Turn 0 of each configuration warms the servers' caches after the fill and is not counted.
            for run in range(runs + 1):
                for configuration, env in environments.items():
                    before = {server: self._counters(topology, server) for server in SERVERS}
                    with uvicorn_server(env=env, args=self._server_args(workers)) as port:
                        for page, path in PAGES.items():
                            self._load(port, session, path, 2.0, concurrency)  # warm pools, caches, templates
                            rate = self._load(port, session, path, seconds, concurrency)
                            self.stderr.write(f"run {run} {configuration:<14} {page:<11} {rate:8.1f} requests/s")
                            if run:
                                rates[configuration][page].append(rate)
                    if not run:
                        continue
                    # The server's database sessions have ended and reported what they did.
                    time.sleep(1)
                    for server in SERVERS:
                        after = self._counters(topology, server)
                        for counter in COUNTERS:
                            served[configuration][server][counter] += after[counter] - before[server][counter]
        self._report(rates, served, runs=runs, concurrency=concurrency, workers=workers, events=events)

    def _environments(self, topology) -> dict[str, dict[str, str]]:
        replicated = {
            **os.environ,
            **topology.environment(),
            # Plain HTTP, and static files without a collectstatic manifest.
            "DEBUG": "True",
        }
        return {"primary alone": {**replicated, "DATABASE_REPLICA_URLS": ""}, "one replica": replicated}

    def _setup(self, env: dict[str, str], events: int) -> str:
        """Migrate and fill the topology's database; the superuser's session key."""
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], check=True, env=env, cwd=settings.BASE_DIR)
        made = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SETUP.format(events=events)],
            check=True, env=env, cwd=settings.BASE_DIR, capture_output=True, text=True,
        )  # fmt: skip
        return json.loads(made.stdout.strip().splitlines()[-1])["session"]

    @staticmethod
    def _server_args(workers: int) -> list[str]:
        return ["--workers", str(workers), "--lifespan", "off", "--log-level", "warning", "--no-access-log"]

    @staticmethod
    def _counters(topology, server: str) -> dict[str, int]:
        with topology.postgres[server].connect() as conn:
            row = conn.execute(
                f"SELECT {', '.join(COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"  # noqa: S608 - fixed column names
            ).fetchone()
        return dict(zip(COUNTERS, row, strict=True))

    @staticmethod
    def _load(port: int, session: str, path: str, seconds: float, concurrency: int) -> float:
        """Requests/s of ``concurrency`` clients each requesting ``path`` again as soon as answered."""
        deadline = time.monotonic() + seconds
        headers = {"Cookie": f"sessionid={session}", "Host": "localhost"}

        def client(_) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            answered = 0
            try:
                while time.monotonic() < deadline:
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise CommandError(f"{path} answered {response.status}: {body[:300]!r}")
                    answered += 1
            finally:
                conn.close()
            return answered

        started = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            answered = sum(pool.map(client, range(concurrency)))
        return answered / (time.monotonic() - started)

    def _report(self, rates, served, *, runs: int, concurrency: int, workers: int, events: int) -> None:
        self.stdout.write(
            f"\n{events:,} events; {concurrency} clients, uvicorn --workers {workers}; medians of {runs} runs, "
            f"{os.cpu_count()} cores"
        )
        self.stdout.write(f"{'requests/s':<14}{'primary alone':>16}{'one replica':>14}{'ratio':>8}")
        for page in PAGES:
            alone = statistics.median(rates["primary alone"][page])
            replica = statistics.median(rates["one replica"][page])
            self.stdout.write(f"{page:<14}{alone:>16.1f}{replica:>14.1f}{replica / alone:>8.2f}")
        self.stdout.write(f"\nServed by each server, summed over the runs ({', '.join(COUNTERS)}):")
        for configuration, by_server in served.items():
            figures = "; ".join(
                f"{server} " + " / ".join(f"{value:,}" for value in counters.values())
                for server, counters in by_server.items()
            )
            self.stdout.write(f"{configuration:<14} {figures}")
