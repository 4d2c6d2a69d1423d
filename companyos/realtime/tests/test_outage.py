"""Redis outages: pages keep working, one warning per interval, locks fail closed, recovery without restart.

The end-to-end test starts its own ``redis-server`` on a free port and a real
ASGI server (uvicorn) pointed at it, then stops and restarts that Redis.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from companyos.foundation.cache import get_layer
from companyos.foundation.locks import LockUnavailable, distributed_lock
from companyos.foundation.tests.support import Browser
from companyos.foundation.tests.test_health import caches_at
from core.models import Organization, User
from dev import free_port

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs the redis-server binary")


class RedisServer:
    """A throw-away redis-server on its own port and directory; stop() keeps the port for a restart."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self, *, save: bool = False) -> None:
        """Stop the server; with ``save`` it writes its data so the restart has it back."""
        if self.process is None:
            return
        client = redis.Redis.from_url(self.url)
        if save:
            client.save()
        client.close()
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dead_redis():
    """Every cache layer pointed at a port nothing listens on; a short breaker."""
    with override_settings(CACHES=caches_at(f"redis://127.0.0.1:{free_port()}/0"), REDIS_BREAKER_SECONDS=5):
        yield


def test_layers_miss_and_skip_quickly_with_one_warning(dead_redis, caplog):
    layer = get_layer("analytics")
    computed = []
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="companyos.redis"):
        for i in range(200):
            layer.set(f"k{i}", i)
            assert layer.get(f"k{i}", "miss") == "miss"
            assert layer.family("org:1").get_or_set("summary", lambda: computed.append(1) or "fresh") == "fresh"
            layer.family("org:1").invalidate()
            layer.delete(f"k{i}")
    # Without the breaker each of the 1,400 calls would try to connect.
    assert time.monotonic() - started < 2
    assert len(computed) == 200
    warnings = [r for r in caplog.records if r.name == "companyos.redis"]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()


def test_a_long_outage_logs_once_per_interval(caplog):
    dead = caches_at(f"redis://127.0.0.1:{free_port()}/0")
    with (
        override_settings(CACHES=dead, REDIS_BREAKER_SECONDS=0.05, REDIS_OUTAGE_LOG_SECONDS=0.3),
        caplog.at_level(logging.WARNING, logger="companyos.redis"),
    ):
        layer = get_layer("api")
        started = time.monotonic()
        calls = 0
        while time.monotonic() - started < 1.0:
            layer.get("k")
            calls += 1
            time.sleep(0.001)
    messages = [r.getMessage() for r in caplog.records if r.name == "companyos.redis"]
    assert calls > 100
    assert sum("is unreachable" in m for m in messages) == 1
    # One "still unreachable" per 0.3 s interval after the first: 2 or 3 in 1 s, not one per call.
    assert 2 <= sum("still unreachable" in m for m in messages) <= 4
    assert len(messages) <= 5


def test_locks_fail_closed_with_a_clear_error(dead_redis):
    with pytest.raises(LockUnavailable, match="cannot acquire lock 'x': Redis is unavailable"):  # noqa: SIM117
        with distributed_lock("x", timeout=5, blocking_timeout=1):
            pytest.fail("ran without the lock")


def test_writes_skipped_during_an_outage_are_invalidated_on_recovery(redis_server, caplog):
    with override_settings(CACHES=caches_at(redis_server.url), REDIS_BREAKER_SECONDS=0.2):
        layer = get_layer("default")
        family = layer.family("org:1")
        layer.set("profile", "old")
        family.set("summary", "old summary")
        redis_server.stop(save=True)

        # Both writes are skipped: without the replay the restarted server
        # (which reloads its saved data) would serve "old" again.
        layer.set("profile", "new")
        family.invalidate()
        redis_server.start()
        assert redis_server.client().exists(layer.redis_key("profile"))
        time.sleep(0.3)

        with caplog.at_level(logging.INFO, logger="companyos.redis"):
            assert layer.get("profile") is None
        assert family.get("summary") is None
        assert any("reachable again" in r.getMessage() for r in caplog.records)
        layer.set("profile", "new")
        assert layer.get("profile") == "new"


