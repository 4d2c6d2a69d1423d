"""End to end, against real servers: no event lost through a Redis kill, and a client that does not read is let go.

Each test starts its own ``redis-server`` (``test_outage.RedisServer``) and
uvicorn processes pointed at it, so killing Redis touches nothing shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from agents.tests.factories import AgentFactory
from analytics.models import Event
from companyos.foundation.console.roles import ADMIN
from companyos.foundation.events import topic_group
from companyos.foundation.ids import uuid7
from companyos.foundation.tests.support import give_role, manage_py, uvicorn_server
from companyos.realtime.consumers import CLOSE_TOO_SLOW, CLOSE_TRY_AGAIN_LATER
from companyos.realtime.tests.support import acme_and_globex, child_env, run
from companyos.realtime.tests.test_outage import REDIS_SERVER, RedisServer
from core.services import api_token_create
from core.tests.factories import OrganizationFactory, OrganizationMemberFactory, UserFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(REDIS_SERVER is None, reason="needs the redis-server binary"),
]

ROOT = Path(__file__).resolve().parents[3]

# Publishes deployment state changes for the organizations given, `batch` per transaction
# and organization, `rate` transactions a second, until killed.
PUBLISHER = """
import sys, time
from django.db import transaction
from django.utils import timezone
from development.tests.factories import DeploymentFactory
from core.models import Organization
rate, batch = float(sys.argv[1]), int(sys.argv[2])
deployments = [DeploymentFactory(organization=o, state="building", ready_at=None)
               for o in Organization.objects.filter(slug__in=sys.argv[3:])]
print("started", flush=True)
while True:
    with transaction.atomic():
        for deployment in deployments * batch:
            deployment.state = "ready" if deployment.state != "ready" else "error"
            deployment.ready_at = timezone.now()
            deployment.save(update_fields=["state", "ready_at"])
    time.sleep(1 / rate)
"""


# Stores large deployment events without sending them live, 100 every 0.1 s, until killed: the
# gap repair sends them, about 4 MB a second, more than any socket buffer holds.
BULK_PUBLISHER = """
import sys, time
from agents.tests.factories import AgentFactory
from analytics.models import Event
from core.models import Organization
organization = Organization.objects.get(slug=sys.argv[1])
print("started", flush=True)
while True:
    Event.objects.bulk_create(
        Event(organization=organization, event_type="deployment.ready", category="development",
              payload={"filler": "x" * 4000})
        for _ in range(100)
    )
    time.sleep(0.1)
