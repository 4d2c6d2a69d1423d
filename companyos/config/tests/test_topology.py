"""Past one machine, proven on a started topology (companyos.foundation.topology).

One topology for the module: PostgreSQL primary + synchronous standby +
replica, PgBouncer, Redis master + 2 replicas + 3 sentinels, and uvicorn
processes of CompanyOS on it. The tests talk to those processes over HTTP
and read the servers' own logs to see which one ran a query. The failovers
are the last tests: they leave the topology changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import http.client
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from django.conf import settings

from companyos.config.tests.programs import require_program
from companyos.foundation.tests.support import Browser, uvicorn_server
from companyos.foundation.topology import PGBOUNCER, POSTGRES_BIN, running_topology, wait_for
from companyos.realtime.tests.test_delivery_e2e import Client, TaskPoster, start_publisher
from integrations.tests.webhook_helpers import github_payload
from integrations.webhooks.signatures import github_signature

pytestmark = pytest.mark.slow
OPENED = github_payload("pull_request/opened.payload.json")

SETUP = """
import json
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.cached_db import SessionStore
from agents.tests.factories import AgentFactory
from companyos.foundation.console.roles import ADMIN
from companyos.foundation.tests.support import give_role
from core.services import api_token_create
from core.tests.factories import AdminUserFactory, OrganizationFactory, OrganizationMemberFactory, UserFactory
from integrations.models import Integration
from integrations.tests.factories import IntegrationFactory, WebhookFactory
from integrations.tests.webhook_helpers import endpoint

user = AdminUserFactory()
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
organization = OrganizationFactory()
# The websocket clients' organization, which the admin tests leave alone.
watched = OrganizationFactory()
member = UserFactory()
OrganizationMemberFactory(organization=watched, user=member)
_, token = api_token_create(user=member, name="topology")
# Staff who queue agent tasks through the API: writes and events of the web process.
staff = give_role(UserFactory(), ADMIN)
OrganizationMemberFactory(organization=watched, user=staff)
_, staff_token = api_token_create(user=staff, name="topology web writes")
webhook = WebhookFactory(integration=IntegrationFactory(service=Integration.Service.GITHUB), events=[])
print(json.dumps({"session": session.session_key, "organization": str(organization.pk),
                  "watched": str(watched.pk), "slug": watched.slug, "token": token, "staff_token": staff_token,
                  "agent": str(AgentFactory(organization=watched).pk),
                  "endpoint": endpoint(webhook), "secret": webhook.secret}))
