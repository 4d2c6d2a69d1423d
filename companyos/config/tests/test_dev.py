"""dev.py, the run and test commands: per-run names, and the embedded servers'
lifecycle (CI uses the machine's services, so this is where the embedded path
is exercised): start, reuse by a second holder, stop with the last, keep data.
"""

import json
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import redis

import dev
from companyos.config.tests.test_settings import url_of_test_database


@pytest.fixture
def data_dir(monkeypatch):
    """A .data/ of the test's own. Not under pytest's tmp_path: every pytest session
    resets /tmp/pytest-of-<user> to 0700, which would lock out PostgreSQL's user."""
    with tempfile.TemporaryDirectory(prefix="companyos-dev-") as directory:
        monkeypatch.setattr(dev, "DATA", Path(directory) / ".data")
        yield Path(directory) / ".data"


def server_pid(data_dir, name: str) -> int:
    return json.loads((data_dir / f"{name}.json").read_text())["pid"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db:5432/companyos", "postgres://u:p@db:5432/companyos_run1"),
        ("postgres://db/app?sslmode=require", "postgres://db/app_run1?sslmode=require"),
        ("postgres://db/" + "x" * 60, "postgres://db/" + "x" * 40 + "_run1"),
    ],
)
def test_each_test_run_gets_a_database_name_of_its_own(url, expected):
    assert dev.with_database_suffix(url, "run1") == expected


def test_configured_prefers_the_environment_over_dotenv(tmp_path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# REDIS_URL=redis://commented-out\nDATABASE_URL='postgres://from-dotenv/db'\n")
    monkeypatch.setattr(dev, "DOTENV", dotenv)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)

    assert dev.configured("REDIS_URL") is None
    assert dev.configured("DATABASE_URL") == "postgres://from-dotenv/db"
    monkeypatch.setenv("DATABASE_URL", "postgres://from-env/db")
    assert dev.configured("DATABASE_URL") == "postgres://from-env/db"


def test_dotenv_is_written_once_with_fresh_secrets(tmp_path, monkeypatch):
    monkeypatch.setattr(dev, "DOTENV", tmp_path / ".env")

    dev.ensure_dotenv()
    first = (tmp_path / ".env").read_text()
    dev.ensure_dotenv()

    assert (tmp_path / ".env").read_text() == first
    assert "DEBUG=True" in first and "\nDATABASE_URL" not in first
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600


def test_embedded_redis_is_shared_stopped_by_its_last_holder_and_keeps_its_data(data_dir):
    with dev.EmbeddedRedis().running() as url:
        redis.Redis.from_url(url).set("dev-test", "kept")
        with dev.EmbeddedRedis().running() as second:
            assert second == url
        pid = server_pid(data_dir, "redis")
        assert redis.Redis.from_url(url).ping()  # the second holder left; the first still has it

    assert not dev.process_alive(pid)
    with dev.EmbeddedRedis().running() as url:
        assert redis.Redis.from_url(url).get("dev-test") == b"kept"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url.replace(url.split("@")[0], "redis://")).get("dev-test")


@pytest.mark.slow
def test_embedded_postgres_starts_stops_and_keeps_its_data(data_dir):
    with dev.EmbeddedPostgres().running() as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('row')")
        # The machine's newest PostgreSQL, with the extension the search indexes' migrations create.
        assert conn.execute("SHOW server_version").fetchone()[0].startswith(f"{dev.postgres_bin_dir().parent.name}.")
        assert conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").fetchone() == (1,)
    pid = server_pid(data_dir, "postgres")

    assert not dev.process_alive(pid)
    with dev.EmbeddedPostgres().running() as url:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT value FROM kept").fetchall() == [("row",)]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(url.replace(url.split("@")[0], "postgres://postgres:wrong"))


@pytest.mark.django_db
def test_a_runs_leftover_test_databases_are_dropped_despite_open_connections():
    server = url_of_test_database().rsplit("/", 1)[0]
    base = f"devcheck_{secrets.token_hex(4)}"
    ours, worker, other = f"test_{base}", f"test_{base}_gw0", f"test_{base}x"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        for name in (ours, worker, other):
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            with psycopg.connect(f"{server}/{ours}"):  # a lingering session, as a leaked child would hold
                dev.drop_test_databases(f"{server}/{base}")
            query = "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1"
            assert admin.execute(query, [f"test_{base}%"]).fetchall() == [(other,)]
        finally:
            for name in (ours, worker, other):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_ctrl_c_while_run_together_starts_its_children_leaves_none_of_them_running(tmp_path):
    """The signal may come while a child is being started (forked, its Popen not yet returned): it
    must still be stopped with the others, not run on, orphaned, on a database being shut down."""
    child = [sys.executable, "-c", "import os, sys, time; open(sys.argv[1] + f'/{os.getpid()}', 'w'); time.sleep(60)"]
    commands = {f"child-{index}": [*child, str(tmp_path)] for index in range(20)}
    script = f"import sys, dev; print('starting', flush=True); sys.exit(dev.run_together({commands!r}))"
    with subprocess.Popen([sys.executable, "-c", script], cwd=dev.ROOT, stdout=subprocess.PIPE, text=True) as runner:
        assert runner.stdout.readline() == "starting\n"
        time.sleep(0.01)  # into the starts

        runner.send_signal(signal.SIGINT)

        runner.wait(timeout=60)
    time.sleep(1)  # a child left behind has written its pid by now
    started = [int(path.name) for path in tmp_path.iterdir()]
    assert not [pid for pid in started if dev.process_alive(pid)], f"left running, of {len(started)} started"


def test_a_port_is_handed_out_once_per_process_even_when_the_system_offers_it_again(monkeypatch):
    """A Redis client keeps a breaker and a pool per address: a test server given a port an
    earlier test's server had would inherit that server's state (an outage, a cooldown)."""
    offered = iter([47001, 47001, 47002])

    class OfferingSocket:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return False

        def bind(self, address):
            self.port = next(offered)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(dev, "_ports_handed_out", set())
    monkeypatch.setattr(dev.socket, "socket", OfferingSocket)

    assert [dev.free_port(), dev.free_port()] == [47001, 47002]
