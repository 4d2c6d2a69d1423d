"""Helpers for tests and benchmarks that start other processes, and talk to them as a browser would."""

from __future__ import annotations

import html.parser
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection

from companyos.foundation.console.roles import sync_roles
from dev import free_port, stop_process, uvicorn_command

# Has the server end the connections of one application (``application_name``) that wait on a lock,
# as a failover would end them mid-statement; counts them.
CUT_WAITING_ON_A_LOCK_SQL = """
    SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
     WHERE application_name = %s AND wait_event_type = 'Lock'
"""


def current_database_url() -> str:
    """The URL of the database this process uses (the test database under pytest).

    Child processes (servers, workers, commands) get it as DATABASE_URL so they
    see the rows the test committed.
    """
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a child process on this run's test database and Redis prefix, with ``overrides``."""
    return {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
        **overrides,
    }


@contextmanager
def uvicorn_server(
    app: str = "companyos.config.asgi:application", *, env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free loopback port; yields the port.

    It starts as the project starts it (``dev.uvicorn_command``: the websocket
    heartbeat), ``args`` added. The server runs in a process group of its own, so that ``--workers``
    children stop with it; its output is shown if it fails to start.
    """
    port = free_port()
    command = uvicorn_command("--host", "127.0.0.1", "--port", str(port), *args, app=app)
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            cwd=settings.BASE_DIR,
            env=os.environ if env is None else env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        log = output.read().decode(errors="replace")[-4000:]
                        raise RuntimeError(f"uvicorn did not start:\n{log}") from None
                    time.sleep(0.1)
            yield port
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def manage_py(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``manage.py <args>`` on this process's database and Redis prefix (the test run's) for the block.

    Its output goes to a temporary file, read with ``process.output()``. At
    the end it gets SIGTERM (SIGKILL after 30 s) unless it already exited.
    """
    process_env = child_env(**(env or {}))
    with tempfile.TemporaryDirectory() as directory:
        log_path = os.path.join(directory, "output.log")
        with open(log_path, "ab") as log:  # appending: reading it meanwhile moves no write offset
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "manage.py", *args],
                cwd=settings.BASE_DIR,
                env=process_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def read_output() -> str:
            with open(log_path, "rb") as log:
                return log.read().decode(errors="replace")

        process.output = read_output
        try:
            yield process
        finally:
            stop_process(process)


def give_role(user, role: str):
    """Put ``user`` in the console role ``role``; returns the user.

    The roles migration created the groups; a transactional test elsewhere
    may have flushed them since, and sync_roles puts them back.
    """
    if not Group.objects.filter(name=role).exists():
        sync_roles()
    user.groups.add(Group.objects.get(name=role))
    return user


class FormFields(html.parser.HTMLParser):
    """The name/value pairs a browser would submit for the page's forms, without a button's."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None

    @classmethod
    def of(cls, page: str) -> FormFields:
        parser = cls()
        parser.feed(page)
        return parser

    def data(self) -> dict[str, str | list[str]]:
        """The fields as the Django test client takes them: a list where a name repeats."""
        data: dict[str, str | list[str]] = {}
        for name, value in self.fields:
            if name not in data:
                data[name] = value
            elif isinstance(data[name], list):
                data[name].append(value)
            else:
                data[name] = [data[name], value]
        return data

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "reset", "image", "file"):
            if attrs.get("type") in ("checkbox", "radio"):
                if "checked" in attrs:
                    # Django renders a BooleanField's checkbox without a value: browsers send "on".
                    self.fields.append((name, attrs.get("value") or "on"))
                return
            self.fields.append((name, attrs.get("value") or ""))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.fields.append((self._select, attrs.get("value") or ""))
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields.append((name, ""))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            name, value = self.fields[-1]
            self.fields[-1] = (name, value + data)


class Browser:
    """HTTP to one local server process with the cookies a browser would keep; redirects are not followed."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None) -> None:
        self.port = port
        self.cookies = dict(cookies or {})

    def request(
        self, method: str, path: str, data: list[tuple[str, str]] | dict | None = None, headers: dict | None = None
    ) -> tuple[int, str]:
        """``data`` goes form-encoded, with the Referer Django's CSRF check wants of a form post."""
        headers = {"Host": "localhost", **(headers or {})}
        body = None
        if data is not None:
            body = urlencode(data).encode()
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"http://localhost{path}",
                **headers,
            }
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode(errors="replace")
            for header, value in response.getheaders():
                if header.lower() == "set-cookie":
                    name, _, rest = value.partition("=")
                    value = rest.partition(";")[0]
                    if value and value != '""':
                        self.cookies[name] = value
                    else:  # how Django deletes a cookie
                        self.cookies.pop(name, None)
            return response.status, text
        finally:
            conn.close()

    def submit(self, path: str, **changes: str) -> tuple[int, str]:
        """Post the form on ``path`` as it is but for ``changes``, as its default (Save) button would."""
        status, page = self.request("GET", path)
        assert status == 200, (path, status, page[:500])
        fields = FormFields.of(page).fields
        known = {name for name, _ in fields}
        fields = [(name, changes.get(name, value)) for name, value in fields]
        fields += [(name, value) for name, value in changes.items() if name not in known]
        return self.request("POST", path, fields)