"""


def server_log(topology, name: str) -> str:
    return (topology.postgres[name].data / "server.log").read_text(errors="replace")


def child_environment(topology, **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        **topology.environment(),
        "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
        # Plain HTTP and static files without a collectstatic manifest.
        "DEBUG": "True",
        # Each test reads the replica's state afresh.
        "DATABASE_REPLICA_CHECK_SECONDS": "0.2",
        "DATABASE_CONNECT_TIMEOUT": "2",
        **overrides,
    }


@pytest.fixture(scope="module")
def topology():
    require_program(PGBOUNCER, "pgbouncer")
    with running_topology() as topology:
        env = child_environment(topology)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], check=True, env=env, cwd=settings.BASE_DIR)
        made = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SETUP],
            check=True, env=env, cwd=settings.BASE_DIR, capture_output=True, text=True,
        )  # fmt: skip
        topology.data = json.loads(made.stdout.strip().splitlines()[-1])
        yield topology


@pytest.fixture(scope="module")
def web(topology):
    """A uvicorn process on the topology (multi-host primary URL, replica, Sentinel)."""
    with uvicorn_server(env=child_environment(topology), args=["--lifespan", "off"]) as port:
        yield port


def test_a_save_in_the_admin_is_in_its_changelist_even_while_the_replica_replays_nothing(topology, web):
    browser = Browser(web, {"sessionid": topology.data["session"]})
    organization = topology.data["organization"]
    # A letter first, so that the upper-cased search differs from this one.
    token = f"x{uuid.uuid4().hex[:8]}"
    name = f"Renamed {token}"
    with topology.postgres["replica1"].connect() as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            assert browser.submit(f"/admin/core/organization/{organization}/change/", name=name)[0] == 302
            assert "companyos_wrote_lsn" in browser.cookies

            status, page = browser.request("GET", f"/admin/core/organization/?q={token}")

            assert status == 200 and name in page
            # The primary ran the changelist's search; the paused replica did not.
            assert searched(token) in server_log(topology, "primary")
            assert searched(token) not in server_log(topology, "replica1")
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")

        # Replay running: the replica catches up and serves the next changelist. Caught up means past
        # the position the write's cookie holds (the request wrote its session after the rename too).
        with topology.postgres["primary"].connect() as primary:
            written = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        wait_for(
            lambda: replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [written]).fetchone()[0],
            "replay",
        )
        status, page = browser.request("GET", f"/admin/core/organization/?q={token.upper()}")

        assert status == 200 and name in page
        assert searched(token.upper()) in server_log(topology, "replica1")
        assert searched(token.upper()) not in server_log(topology, "primary")


def test_the_dashboards_charts_are_read_on_the_replica(topology, web):
    """The charts' hand-written SQL goes where the router sends the page's ORM reads."""
    browser = Browser(web, {"sessionid": topology.data["session"]})
    # An organization no other test reads: its charts are not in the cache yet.
    organization = uuid.UUID(topology.data["watched"])

    status, page = browser.request("GET", f"/admin/analytics/dashboard/?organization={organization}&range=7d")

    assert status == 200, page[:500]
    # psycopg binds a UUID as its hex digits.
    charts = {name: [sql for sql in statements(topology, name) if "date_bin(" in sql and organization.hex in sql]
              for name in ("primary", "replica1")}  # fmt: skip
    assert charts["replica1"] and not charts["primary"]


def statements(topology, name: str) -> list[str]:
    """The statements a server logged, each whole (a long one continues on lines starting with a tab)."""
    return re.split(r"\n(?!\t)", server_log(topology, name))


def searched(term: str) -> str:
    """How the admin's search for ``term`` appears in a server's statement log."""
    return f"LIKE UPPER('%{term}%')"


def test_the_web_path_through_pgbouncer_in_transaction_mode_serves_the_admin_and_webhooks(topology):
    env = child_environment(topology, **topology.environment(pgbouncer=True))
    with uvicorn_server(env=env, args=["--lifespan", "off"]) as port:
        browser = Browser(port, {"sessionid": topology.data["session"]})
        for _ in range(3):  # several transactions, on whichever server connections PgBouncer hands out
            status, page = browser.request("GET", "/admin/core/organization/")
            assert status == 200, page[:500]
        assert deliver_webhook(port, topology, f"bouncer-{uuid.uuid4()}") == 202


# What the web path does, as its own tests exercise it: the console and the webhook intake.
WEB_PATH_SUITES = ["companyos/config/tests/admin", "integrations/tests"]


def test_the_admin_and_webhook_suites_pass_through_pgbouncer_in_transaction_mode(topology):
    """Every statement of those suites goes through the pooler (the test database too).

    Without the replica: the suites count their queries as on one server.
    ``--reuse-db``: the pooler keeps server connections to the test database
    open, so dropping it at the end would fail; the topology goes away anyway.
    """
    env = child_environment(
        topology,
        **topology.environment(pgbouncer=True, replicas=()),
        REDIS_KEY_PREFIX=f"pgbouncer-suites-{uuid.uuid4().hex[:6]}",
    )
    env.pop("DEBUG")  # the suites set up their own settings
    suites = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--reuse-db", "-m", "not slow and not browser",
         *WEB_PATH_SUITES],
        env=env, cwd=settings.BASE_DIR, capture_output=True, text=True,
    )  # fmt: skip
    summary = suites.stdout.strip().splitlines()[-1]
    pooled = pgbouncer_transactions(topology, "test_companyos")
    print(f"\nThrough PgBouncer: {summary}; {pooled} transactions pooled on the test database")

    assert suites.returncode == 0, suites.stdout[-5000:]
    passed = int(re.search(r"(\d+) passed", summary)[1])
    assert passed > 200
    # At least each test's own transaction went through the pooler.
    assert pooled >= passed


def pgbouncer_transactions(topology, database: str) -> int:
    """How many transactions PgBouncer passed to ``database`` (its console speaks only the simple protocol: psql)."""
    stats = subprocess.run(
        [str(POSTGRES_BIN / "psql"), "-h", "127.0.0.1", "-p", str(topology.pgbouncer_port), "-U", "postgres",
         "-d", "pgbouncer", "--csv", "-c", "SHOW STATS"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(stats.stdout)))
    return sum(int(row["total_xact_count"]) for row in rows if row["database"] == database)


def deliver_webhook(port: int, topology, delivery_id: str) -> int:
    body = OPENED
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": github_signature(topology.data["secret"], body),
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", topology.data["endpoint"], body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def test_killing_the_redis_master_costs_the_cache_seconds_nobody_their_session_and_no_client_an_event(
    topology, tmp_path
):
    """Events flow to websocket clients on two ASGI processes while the Sentinel-watched master dies.

    The layer drops what was in flight (docs/scaling.md measures how much);
    each process's gap repair sends it from the stored rows.
    """
    # 200 clients share one token: the per-token limits are not what this test measures.
    limits = {"EVENTS_MAX_CONNECTIONS_PER_TOKEN": "0", "EVENTS_MAX_SUBSCRIPTIONS_PER_TOKEN": "0"}
    env = child_environment(topology, EVENTS_POSITION_SECONDS="1", EVENTS_SEND_TIMEOUT="0.5", **limits)
    with (
        uvicorn_server(env=env, args=["--lifespan", "off"]) as port_1,
        uvicorn_server(env=env, args=["--lifespan", "off"]) as port_2,
        running(env, tmp_path / "worker.log", "run_agent_worker", "--poll-seconds", "1"),
    ):
        browser = Browser(port_1, {"sessionid": topology.data["session"]})

        def cache_answers() -> bool:
            status, page = browser.request("GET", "/healthz")
            return status == 200 and json.loads(page)["checks"]["cache"]["status"] == "ok"

        def kill_and_wait_for_the_cache() -> tuple[float, int]:
            old_master = topology.kill_redis_master()
            killed = time.monotonic()
            logged_out = 0
            while not (topology.redis_master_port() != old_master and cache_answers()):
                logged_out += browser.request("GET", "/admin/")[0] != 200
                assert time.monotonic() - killed < 30, "the cache did not come back within 30 s"
                time.sleep(0.05)
            return time.monotonic() - killed, logged_out

        async def scenario():
            urls = [f"ws://127.0.0.1:{port}/ws/events/" for port in (port_1, port_2)]
            topics = ("deployment", "agent.task")
            token, watched = topology.data["token"], topology.data["watched"]
            clients = [Client(urls[n % 2], token, watched, topics) for n in range(200)]
            for start in range(0, len(clients), 50):
                await asyncio.gather(*(client.connect() for client in clients[start : start + 50]))
            readers = [asyncio.create_task(client.read()) for client in clients]
            await asyncio.sleep(1)
            # Events from a shell (deployments), the web (tasks queued through the API) and the worker (their runs).
            publisher = await asyncio.to_thread(
                start_publisher, env, tmp_path / "publisher.log", 20, 1, topology.data["slug"]
            )
            poster = TaskPoster(port_1, topology.data["staff_token"], topology.data["slug"], topology.data["agent"], 5)
            poster.start()
            try:
                await asyncio.sleep(2)
                assert await asyncio.to_thread(cache_answers)
                recovered, logged_out = await asyncio.to_thread(kill_and_wait_for_the_cache)
                back_at = time.monotonic()
                await asyncio.sleep(3)
            finally:
                poster.stopped.set()
                await asyncio.to_thread(poster.join)
                publisher.kill()
                publisher.wait()
            await asyncio.sleep(2)  # the worker runs the last tasks posted
            expected = stored_event_ids(topology)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(expected.keys() <= set(client.ids) for client in clients):
                await asyncio.sleep(0.2)
            for client in clients:
                await client.ws.close()
            await asyncio.gather(*readers)
            return clients, expected, recovered, logged_out, back_at

        clients, expected, recovered, logged_out, back_at = asyncio.run(scenario())
        repaired = [at - back_at for client in clients for at in client.repaired_at]
        print(
            f"\nRedis master kill -9: cache back after {recovered:.1f} s; {len(expected)} events to 200 clients "
            f"on 2 processes, {len(repaired)} client-event pairs repaired from the store, the last "
            f"{max(repaired, default=0):.1f} s after the cache was back"
        )

        assert len(expected) >= 60
        published = set(expected.values())
        assert {"agent.task.queued", "agent.task.completed"} <= published, published
        assert any(event_type.startswith("deployment.") for event_type in published), published
        for client in clients:
            missed = expected.keys() - set(client.ids)
            assert not missed, f"{len(missed)} events missed (connection closed with {client.ws.close_code})"
        assert logged_out == 0
        assert recovered < 10
        assert browser.request("GET", "/admin/")[0] == 200


def stored_event_ids(topology) -> dict[str, str]:
    """The deployment and agent task events stored for the watched organization, id → type
    (on whichever server is the primary)."""
    with psycopg.connect(topology.primary_url(), autocommit=True, connect_timeout=5) as primary:
        rows = primary.execute(
            "SELECT id, event_type FROM analytics_event WHERE organization_id = %s"
            " AND (event_type LIKE 'deployment.%%' OR event_type LIKE 'agent.task.%%')",
            [topology.data["watched"]],
        )
        return {str(event_id): event_type for event_id, event_type in rows}


ENQUEUE_AND_TIME = """
import json, os, time
from agents import services
from agents.models import Agent, AgentTask
agent = Agent.objects.get(pk=os.environ["AGENT_ID"])
waits = []
for n in range(3):
    task = services.task_enqueue(agent=agent, task_type="echo", title=f"wake-up {n}")
    queued = time.monotonic()
    while AgentTask.objects.get(pk=task.pk).status != AgentTask.Status.COMPLETED:
        if time.monotonic() - queued > 20:
            break
        time.sleep(0.02)
    waits.append(time.monotonic() - queued)
