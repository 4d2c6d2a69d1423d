"""``manage.py topology up``: the multi-server topology on this machine, until Ctrl-C.

Starts what companyos.foundation.topology describes (PostgreSQL primary,
synchronous standby and replica, PgBouncer, Redis with three sentinels and,
with ``--asgi``/``--worker``, the application's processes on it), prints the
settings that point CompanyOS at it, and stops everything on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from companyos.foundation.topology import running_topology


class Command(BaseCommand):
    help = "Start PostgreSQL (primary, standby, replica), PgBouncer and Redis Sentinel on free ports until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["up"], help="up: start everything, stop it all on Ctrl-C")
        parser.add_argument("--asgi", type=int, default=0, help="ASGI processes (uvicorn) to start on the topology")
        parser.add_argument("--worker", action="store_true", help="also start the background worker")
        parser.add_argument("--pgbouncer", action="store_true", help="the application goes through PgBouncer")

    def handle(self, *args, action: str, asgi: int, worker: bool, pgbouncer: bool, **options) -> None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        with running_topology(asgi=asgi, worker=worker) as topology:
            env = topology.environment(pgbouncer=pgbouncer)
            if asgi or worker:
                topology.start_application(env)
            for server in topology.postgres.values():
                self.stdout.write(f"PostgreSQL {server.name:<9} 127.0.0.1:{server.port}  data {server.data}")
            self.stdout.write(f"PgBouncer            127.0.0.1:{topology.pgbouncer_port} (transaction mode)")
            self.stdout.write(f"Redis                {', '.join(f'127.0.0.1:{p}' for p in topology.redis_ports)}")
            self.stdout.write(f"Sentinels            {env['REDIS_SENTINELS']}")
            for number, port in enumerate(topology.asgi_ports, start=1):
                self.stdout.write(f"ASGI {number}               http://127.0.0.1:{port}/")
            self.stdout.write("\nSettings for CompanyOS processes on this topology:")
            for name, value in env.items():
                self.stdout.write(f"  {name}={value}")
            self.stdout.write("\nCtrl-C stops everything.")
            stop.wait()
