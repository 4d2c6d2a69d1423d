"""``manage.py bench_events``: real-time fan-out, measured against raw Redis pub/sub.

In one run, for each channel layer asked for (``--layers``):
- starts a real ASGI server process (uvicorn, ``companyos.config.asgi:application``);
- connects ``--clients`` real websocket clients (one asyncio process), all
  subscribed to one organization's deployments;
- latency: deployments change state one at a time with plain ORM saves;
  commit → receipt by every client, p50/p99;
- throughput: ``--burst`` state changes as fast as one publisher commits them;
  deliveries/s until every client has every event, and lost messages.
Then the same with raw redis-py: PUBLISH → ``--clients`` SUBSCRIBE connections,
same payload size. Throughput is the median of ``--runs`` bursts.

``--repair on,off`` measures the websocket contenders with the gap repair
(``EVENTS_POSITION_SECONDS``, ``--repair-seconds``) on and off, and the
database transactions per second the server commits while idle with each
(``pg_stat_database``): the queries the repair adds.

``--shards 1,2`` measures each contender with the channel layer over one and
over two Redis servers (``CHANNEL_LAYER_SHARDS``): REDIS_URL's, and one more
redis-server started on a free port for the run; the Redis commands each
shard processed show where the layer's work went.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.asyncio as aioredis
import websockets
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from analytics.models import Event
from companyos.foundation.tests.support import uvicorn_server
from core.models import Organization, OrganizationMember, User
from core.services import api_token_create
from dev import free_port, port_open
from development.models import Deployment

ROOT = Path(settings.BASE_DIR)
ID_MARK = '"id":"'
EVENT_FRAME = '{"type":"event"'


@dataclass
class Result:
    label: str
    latencies_ms: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    lost: int = 0
    idle_queries_per_second: float | None = None
    # Redis commands each channel-layer shard processed during the contender's run.
    shard_commands: list[int] = field(default_factory=list)

    def row(self) -> str:
        lat = sorted(self.latencies_ms)
        p50 = statistics.median(lat) if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
        rate = statistics.median(self.rates) if self.rates else 0.0
        return f"{self.label:<48} {rate:>14,.0f} {p50:>9.1f} {p99:>9.1f} {self.lost:>6}"

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0


class Receipts:
    """Receipt times per message key, and a way to wait for a number of them.

    Only the keys waited for count: a client may also receive an event
    committed before the run (the gap repair hands a new subscription the
    events of the overlap before it).
    """

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self._keys: set[str] = set()
        self._count = 0
        self._target = 0
        self._reached = asyncio.Event()

    def add(self, key: str) -> None:
        self.times.setdefault(key, []).append(time.perf_counter())
        if key in self._keys:
            self._count += 1
            if self._count >= self._target:
                self._reached.set()

    async def wait_for(self, keys: list[str], each: int, timeout: float) -> None:
        """Until every one of ``keys`` was received ``each`` times, or ``timeout``."""
        self._keys, self._target = set(keys), len(keys) * each
        self._count = sum(len(self.times.get(key, ())) for key in keys)
        self._reached.clear()
        if self._count < self._target:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reached.wait(), timeout)

    def missing(self, keys: list[str], each: int) -> int:
        """Receipts short of ``each`` per key (a key received twice does not make up for another's loss)."""
        return sum(max(each - len(self.times.get(key, ())), 0) for key in keys)


def key_of(text: str) -> str:
    """The message's id without parsing all of its JSON (the id comes first in the envelope)."""
    start = text.index(ID_MARK) + len(ID_MARK)
    return text[start : start + 36]


class Command(BaseCommand):
    help = "Benchmark websocket event fan-out (latency, deliveries/s) against raw Redis PUBLISH/SUBSCRIBE."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--clients", type=int, default=1000)
        parser.add_argument("--latency-events", type=int, default=10, help="Events published one at a time.")
        parser.add_argument("--burst", type=int, default=30, help="Events per throughput burst.")
        parser.add_argument("--runs", type=int, default=3, help="Bursts per contender (the median is reported).")
        parser.add_argument("--layers", default="pubsub", help="Channel layers to measure: pubsub,classic.")
        parser.add_argument("--ws", default="websockets-sansio", help="uvicorn's websocket implementation (--ws).")
        parser.add_argument("--workers", type=int, default=2, help="uvicorn --workers (one per core).")
        parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait for a burst's deliveries.")
        parser.add_argument("--repair", default="on", help="Gap repair in the server: on, off or on,off.")
        parser.add_argument("--repair-seconds", default="2", help="EVENTS_POSITION_SECONDS when the repair is on.")
        parser.add_argument("--idle-seconds", type=float, default=10.0, help="Idle window for the queries/s figure.")
        parser.add_argument(
            "--shards",
            default="1",
            help="Channel-layer shard counts to measure: 1, 2 or 1,2 (Redis servers past REDIS_URL's are started).",
        )

    def handle(self, *args, **options) -> None:
        n = options["clients"]
        self.options = options
        tag = uuid.uuid4().hex[:8]
        shard_counts = [int(count) for count in options["shards"].split(",")]
        if max(shard_counts) > 1 and settings.REDIS_SENTINELS:
            raise CommandError("--shards starts plain Redis servers; run it without REDIS_SENTINELS.")
        results = []
        try:
            organization, deployment, token = self._setup(tag)
            with self._extra_redis_servers(max(shard_counts) - 1) as extra_urls:
                for layer in options["layers"].split(","):
                    for shards in shard_counts:
                        urls = [settings.REDIS_URL, *extra_urls][:shards]
                        for repair in options["repair"].split(","):
                            # The publisher (this process) and the server must share the layer.
                            with (
                                self._server(layer, repair, urls) as url,
                                override_settings(CHANNEL_LAYERS={"default": self._layer_backend(layer, urls)}),
                            ):
                                label = f"{layer} layer, {shards} shard{'s' if shards > 1 else ''}, repair {repair}"
                                before = self._commands_processed(urls)
                                results.append(
                                    asyncio.run(self._bench_websocket(url, token, organization, deployment, label))
                                )
                                after = self._commands_processed(urls)
                                results[-1].shard_commands = [b - a for a, b in zip(before, after, strict=True)]
            results.append(asyncio.run(self._bench_raw()))
        finally:
            Organization.objects.filter(slug=f"bench-events-{tag}").delete()
            User.objects.filter(email=f"bench-events-{tag}@example.com").delete()
        raw = results[-1]
        self.stdout.write(
            f"\nFan-out to {n} clients; latency over {options['latency_events']} events, "
            f"throughput median of {options['runs']} bursts of {options['burst']} events"
        )
        self.stdout.write(f"{'':<48} {'deliveries/s':>14} {'p50 ms':>9} {'p99 ms':>9} {'lost':>6}")
        for result in results:
            self.stdout.write(result.row())
        for result in results[:-1]:
            ratio = result.rate / raw.rate if raw.rate else 0.0
            verdict = "meets" if ratio >= 0.5 and result.lost == 0 else "MISSES"
            self.stdout.write(
                f"{result.label}: {ratio:.2f}x raw deliveries/s ({verdict} the 0.5x goal, lost {result.lost}); "
                f"database transactions/s while idle: {result.idle_queries_per_second:.1f}; "
                f"Redis commands per shard: {' / '.join(f'{count:,}' for count in result.shard_commands)}"
            )

    # --- Fixtures and the server ---------------------------------------------------------

    def _setup(self, tag: str) -> tuple[Organization, Deployment, str]:
        organization = Organization.objects.create(name=f"Bench {tag}", slug=f"bench-events-{tag}")
        user = User.objects.create_user(f"bench-events-{tag}@example.com")
        OrganizationMember.objects.create(organization=organization, user=user)
        _, token = api_token_create(user=user, name="bench_events", expires_at=timezone.now() + dt.timedelta(hours=1))
        deployment = Deployment.objects.create(
            organization=organization,
            external_id=f"dpl_bench_{tag}",
            project_name="bench",
            state=Deployment.State.ERROR,
            ready_at=timezone.now(),
        )
        return organization, deployment, token

    @contextlib.contextmanager
    def _extra_redis_servers(self, count: int):
        """``count`` throwaway redis-servers on free ports for the run; yields their URLs."""
        ports = [free_port() for _ in range(count)]
        servers = [
            subprocess.Popen(  # noqa: S603 - a fixed program and arguments
                ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],  # noqa: S607 - the machine's redis-server
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
            for port in ports
        ]
        try:
            for port in ports:
                deadline = time.monotonic() + 10
                while not port_open(port):
                    if time.monotonic() > deadline:
                        raise CommandError(f"redis-server on {port} did not start")
                    time.sleep(0.05)
            yield [f"redis://127.0.0.1:{port}/0" for port in ports]
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)

    @staticmethod
    def _layer_backend(layer: str, urls: list[str]) -> dict:
        """The layer's settings over ``urls``: what the server gets from CHANNEL_LAYER_SHARDS."""
        backend = copy.deepcopy(settings.CHANNEL_LAYER_BACKENDS[layer])
        hosts = backend["CONFIG"]["hosts"]
        if len(urls) > 1:
            backend["CONFIG"]["hosts"] = [{**hosts[0], "address": url} for url in urls]
        return backend

    @staticmethod
    def _commands_processed(urls: list[str]) -> list[int]:
        counts = []
        for url in urls:
            with redis.Redis.from_url(url) as client:
                counts.append(client.info("stats")["total_commands_processed"])
        return counts

    @contextlib.contextmanager
    def _server(self, layer: str, repair: str, shard_urls: list[str]):
        args = ["--log-level", "warning", "--no-access-log", "--ws", self.options["ws"]]
        args += ["--workers", str(self.options["workers"]), "--timeout-graceful-shutdown", "3"]
        position_seconds = self.options["repair_seconds"] if repair == "on" else "0"
        env = {**os.environ, "CHANNEL_LAYER": layer, "EVENTS_POSITION_SECONDS": position_seconds}
        # Every client connects with the one token: the per-token limits would refuse all but a few.
        env |= {"EVENTS_MAX_CONNECTIONS_PER_TOKEN": "0", "EVENTS_MAX_SUBSCRIPTIONS_PER_TOKEN": "0"}
        if len(shard_urls) > 1:
            env["CHANNEL_LAYER_SHARDS"] = ",".join(shard_urls)
        with uvicorn_server(env=env, args=args) as port:
            yield f"ws://127.0.0.1:{port}/ws/events/"

    def _idle_transactions_per_second(self) -> float:
        """Transactions committed in this database per second while nothing is published (the server's reads).

        The window runs from ``before`` to the last reading, idle seconds plus the 11 s reporting delay.
        """

        def committed() -> int:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                return cursor.fetchone()[0]

        # Backends report their commits to pg_stat_database up to 10 s late
        # (PostgreSQL's idle statistics interval): let the bursts' arrive first.
        time.sleep(11)
        before = committed()
        time.sleep(self.options["idle_seconds"])
        time.sleep(11)
        # This process's own three statements (two reads, one clear) commit too.
        return (committed() - before - 3) / (self.options["idle_seconds"] + 11)

    # --- Contenders ------------------------------------------------------------------------

    async def _bench_websocket(self, url, token, organization, deployment, label) -> Result:
        receipts = Receipts()
        connections = []

        async def open_client() -> None:
            # No compression: a server compressing each frame per client would measure zlib, not fan-out.
            ws = await websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {token}"}, compression=None
            )
            await ws.send(f'{{"action":"subscribe","organization":"{organization.pk}","topics":["deployment"]}}')
            assert '"subscribed"' in await ws.recv()
            connections.append(ws)

        async def read(ws) -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for text in ws:
                    if text.startswith(EVENT_FRAME):  # not the repair's position frames
                        receipts.add(key_of(text))

        n = self.options["clients"]
        # In batches: a thundering herd of handshakes measures nothing useful here.
        for start in range(0, n, 50):
            await asyncio.gather(*(open_client() for _ in range(min(50, n - start))))
        readers = [asyncio.create_task(read(ws)) for ws in connections]

        def publish(count: int) -> list[tuple[str, float]]:
            return self._publish_deployments(deployment, count)

        result = await self._measure(f"websocket ({label})", receipts, publish)
        result.idle_queries_per_second = await asyncio.to_thread(self._idle_transactions_per_second)
        for ws in connections:
            await ws.close()
        await asyncio.gather(*readers)
        return result

    def _publish_deployments(self, deployment: Deployment, count: int) -> list[tuple[str, float]]:
        """``count`` state changes (ready ↔ error), committed together; their event ids and send times.

        One transaction for a burst, so that the figure measures the fan-out
        rather than PostgreSQL's commit rate (the latency phase commits each).
        """
        sent_at = []
        before = Event.objects.filter(subject_id=deployment.pk).order_by("-id").values_list("id", flat=True).first()
        with transaction.atomic():
            for _ in range(count):
                # Registered before the save's own callback: runs just before its send.
                transaction.on_commit(lambda: sent_at.append(time.perf_counter()))
                ready = deployment.state != Deployment.State.READY
                deployment.state = Deployment.State.READY if ready else Deployment.State.ERROR
                deployment.save(update_fields=["state"])
        ids = Event.objects.filter(subject_id=deployment.pk, id__gt=before).order_by("id").values_list("id", flat=True)
        return list(zip([str(i) for i in ids], sent_at, strict=True))

    async def _bench_raw(self) -> Result:
        receipts = Receipts()
        channel = f"{settings.REDIS_KEY_PREFIX}:bench:raw:{uuid.uuid4().hex}"
        subscribers = []
        for _ in range(self.options["clients"]):
            pubsub = aioredis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(channel)
            subscribers.append(pubsub)

        async def read(pubsub) -> None:
            with contextlib.suppress(asyncio.CancelledError):
                async for message in pubsub.listen():
                    receipts.add(key_of(message["data"].decode()))

        readers = [asyncio.create_task(read(p)) for p in subscribers]
        # Wait until every subscription is registered server-side.
        client = redis.Redis.from_url(settings.REDIS_URL)
        while client.pubsub_numsub(channel)[0][1] < len(subscribers):
            await asyncio.sleep(0.05)
        # A payload the size of a deployment event frame.
        filler = "x" * 700

        def publish(count: int) -> list[tuple[str, float]]:
            sent = []
            for _ in range(count):
                key = str(uuid.uuid4())
                sent.append((key, time.perf_counter()))
                client.publish(channel, f'{{"type":"event","event":{{"id":"{key}","data":"{filler}"}}}}')
            return sent

        result = await self._measure("raw redis-py PUBLISH/SUBSCRIBE", receipts, publish)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers)
        for pubsub in subscribers:
            await pubsub.aclose()
        client.close()
        return result

    async def _measure(self, label: str, receipts: Receipts, publish: Callable[[int], list]) -> Result:
        """Latency one event at a time, then throughput bursts; counts lost deliveries."""
        n = self.options["clients"]
        result = Result(label)
        keys = []
        for _ in range(self.options["latency_events"]):
            [(key, committed)] = await asyncio.to_thread(publish, 1)
            keys.append(key)
            await receipts.wait_for([key], n, 10)
            result.latencies_ms += [(t - committed) * 1000 for t in receipts.times.get(key, [])]
        for _ in range(self.options["runs"]):
            started = time.perf_counter()
            sent = [key for key, _ in await asyncio.to_thread(publish, self.options["burst"])]
            keys += sent
            await receipts.wait_for(sent, n, self.options["timeout"])
            last = max(max(receipts.times.get(key, [started])) for key in sent)
            delivered = sum(len(receipts.times.get(key, [])) for key in sent)
            result.rates.append(delivered / (last - started))
        result.lost = receipts.missing(keys, n)
        self.stderr.write(f"done: {result.row()}")
        return result