print(json.dumps(waits))
"""


@contextlib.contextmanager
def running(env: dict[str, str], log_path, *args: str):
    """``manage.py <args>`` (a worker) on the topology for the block, its output in ``log_path``."""
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_the_worker_gets_its_wake_ups_while_the_web_path_goes_through_pgbouncer(topology, tmp_path):
    """The worker's LISTEN goes to the primary directly: through the pooler it would hear nothing."""
    env = child_environment(topology, **topology.environment(pgbouncer=True))
    # Polling once a minute: a task done within seconds was woken by its NOTIFY.
    with running(env, tmp_path / "worker.log", "run_agent_worker", "--poll-seconds", "60"):
        with topology.postgres["primary"].connect() as primary:
            wait_for(
                lambda: primary.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE query = 'LISTEN agents_task_queued'"
                ).fetchone(),
                "the worker's LISTEN on the primary",
            )
        timed = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", ENQUEUE_AND_TIME],
            check=True, env={**env, "AGENT_ID": topology.data["agent"]}, cwd=settings.BASE_DIR,
            capture_output=True, text=True,
        )  # fmt: skip
    waits = json.loads(timed.stdout.strip().splitlines()[-1])
    print(f"\nThrough PgBouncer: queued → completed in {', '.join(f'{wait:.2f}' for wait in waits)} s")

    assert max(waits) < 5, (tmp_path / "worker.log").read_text()[-2000:]


