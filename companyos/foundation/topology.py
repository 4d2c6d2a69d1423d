"""The multi-server topology on one machine, for the failover tests and for people trying it.

    python3 dev.py manage topology up      # prints the settings to use, Ctrl-C stops everything
    python3 dev.py manage topology up --asgi 2 --worker

Started from the binaries the machine's packages provide (PostgreSQL 15 from
/usr/lib/postgresql/15/bin, Debian's pgbouncer, redis-server), each on a free
loopback port, with its data and log under one temporary directory:

* PostgreSQL: a primary, a synchronous standby (``standby1``) and an
  asynchronous replica (``replica1``) streaming from it. The primary waits for
  ``FIRST 1 (standby1, replica1)``: a commit is acknowledged once the standby
  has it, so promoting the standby after the primary dies loses nothing
  acknowledged, and the replica is next in line. Both standbys follow
  whichever host is the primary (a multi-host ``primary_conninfo``).
* PgBouncer in transaction mode in front of the primary.
* Redis: a master, two replicas and three sentinels (quorum 2) watching it
  as ``companyos``.
* Optionally ASGI processes (uvicorn) and a worker, on the topology's settings.

:meth:`Topology.stop` stops all of it; nothing is left running.
"""

# Starting fixed server programs is this module's job.
# ruff: noqa: S603
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from dev import free_port, port_open, process_alive, uvicorn_command

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
PGBOUNCER = "/usr/sbin/pgbouncer"
SENTINEL_MASTER = "companyos"
DATABASE = "companyos"
# PostgreSQL and PgBouncer refuse to run as root; they run as this account then.
SERVER_ACCOUNT = "postgres"
# A sentinel calls the master down after this long without an answer.
SENTINEL_DOWN_AFTER_MS = 1000


