"""``manage.py bench_layer_failover``: what each channels-redis layer loses when the Redis master dies.

Starts the topology's Redis (a master, two replicas, three sentinels:
companyos.foundation.topology), then for each layer in turn, on the Sentinel
settings CompanyOS uses: one layer instance (a server process) has a channel
in a group, another (the publisher) sends ``--sends`` group messages one
after another, each waiting at most ``EVENTS_SEND_TIMEOUT`` like
``publish_on_commit``; after ``--kill-after`` sends, ``kill -9`` of the
master. Counted: sends that reported success, of those the ones received,
sends that raised, and the time until sends succeed again. The next layer
gets a fresh Redis topology. Everything started is stopped at the end.

    python manage.py bench_layer_failover --sends 1000
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string

from companyos.foundation.redis_sentinel import channel_layer_host
from companyos.foundation.topology import SENTINEL_MASTER, Topology

GROUP = "failover"


class Command(BaseCommand):
    help = "Count the group messages each channel layer loses through a kill -9 of the Redis master under Sentinel."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--sends", type=int, default=1000)
        parser.add_argument("--kill-after", type=int, default=300, help="Sends before the master is killed.")
        parser.add_argument("--interval", type=float, default=0.005, help="Seconds between two sends.")
        parser.add_argument("--layers", default="pubsub,classic")

    def handle(self, *args, sends: int, kill_after: int, interval: float, layers: str, **options) -> None:
        rows = []
        for name in layers.split(","):
            topology = Topology(Path(tempfile.mkdtemp(prefix="companyos-layer-failover-")))
            try:
                topology.start_redis()
                rows.append((name, asyncio.run(self._measure(topology, name, sends, kill_after, interval))))
            finally:
                topology.stop()
        self.stdout.write(
            f"\n{sends} group sends, kill -9 of the Redis master after {kill_after} "
            f"(3 sentinels, down-after 1 s)\n{'layer':<10}{'succeeded':>10}{'received':>10}{'lost':>6}"
            f"{'raised':>8}{'sending again after':>22}"
        )
        for name, (succeeded, received, raised, outage) in rows:
            lost = len(succeeded - received)
            self.stdout.write(
                f"{name:<10}{len(succeeded):>10}{len(succeeded & received):>10}{lost:>6}{raised:>8}{outage:>20.1f} s"
            )

    async def _measure(self, topology: Topology, name: str, sends: int, kill_after: int, interval: float):
        backend = dict(settings.CHANNEL_LAYER_BACKENDS[name])
        config = dict(backend["CONFIG"])
        host_options = {key: value for key, value in config["hosts"][0].items() if key == "socket_timeout"}
        sentinels = [("127.0.0.1", port) for port in topology.sentinel_ports]
        config["hosts"] = [channel_layer_host(SENTINEL_MASTER, url="redis://", sentinels=sentinels, **host_options)]
        layer_class = import_string(backend["BACKEND"])
        server, publisher = layer_class(**config), layer_class(**config)
        channel = await server.new_channel()
        await server.group_add(GROUP, channel)
        received: set[int] = set()

        async def receive() -> None:
            while True:
                try:
                    received.add((await server.receive(channel))["n"])
                except asyncio.CancelledError:
                    raise
                except Exception:  # Redis away: a server keeps receiving once it is back
                    await asyncio.sleep(0.05)

        receiver = asyncio.create_task(receive())
        await asyncio.sleep(0.5)  # the subscription is in place
        succeeded: set[int] = set()
        raised = 0
        killed_at = back_after = None
        for n in range(sends):
            if n == kill_after:
                topology.kill_redis_master()
                killed_at = time.monotonic()
            try:
                await asyncio.wait_for(
                    publisher.group_send(GROUP, {"type": "event", "n": n}), settings.EVENTS_SEND_TIMEOUT
                )
            except Exception:  # what publish_on_commit logs and carries on from
                raised += 1
            else:
                succeeded.add(n)
                if killed_at is not None and back_after is None and n > kill_after:
                    back_after = time.monotonic() - killed_at
            await asyncio.sleep(interval)
        deadline = time.monotonic() + 10
        while not succeeded <= received and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        for layer in (server, publisher):
            with contextlib.suppress(Exception):
                await layer.flush()
        self.stderr.write(f"{name}: {len(succeeded - received)} of {len(succeeded)} successful sends lost")
        return succeeded, received, raised, back_after or float("nan")