def start_django(redis_url: str, log_path: Path) -> tuple[subprocess.Popen, int]:
    """uvicorn serving companyos.config.asgi on a free port, on this test's database and the given Redis."""
    port = free_port()
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis_url,
        "REDIS_BREAKER_SECONDS": "0.5",
        "DEBUG": "True",
        "LOG_LEVEL": "INFO",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "companyos.config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base_url + "/admin/login/", timeout=2).close()  # noqa: S310 - local URL
            return process, port
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start:\n{log_path.read_text()}") from None
            time.sleep(0.2)


def timed(browser: Browser, path: str) -> tuple[int, str]:
    started = time.monotonic()
    result = browser.request("GET", path)
    assert time.monotonic() - started < 2, f"{path} took too long during the outage"
    return result


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_site_survives_a_redis_outage_and_recovers_without_restart(redis_server, tmp_path):
    email, password = f"admin-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery staple"
    User.objects.create_superuser(email=email, password=password, name="Outage Admin")
    log_path = tmp_path / "django.log"
    django_process, port = start_django(redis_server.url, log_path)
    prefix = settings.REDIS_KEY_PREFIX
    try:
        browser = Browser(port)
        status, _ = browser.submit("/admin/login/?next=/admin/", username=email, password=password)
        assert status == 302, "login failed"
        session_key = browser.cookies.get(settings.SESSION_COOKIE_NAME)
        assert redis_server.client().exists(f"{prefix}:sessions:1:django.contrib.sessions.cached_db{session_key}")
        assert browser.request("GET", "/healthz")[0] == 200

        redis_server.stop()

        newcomer = Browser(port)
        assert timed(newcomer, "/admin/login/")[0] == 200
        status, _ = newcomer.submit("/admin/login/?next=/admin/", username=email, password=password)
        assert status == 302, "logging in failed during the outage"
        assert timed(newcomer, "/admin/")[0] == 200
        status, page = timed(browser, "/admin/core/organization/")
        assert status == 200, "the admin logged the user out or failed during the outage"
        assert "Log out" in page or "logout" in page
        status, body = timed(browser, "/healthz")
        assert status == 503
        assert json.loads(body)["checks"]["cache"]["status"] == "fail"
        assert json.loads(body)["checks"]["database"]["status"] == "ok"

        slug = f"outage-{uuid.uuid4().hex[:8]}"
        status, page = browser.submit("/admin/core/organization/add/", name="Outage Co", slug=slug)
        assert status == 302, f"saving through the admin failed during the outage: {page[:2000]}"
        assert Organization.objects.filter(slug=slug).exists()
        for _ in range(10):
            timed(browser, "/admin/core/organization/")

        redis_server.start()
        deadline = time.monotonic() + 10
        while browser.request("GET", "/healthz")[0] != 200:
            assert time.monotonic() < deadline, "healthz did not recover"
            time.sleep(0.2)
        # The cache is written again by the same Django process once its
        # breaker has probed the server (REDIS_BREAKER_SECONDS).
        deadline = time.monotonic() + 5
        while not redis_server.client().exists(f"{prefix}:api:1:healthz"):
            assert time.monotonic() < deadline, "the api layer was not written after the recovery"
            assert browser.request("GET", "/healthz")[0] == 200
            time.sleep(0.1)
        assert browser.request("GET", "/admin/core/organization/")[0] == 200, log_path.read_text()[-5000:]
        assert redis_server.client().exists(f"{prefix}:sessions:1:django.contrib.sessions.cached_db{session_key}")
        assert django_process.poll() is None
    finally:
        django_process.terminate()
        django_process.wait(timeout=10)
    log = log_path.read_text()
    assert log.count("is unreachable") == 1, log
    assert "still unreachable" not in log
    assert log.count("is reachable again") == 1, log