def wait_for(ready, what: str, timeout: float = 60.0):
    """Call ``ready`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while not (value := ready()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready within {timeout:g} s")
        time.sleep(0.05)
    return value


@dataclass
class Postgres:
    """One PostgreSQL server of the topology."""

    name: str
    data: Path
    port: int

    def url(self, database: str = DATABASE) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = DATABASE) -> psycopg.Connection:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=2)

    def pid(self) -> int | None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None


@dataclass
class Topology:
    """Every server of the topology; :meth:`start` them, :meth:`stop` them all."""

    root: Path
    asgi: int = 0
    worker: bool = False
    postgres: dict[str, Postgres] = field(default_factory=dict)
    pgbouncer_port: int = 0
    redis_ports: list[int] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    asgi_ports: list[int] = field(default_factory=list)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    # --- settings for the application's processes ------------------------------

    def primary_url(self) -> str:
        """Every PostgreSQL host, of which libpq picks the one that accepts writes."""
        hosts = ",".join(f"127.0.0.1:{server.port}" for server in self.postgres.values())
        return f"postgres://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write"

    def environment(self, *, pgbouncer: bool = False, replicas: tuple[str, ...] = ("replica1",)) -> dict[str, str]:
        """The variables that point CompanyOS at this topology."""
        env = {
            "DATABASE_URL": self.primary_url(),
            "DATABASE_REPLICA_URLS": ",".join(self.postgres[name].url() for name in replicas),
            "REDIS_URL": "redis://127.0.0.1/0",
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports),
            "REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
        }
        if pgbouncer:
            env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{self.pgbouncer_port}/{DATABASE}"
            env["DATABASE_DIRECT_URL"] = self.primary_url()
        return env

    # --- starting ----------------------------------------------------------------

    def start(self) -> None:
        """Start the servers (the application's processes are :meth:`start_application`'s)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_ACCOUNT)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.start_postgres()
        self.start_pgbouncer()
        self.start_redis()

    def _as_server_account(self) -> dict:
        if os.geteuid() != 0:
            return {}
        account = pwd.getpwnam(SERVER_ACCOUNT)
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _run(self, *command: str) -> None:
        subprocess.run(
            command, check=True, stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True,
            cwd=self.root, **self._as_server_account(),
        )  # fmt: skip

    def pg_ctl(self, server: Postgres, *args: str) -> None:
        self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(server.data), "-s", *args)

    def start_postgres(self) -> None:
        primary = Postgres("primary", self.root / "primary", free_port())
        self._run(
            str(POSTGRES_BIN / "initdb"), "-D", str(primary.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-instructions", "--no-sync",
        )  # fmt: skip
        with open(primary.data / "postgresql.conf", "a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "wal_level = replica\n"
                "max_wal_senders = 10\n"
                "hot_standby = on\n"
                # A commit returns once the first listed standby that is
                # connected has flushed it: standby1, else replica1.
                "synchronous_standby_names = 'FIRST 1 (standby1, replica1)'\n"
                "synchronous_commit = on\n"
                # Replicas report their position often, so the router sees it soon.
                "wal_receiver_status_interval = 1s\n"
                "hot_standby_feedback = on\n"
                # The servers' files are thrown away afterwards and the tests
                # kill processes, not machines: skipping fsync loses nothing here.
                "fsync = off\n"
                # Each statement in the server's log: the tests read which server ran a query.
                "log_statement = 'all'\n"
                "log_line_prefix = '%m [%p] %a '\n"
                "logging_collector = off\n"
            )
        with open(primary.data / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        self._start_server(primary)
        self.postgres["primary"] = primary
        for name in ("standby1", "replica1"):
            standby = Postgres(name, self.root / name, free_port())
            self._run(
                str(POSTGRES_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                "-D", str(standby.data), "-X", "stream", "-R", "--checkpoint=fast", "--no-sync",
            )  # fmt: skip
            self.postgres[name] = standby
        hosts = ",".join("127.0.0.1" for _ in self.postgres)
        ports = ",".join(str(server.port) for server in self.postgres.values())
        for name in ("standby1", "replica1"):
            standby = self.postgres[name]
            with open(standby.data / "postgresql.auto.conf", "a") as conf:
                # Whichever host accepts writes is the one to follow, also after a promotion.
                conf.write(
                    f"primary_conninfo = 'user=postgres host={hosts} port={ports} "
                    f"target_session_attrs=read-write application_name={name}'\n"
                    # A promoted standby's commits wait for the replica to reconnect as its
                    # synchronous standby; by default it retries only every 5 s.
                    "wal_retrieve_retry_interval = 1s\n"
                )
            self._start_server(standby)
        with primary.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
            # Wait until both stream, the standby synchronously.
            wait_for(
                lambda: (
                    conn.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0]
                    == 2
                ),
                "streaming replication",
            )

    def _start_server(self, server: Postgres) -> None:
        self.pg_ctl(server, "-l", str(server.data / "server.log"), "-o", f"-p {server.port}", "-w", "-t", "60", "start")

    def start_pgbouncer(self) -> None:
        self.pgbouncer_port = free_port()
        directory = self.root / "pgbouncer"
        directory.mkdir()
        primary = self.postgres["primary"]
        (directory / "userlist.txt").write_text('"postgres" ""\n')
        (directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={primary.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.pgbouncer_port}\nunix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {directory / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 500\ndefault_pool_size = 20\n"
            # Its console (database "pgbouncer") answers SHOW STATS to the tests.
            "stats_users = postgres\n"
            # Django sets these on every new connection; PgBouncer must let them through.
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
        )
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_ACCOUNT)
            for path in (directory, *directory.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(PGBOUNCER, "-d", str(directory / "pgbouncer.ini"))
        wait_for(lambda: port_open(self.pgbouncer_port), "pgbouncer")

    def start_redis(self) -> None:
        directory = self.root / "redis"
        directory.mkdir()
        self.redis_ports = [free_port() for _ in range(3)]
        master = self.redis_ports[0]
        for port in self.redis_ports:
            replica_of = [] if port == master else ["--replicaof", "127.0.0.1", str(master)]
            self._spawn(
                f"redis-{port}",
                ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                 "--dir", str(directory), "--dbfilename", f"{port}.rdb",
                 # Replicas get their first copy at once, not after the default 5 s wait for more of them.
                 "--repl-diskless-sync-delay", "0", *replica_of],
                log=directory / f"{port}.log",
            )  # fmt: skip
        self.sentinel_ports = [free_port() for _ in range(3)]
        for port in self.sentinel_ports:
            conf = directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"bind 127.0.0.1\nport {port}\ndir {directory}\n"
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} {SENTINEL_DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
                f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
            )
            self._spawn(
                f"sentinel-{port}", ["redis-server", str(conf), "--sentinel"], log=directory / f"{conf.stem}.log"
            )
        for port in self.redis_ports + self.sentinel_ports:
            wait_for(lambda port=port: port_open(port), f"redis on {port}")
        wait_for(self._redis_replicas_synced, "redis replication")

    def _redis_replicas_synced(self) -> bool:
        import redis

        # Connected is not enough: a replica still waiting for its first copy
        # holds nothing, and promoting it would lose every key.
        with redis.Redis(port=self.redis_ports[0], socket_timeout=1) as client:
            replication = client.info("replication")
            return [replication.get(f"slave{n}", {}).get("state") for n in range(2)] == ["online", "online"]

    def _spawn(self, name: str, command: list[str], *, log: Path, env: dict[str, str] | None = None) -> None:
        with open(log, "ab") as output:
            self.processes[name] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True, env=env, cwd=ROOT,
            )  # fmt: skip

    def start_application(self, app_env: dict[str, str]) -> None:
        """Migrate the topology's database, then start the ASGI processes and the worker."""
        env = {**os.environ, **app_env}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], check=True, env=env, cwd=ROOT)
        for number in range(self.asgi):
            port = free_port()
            self._spawn(
                f"asgi-{number + 1}",
                uvicorn_command("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"),
                log=self.root / f"asgi-{number + 1}.log",
                env=env,
            )
            self.asgi_ports.append(port)
        for port in self.asgi_ports:
            wait_for(lambda port=port: port_open(port), f"uvicorn on {port}")
        if self.worker:
            self._spawn("worker", [sys.executable, "manage.py", "run_worker"], log=self.root / "worker.log", env=env)

    # --- failures ----------------------------------------------------------------

    def kill_postgres(self, name: str) -> None:
        """``kill -9`` of a PostgreSQL server's postmaster (its backends exit on their own)."""
        os.kill(self.postgres[name].pid(), signal.SIGKILL)

    def promote(self, name: str) -> None:
        self.pg_ctl(self.postgres[name], "-w", "-t", "60", "promote")

    def redis_master_port(self) -> int:
        import redis

        with redis.Redis(port=self.sentinel_ports[0], socket_timeout=1) as sentinel:
            return int(sentinel.execute_command("SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER)[1])

    def kill_redis_master(self) -> int:
        """``kill -9`` of the current Redis master; returns its port."""
        port = self.redis_master_port()
        self.processes[f"redis-{port}"].send_signal(signal.SIGKILL)
        return port

    # --- stopping ----------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process and server this topology started, then remove its files."""
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL if name.startswith("redis") else signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        pidfile = self.root / "pgbouncer" / "pgbouncer.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        for server in self.postgres.values():
            pid = server.pid()
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the data is thrown away anyway
        for server in self.postgres.values():
            with contextlib.suppress(TypeError):
                wait_for(lambda server=server: not process_alive(server.pid()), f"{server.name} to stop", timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_topology(*, asgi: int = 0, worker: bool = False) -> Iterator[Topology]:
    """A started topology for the block (servers only), stopped afterwards whatever happens."""
    topology = Topology(Path(tempfile.mkdtemp(prefix="companyos-topology-")), asgi=asgi, worker=worker)
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()