"""


def servers_env(redis_url: str, **extra: str) -> dict[str, str]:
    # 180 clients share one token here: the per-token connection limit is not what these tests measure.
    limits = {"EVENTS_MAX_CONNECTIONS_PER_TOKEN": "0", "EVENTS_MAX_SUBSCRIPTIONS_PER_TOKEN": "0"}
    return {**child_env(), "REDIS_URL": redis_url, "EVENTS_SEND_TIMEOUT": "0.5", **limits, **extra}


def start_publisher(env: dict[str, str], log: Path, *args: object, script: str = PUBLISHER) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", "import django; django.setup()\n" + script, *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    assert process.stdout.readline().strip() == "started", log.read_text()
    return process


def kill_redis(server: RedisServer) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    server.process = None


class Client:
    """A websocket client that keeps every event frame it receives and reconnects with ``since`` when told to."""

    def __init__(self, url: str, token: str, organization: str, topics: tuple[str, ...] = ("deployment",)) -> None:
        self.url, self.token, self.organization, self.topics = url, token, organization, topics
        self.ids: list[str] = []
        self.organizations: set[str] = set()
        self.repaired_at: list[float] = []  # when frames from the store (repair or replay) arrived
        self.refusals = 0  # handshakes answered with 1013 (try again later)
        self.ws = None

    async def connect(self, since: str | None = None) -> None:
        self.ws = await websockets.connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"})
        subscribe = {"action": "subscribe", "organization": self.organization, "topics": list(self.topics)}
        if since:
            subscribe["since"] = since
        await self.ws.send(json.dumps(subscribe))

    async def read(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                if frame["type"] == "event":
                    self.ids.append(frame["event"]["id"])
                    self.organizations.add(frame["event"]["organization"])
                    if frame.get("replay"):
                        self.repaired_at.append(time.monotonic())
        except websockets.ConnectionClosed:
            pass

    async def cut_and_resume(self, after: float) -> None:
        """Drop the connection, stay away ``after`` seconds, come back with the last id seen.

        Coming back while Redis is down, the server closes at once with 1013 (try again later:
        it cannot join the connection's groups): like any client, it tries again a little later.
        """
        await self.ws.close()
        await asyncio.sleep(after)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(websockets.ConnectionClosed):
                await self.connect(since=self.ids[-1] if self.ids else None)
            await self.read()
            if self.ws.close_code != CLOSE_TRY_AGAIN_LATER:
                return
            self.refusals += 1
            assert time.monotonic() < deadline, "still refused after 30 s"
            await asyncio.sleep(0.5)


class TaskPoster(threading.Thread):
    """Queues an agent task through the API ``rate`` times a second until stopped: events the web process publishes.

    Requests that fail (nothing is promised while Redis is away) are counted, not retried.
    """

    def __init__(self, port: int, token: str, organization: str, agent_id: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.organization, self.agent_id, self.rate = port, token, organization, agent_id, rate
        self.stopped = threading.Event()
        self.statuses: list[int] = []
        self.created: list[tuple[float, str]] = []  # (monotonic time, task id) of each acknowledged post

    def run(self) -> None:
        body = json.dumps({"agent": self.agent_id, "task_type": "echo", "title": "from the web"})
        while not self.stopped.wait(1 / self.rate):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request(
                    "POST", f"/api/v1/orgs/{self.organization}/tasks/", body=body,
                    headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
                )  # fmt: skip
                response = conn.getresponse()
                answer = response.read()
                self.statuses.append(response.status)
                if response.status == 201:
                    self.created.append((time.monotonic(), json.loads(answer)["id"]))
            except OSError:
                self.statuses.append(0)
            finally:
                conn.close()


def committed_ids(first_id: str) -> dict[str, set[str]]:
    """Per organization slug, the ids of the events committed from ``first_id`` on."""
    events = Event.objects.filter(id__gte=first_id).values_list("organization__slug", "id")
    ids: dict[str, set[str]] = {"acme": set(), "globex": set()}
    for slug, event_id in events:
        ids[slug].add(str(event_id))
    return ids


def committed_types_between(start, end) -> set[str]:
    """The event types committed between two instants (the outage)."""
    return set(Event.objects.filter(occurred_at__range=(start, end)).values_list("event_type", flat=True))


def test_every_client_gets_every_event_once_through_a_redis_kill(tmp_path):
    """Events from the web (the API), the agent worker and a shell script reach 200 clients on two processes."""
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    acme, globex, alice_token, bob_token = acme_and_globex()
    staff = give_role(UserFactory(), ADMIN)
    OrganizationMemberFactory(organization=acme, user=staff)
    _, staff_token = api_token_create(user=staff, name="web publisher")
    agent = AgentFactory(organization=acme)
    env = servers_env(redis_server.url, EVENTS_POSITION_SECONDS="1", API_RATE_LIMIT_PER_MINUTE="0")
    topics = ("deployment", "agent.task")
    publisher = poster = None
    try:
        with (
            uvicorn_server(env=env) as port_1,
            uvicorn_server(env=env) as port_2,
            manage_py("run_agent_worker", "--poll-seconds", "1", env=env),
        ):
            urls = [f"ws://127.0.0.1:{port}/ws/events/" for port in (port_1, port_2)]

            async def scenario():
                nonlocal publisher, poster
                clients = [Client(urls[i % 2], alice_token, "acme", topics) for i in range(180)]
                clients += [Client(urls[i % 2], bob_token, "globex", topics) for i in range(20)]
                for start in range(0, len(clients), 50):
                    await asyncio.gather(*(client.connect() for client in clients[start : start + 50]))
                readers = [asyncio.create_task(client.read()) for client in clients]
                await asyncio.sleep(1)
                first_id = str(uuid7())
                log = tmp_path / "publisher.log"
                publisher = await asyncio.to_thread(start_publisher, env, log, 10, 1, "acme", "globex")
                poster = TaskPoster(port_1, staff_token, "acme", str(agent.pk), rate=5)
                poster.start()
                await asyncio.sleep(3)
                # Ten clients are cut mid-stream and come back with `since`: five during the outage, five after.
                cut = [
                    asyncio.create_task(client.cut_and_resume(1.5 if n < 5 else 4))
                    for n, client in enumerate(clients[:10])
                ]
                killed_at = timezone.now()
                kill_redis(redis_server)
                await asyncio.sleep(3)
                redis_server.start()
                outage = (killed_at, timezone.now())
                back_at = time.monotonic()
                await asyncio.sleep(4)
                poster.stopped.set()
                await asyncio.to_thread(poster.join)
                publisher.kill()
                publisher.wait()
                # What the worker has yet to run after the last post.
                await asyncio.sleep(2)
                expected = await database_sync_to_async(committed_ids)(first_id)
                during_outage = await database_sync_to_async(committed_types_between)(*outage)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    if all(expected[c.organization] <= set(c.ids) for c in clients):
                        break
                    await asyncio.sleep(0.2)
                for client in clients:
                    await client.ws.close()
                await asyncio.gather(*readers, *cut)
                return clients, expected, during_outage, back_at

            clients, expected, during_outage, back_at = run(scenario)
    finally:
        if poster is not None:
            poster.stopped.set()
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
        redis_server.stop()

    # Enough was published by each of the three, a good part of it while Redis was away:
    # the API's queued tasks (web), their runs (worker), deployments (shell).
    assert len(expected["acme"]) >= 80
    assert {"agent.task.queued", "agent.task.completed"} <= during_outage, (during_outage, poster.statuses)
    assert any(event_type.startswith("deployment.") for event_type in during_outage), during_outage
    assert poster.statuses.count(201) >= 20, poster.statuses
    organization_ids = {"acme": str(acme.pk), "globex": str(globex.pk)}
    for client in clients:
        missed = expected[client.organization] - set(client.ids)
        assert not missed, f"{len(missed)} events missed"
        assert set(client.ids) <= expected[client.organization]
        assert client.organizations == {organization_ids[client.organization]}
    # Within a connection nothing comes twice; a resumed client may see the replay's overlap again.
    for client in clients[10:]:
        assert len(client.ids) == len(set(client.ids))
    # Those back during the outage were told to try again later (1013), not shown an HTTP error.
    assert all(client.refusals > 0 for client in clients[:5])
    repaired = [t - back_at for client in clients for t in client.repaired_at]
    print(
        f"\n{len(expected['acme']) + len(expected['globex'])} events committed (web, worker, shell); "
        f"{len(repaired)} client-event pairs repaired from the store; Redis back → last repaired event: "
        f"{max(repaired):.2f} s"
    )


def server_pid(port: int) -> int:
    """The pid of the uvicorn process serving ``port`` (its command line names the port)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"uvicorn" in b" ".join(command) and str(port).encode() in command:
                return int(entry.name)
    raise LookupError(port)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(pid)


def test_a_client_that_does_not_read_is_closed_with_4008_memory_flat_and_its_groups_left(tmp_path):
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    slowco = OrganizationFactory(slug="slowco")
    carol = UserFactory()
    OrganizationMemberFactory(organization=slowco, user=carol)
    _, token = api_token_create(user=carol, name="e2e")
    env = servers_env(redis_server.url, EVENTS_SEND_BUFFER_BYTES=str(64 * 1024), EVENTS_POSITION_SECONDS="1")
    group_channel = f"{settings.REDIS_KEY_PREFIX}:asgi__group__{topic_group(slowco.pk, 'deployment')}"
    publisher = None
    try:
        with uvicorn_server(env=env) as port:
            pid = server_pid(port)

            async def scenario():
                nonlocal publisher
                # A small receive buffer and queue: the client stops taking data almost at once.
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                ws = await websockets.connect(
                    f"ws://127.0.0.1:{port}/ws/events/",
                    sock=sock,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    max_queue=1,
                    ping_interval=None,
                )
                await ws.send(json.dumps({"action": "subscribe", "organization": "slowco", "topics": ["deployment"]}))
                assert json.loads(await ws.recv())["type"] == "subscribed"
                client = redis_server.client()
                assert client.pubsub_numsub(group_channel)[0][1] == 1
                publisher = await asyncio.to_thread(
                    start_publisher, env, tmp_path / "publisher.log", "slowco", script=BULK_PUBLISHER
                )
                samples = []
                for _ in range(8):
                    await asyncio.sleep(1.5)
                    samples.append(rss_kib(pid))
                subscribed_after = client.pubsub_numsub(group_channel)[0][1]
                publisher.kill()
                # Now read: what was in the pipes, then the close.
                code, frames = None, 0
                try:
                    async with asyncio.timeout(20):
                        while True:
                            await ws.recv()
                            frames += 1
                except websockets.ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else None
                except TimeoutError:
                    pass
                print(f"read {frames} frames after not reading")
                return samples, subscribed_after, code

            samples, subscribed_after, code = run(scenario)
            published = Event.objects.filter(organization=slowco).count()
    finally:
        if publisher is not None:
            publisher.kill()
            publisher.wait()
        redis_server.stop()

    print(f"\n{published} events published; server RSS (KiB) every 1.5 s while the client did not read: {samples}")
    assert published > 2000, (tmp_path / "publisher.log").read_text()[-3000:]
    assert code == CLOSE_TOO_SLOW
    assert subscribed_after == 0  # nothing left subscribed in Redis
    # Flat: the second half grows by less than 3 MB (before, every event stayed queued for the client).
    assert max(samples[4:]) - samples[3] < 3 * 1024, samples
