"""Benchmark the cache layers and locks against raw redis-py on the same server.

    .venv/bin/python bench/cache.py                  # ~20 s on a quiet machine
    .venv/bin/python bench/cache.py --ops 20000 --runs 7 --payload-bytes 4096

Prints, for one payload, sequential GET and SET ops/s through
``companyos.foundation.cache`` vs raw redis-py (the raw side stores the same pickled
bytes, so the difference is the layer's own cost: key building, pickling,
django-redis, the circuit breaker), a lock acquire+release cycle vs one raw
GET round trip (and vs two raw round trips, the floor of any lock), and raw
GETs with the hiredis parser vs the pure-Python one.
Each figure is the median of ``--runs`` runs. Goals: layer >= 0.5x raw for
get and set, lock cycle <= 3x a GET round trip.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.config.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from redis._parsers import _HiredisParser, _RESP2Parser  # noqa: E402
from redis.utils import HIREDIS_AVAILABLE  # noqa: E402

from companyos.foundation.cache import get_layer  # noqa: E402
from companyos.foundation.locks import distributed_lock  # noqa: E402


def measure(operations: dict[str, Callable[[int], object]], ops: int, runs: int) -> dict[str, float]:
    """Median ops/s of each operation over ``runs`` runs of ``ops`` sequential calls.

    Within a run the operations take turns in slices of 100 calls, so the
    load of a shared machine, which drifts by the second, hits them alike
    instead of favouring whichever ran first.
    """
    rates: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(runs):
        elapsed = dict.fromkeys(operations, 0.0)
        for start in range(0, ops, 100):
            for name, operation in operations.items():
                started = time.perf_counter()
                for i in range(start, min(start + 100, ops)):
                    operation(i)
                elapsed[name] += time.perf_counter() - started
        for name, seconds in elapsed.items():
            rates[name].append(ops / seconds)
    return {name: statistics.median(values) for name, values in rates.items()}


def raw_client(parser_class: type | None = None) -> redis.Redis:
    kwargs = {"parser_class": parser_class} if parser_class else {}
    return redis.Redis.from_url(settings.REDIS_URL, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=2000, help="operations per run (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure; the median is printed (default 5)")
    parser.add_argument("--payload-bytes", type=int, default=512, help="size of the cached value (default 512)")
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:8]
    payload = {"id": run_id, "values": list(range(8)), "text": "x" * args.payload_bytes}
    blob = pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)
    layer = get_layer("api")
    raw = raw_client()
    raw_key = f"{settings.REDIS_KEY_PREFIX}:bench:{run_id}:raw"
    layer_key = f"bench:{run_id}:layer"
    lock_name = f"bench:{run_id}"
    layer.set(layer_key, payload, ttl=300)
    raw.set(raw_key, blob, ex=300)
    # Warm both connection pools so connecting is not measured.
    layer.get(layer_key)
    raw.get(raw_key)

    def lock_cycle(_: int) -> None:
        with distributed_lock(lock_name, timeout=5, blocking_timeout=1):
            pass

    operations = {
        "layer get": lambda i: layer.get(layer_key),
        "raw get": lambda i: raw.get(raw_key),
        "layer set": lambda i: layer.set(layer_key, payload, ttl=300),
        "raw set": lambda i: raw.set(raw_key, blob, ex=300),
        "family get": lambda i: layer.family(run_id).get("k"),
        "lock cycle": lock_cycle,
        # The floor of any lock: one round trip to take it, one to free it.
        "two round trips": lambda i: (raw.set(raw_key, blob, ex=300), raw.get(raw_key)),
    }
    parser_clients = {}
    if HIREDIS_AVAILABLE:
        # The same GET on two more clients that differ only in their reply parser.
        parser_clients = {"hiredis": raw_client(_HiredisParser), "python": raw_client(_RESP2Parser)}
        for label, client in parser_clients.items():
            client.get(raw_key)
            operations[f"parser {label}"] = lambda i, c=client: c.get(raw_key)
    figures = measure(operations, args.ops, args.runs)
    for client in parser_clients.values():
        client.close()

    layer.delete(layer_key)
    raw.delete(raw_key, f"{settings.REDIS_KEY_PREFIX}:lock:{lock_name}:fence")
    layer.family(run_id).invalidate()

    get_ratio = figures["layer get"] / figures["raw get"]
    set_ratio = figures["layer set"] / figures["raw set"]
    round_trip_us = 1e6 / figures["raw get"]
    lock_us = 1e6 / figures["lock cycle"]
    print(
        f"cache benchmark: {args.ops} ops x {args.runs} runs (median), payload {len(blob)} B pickled, "
        f"Redis {settings.REDIS_URL}, hiredis {'installed' if HIREDIS_AVAILABLE else 'absent'}"
    )
    print(
        f"  get   layer {figures['layer get']:>9,.0f} ops/s   raw redis-py {figures['raw get']:>9,.0f} ops/s   "
        f"ratio {get_ratio:.2f}x  (goal >= 0.5x: {'ok' if get_ratio >= 0.5 else 'MISSED'})"
    )
    print(
        f"  set   layer {figures['layer set']:>9,.0f} ops/s   raw redis-py {figures['raw set']:>9,.0f} ops/s   "
        f"ratio {set_ratio:.2f}x  (goal >= 0.5x: {'ok' if set_ratio >= 0.5 else 'MISSED'})"
    )
    print(f"  family get (version + value, 2 round trips) {figures['family get']:>9,.0f} ops/s")
    print(
        f"  lock acquire+release {lock_us:7.1f} us   raw GET round trip {round_trip_us:7.1f} us   "
        f"ratio {lock_us / round_trip_us:.2f}x  (goal <= 3x: {'ok' if lock_us <= 3 * round_trip_us else 'MISSED'})"
    )
    two_trips_us = 1e6 / figures["two round trips"]
    print(
        f"  (floor: two raw round trips SET+GET {two_trips_us:7.1f} us = {two_trips_us / round_trip_us:.2f}x a GET; "
        f"lock cycle = {lock_us / two_trips_us:.2f}x that floor)"
    )
    if parser_clients:
        hiredis, python = figures["parser hiredis"], figures["parser python"]
        print(
            f"  raw GET parser: hiredis {hiredis:>9,.0f} ops/s   pure Python {python:>9,.0f} ops/s   "
            f"ratio {hiredis / python:.2f}x"
        )


if __name__ == "__main__":
    main()