# The worker's log line for a task whose completion it committed.
WORKER_COMPLETED = re.compile(r"task (\S+) type=echo .* completed in")


# Whether the worker has processed one of the test's deliveries and completed a task made after %s.
WORKER_HAS_SERVED = (
    "SELECT EXISTS (SELECT FROM integrations_webhookdelivery"
    "               WHERE delivery_id LIKE 'failover-%%' AND processed_at IS NOT NULL)"
    " AND EXISTS (SELECT FROM agents_agenttask WHERE created_at > %s AND completed_at IS NOT NULL)"
)


@contextlib.contextmanager
def worker_log_on_failure(worker_log):
    """A worker that does not come back fails the test with the end of its log, which says why."""
    try:
        yield
    except RuntimeError as error:
        pytest.fail(f"{error}; the worker's log ends with:\n{worker_log.read_text()[-3000:]}")


def test_killing_the_postgres_primary_loses_no_acknowledged_write_and_serving_resumes_without_restart(
    topology, web, tmp_path
):
    """Writes from webhooks and the API (the web process) and from the worker while the primary dies.

    Acknowledged means: a 202 for a delivery, a 201 for a queued task, the
    worker's "completed" log line, each written only after its commit. The
    worker (``run_worker``: the jobs that process deliveries, and the agent
    tasks) is the one that was running before: nothing is restarted.
    """
    env = child_environment(topology, AGENT_WORKER_POLL_SECONDS="1")
    worker_log = tmp_path / "worker.log"

    def api_back_after(killed: float) -> float | None:
        """When the API first acknowledged a task after the kill, if it has."""
        return min((at for at, _ in poster.created if at > killed), default=None)

    acknowledged, failed_after_kill = [], 0
    killed = killed_at = recovered = None
    poster = TaskPoster(web, topology.data["staff_token"], topology.data["slug"], topology.data["agent"], 5)
    started_at = datetime.now(UTC)
    with running(env, worker_log, "run_worker"):
        poster.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                delivery_id = f"failover-{uuid.uuid4()}"
                status = deliver_webhook(web, topology, delivery_id)
                if status == 202:
                    acknowledged.append(delivery_id)
                    if killed and recovered is None:
                        recovered = time.monotonic() - killed
                elif killed:
                    failed_after_kill += 1
                else:
                    pytest.fail(f"a delivery failed before the primary was killed: {status}")
                if killed is None and len(acknowledged) >= 200:
                    # Serving before the kill: what must resume is a worker that was running.
                    with psycopg.connect(topology.postgres["primary"].url(), autocommit=True) as primary:
                        wait_for(
                            lambda: primary.execute(WORKER_HAS_SERVED, [started_at]).fetchone()[0],
                            "the worker serving before the kill",
                            timeout=30,
                        )
                    topology.kill_postgres("primary")
                    killed, killed_at = time.monotonic(), datetime.now(UTC)
                    # The failover tooling's part: promote the synchronous standby.
                    topology.promote("standby1")
                # Both writers must be back before the posting stops: the API's first write after the
                # promotion can come after the webhooks' 300th, and the worker needs a task queued then.
                if recovered is not None and len(acknowledged) >= 300 and api_back_after(killed):
                    break
        finally:
            poster.stopped.set()
            poster.join()
        assert killed is not None, "the primary was never killed"
        assert recovered is not None, "no write was acknowledged after the promotion"
        api_back = api_back_after(killed)
        assert api_back is not None, f"the API queued no task after the promotion (answers: {poster.statuses})"
        with (
            psycopg.connect(topology.postgres["standby1"].url(), autocommit=True) as new_primary,
            worker_log_on_failure(worker_log),
        ):
            # The worker serves again: it completes a task queued after the promotion...
            tasks_back = wait_for(
                lambda: new_primary.execute(
                    "SELECT min(completed_at) FROM agents_agenttask WHERE completed_at > %s AND created_at > %s",
                    [killed_at, killed_at],
                ).fetchone()[0],
                "the worker completing a task queued after the promotion",
                timeout=30,
            )
            # ... processes deliveries again (the ones queued before the kill come first)...
            deliveries_back = wait_for(
                lambda: new_primary.execute(
                    "SELECT min(processed_at) FROM integrations_webhookdelivery"
                    " WHERE delivery_id LIKE 'failover-%%' AND processed_at > %s",
                    [killed_at],
                ).fetchone()[0],
                "the worker processing deliveries again",
                timeout=30,
            )
            # ... and, behind that backlog, one received after the promotion.
            new_delivery_done = wait_for(
                lambda: new_primary.execute(
                    "SELECT min(processed_at) FROM integrations_webhookdelivery"
                    " WHERE delivery_id LIKE 'failover-%%' AND created_at > %s AND processed_at IS NOT NULL",
                    [killed_at],
                ).fetchone()[0],
                "the worker processing a delivery received after the promotion",
                timeout=30,
            )
            # ... and in the end applies every acknowledged delivery, leaving no job "doing" behind it
            # (nothing else queues jobs here): one cut off mid-way runs again, and every outcome is written.
            unsettled = (
                "SELECT (SELECT count(*) FROM integrations_webhookdelivery WHERE delivery_id = ANY(%s)"
                " AND status = 'received'), (SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing')"
            )
            with contextlib.suppress(RuntimeError):
                wait_for(lambda: new_primary.execute(unsettled, [acknowledged]).fetchone() == (0, 0), "", timeout=90)
            received, doing = new_primary.execute(unsettled, [acknowledged]).fetchone()
            assert (received, doing) == (0, 0), f"{received} deliveries still received, {doing} jobs still doing"
            all_applied = datetime.now(UTC)
    with psycopg.connect(topology.postgres["standby1"].url(), autocommit=True) as new_primary:
        stored = {
            row[0]
            for row in new_primary.execute(
                "SELECT delivery_id FROM integrations_webhookdelivery WHERE delivery_id LIKE 'failover-%'"
            )
        }
        tasks = dict(new_primary.execute("SELECT id::text, status FROM agents_agenttask").fetchall())
    completed_by_worker = set(WORKER_COMPLETED.findall(worker_log.read_text()))
    worker_back = max(tasks_back, deliveries_back) - killed_at
    print(
        f"\nPostgreSQL primary kill -9 + promotion: webhooks served again after {recovered:.1f} s "
        f"({failed_after_kill} refused meanwhile, {len(acknowledged)} acknowledged), the API after "
        f"{api_back - killed:.1f} s ({len(poster.created)} tasks queued), the worker after "
        f"{(tasks_back - killed_at).total_seconds():.1f} s for agent tasks ({len(completed_by_worker)} completed) "
        f"and {(deliveries_back - killed_at).total_seconds():.1f} s for deliveries (the first received after the "
        f"promotion processed after {(new_delivery_done - killed_at).total_seconds():.1f} s; all "
        f"{len(acknowledged)} applied after {(all_applied - killed_at).total_seconds():.1f} s)"
    )

    assert set(acknowledged) <= stored, f"{len(set(acknowledged) - stored)} acknowledged deliveries lost"
    queued = {task_id for _, task_id in poster.created}
    assert queued <= tasks.keys(), f"{len(queued - tasks.keys())} acknowledged API writes lost"
    lost = {task_id for task_id in completed_by_worker if tasks.get(task_id) != "completed"}
    assert not lost, f"{len(lost)} completions the worker logged are not on the new primary"
    assert completed_by_worker and queued
    assert "Traceback" not in worker_log.read_text(), "a lost connection is logged as one line, not a traceback"
    assert recovered < 15
    assert api_back - killed < 15
    assert worker_back.total_seconds() < 15
