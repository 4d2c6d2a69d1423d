"""Benchmark: verified webhook deliveries per second and acknowledge latency under concurrent load.

Measures ``POST /webhooks/<token>/`` (rate limits + signature check + store
with its job + acknowledge) served by a real uvicorn process on loopback,
next to a raw baseline: a bare ASGI app (``bench/webhooks_raw_app.py``) doing
the same HMAC check and the same INSERT over psycopg, served the same way,
with the same number of worker processes and the same pool size. Both get GitHub's real
``pull_request.opened`` example (28 kB), signed, each request with a new
delivery id, from concurrent keep-alive connections. Runs alternate between
the two and the medians are printed, plus the in-process floor (HMAC + the
raw INSERT in a loop on one connection, no HTTP).

    DATABASE_URL=postgres://.../companyos_hooks .venv/bin/python bench/webhooks.py
    ... --requests 5000 --concurrency 32 --runs 5 --workers 2

No worker runs during the measurement: deliveries stay ``received`` with
their jobs queued, so the figure is the acknowledge path (store and queue).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.urls import reverse  # noqa: E402

from companyos.foundation.tests.support import current_database_url  # noqa: E402
from core.models import Organization  # noqa: E402
from integrations.models import Integration, Webhook, WebhookDelivery  # noqa: E402
from integrations.tests.asgi_server import uvicorn_server  # noqa: E402
from integrations.tests.webhook_helpers import github_payload  # noqa: E402
from integrations.webhooks.signatures import github_signature  # noqa: E402

BODY = github_payload("pull_request/opened.payload.json")


def build_requests(path: str, signature: str, count: int) -> list[bytes]:
    """Raw HTTP/1.1 requests, ready to write: signing happens before the clock starts."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nX-GitHub-Event: pull_request\r\nX-Hub-Signature-256: {signature}\r\n"
    )
    return [f"{head}X-GitHub-Delivery: {uuid.uuid4()}\r\n\r\n".encode() + BODY for _ in range(count)]


async def _connection(host: str, port: int, requests: list[bytes], latencies: list[float], statuses: Counter) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def _load(base_url: str, requests: list[bytes], concurrency: int) -> tuple[float, list[float], Counter]:
    parts = urlsplit(base_url)
    latencies: list[float] = []
    statuses: Counter = Counter()
    shares = [requests[index::concurrency] for index in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(*(_connection(parts.hostname, parts.port, share, latencies, statuses) for share in shares))
    return time.perf_counter() - started, latencies, statuses


def measure(base_url: str, path: str, signature: str, requests: int, concurrency: int) -> dict[str, float]:
    asyncio.run(_load(base_url, build_requests(path, signature, concurrency * 10), concurrency))  # warm up
    elapsed, latencies, statuses = asyncio.run(_load(base_url, build_requests(path, signature, requests), concurrency))
    if set(statuses) != {202}:
        raise SystemExit(f"unexpected answers: {dict(statuses)}")
    latencies.sort()
    return {
        "rate": requests / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
    }


def in_process_floor(webhook: Webhook, count: int) -> float:
    """HMAC check + the raw INSERT statement in a loop on one connection: the cost without HTTP or Django."""
    import psycopg

    sys.path.insert(0, str(ROOT / "bench"))
    os.environ.update(BENCH_WEBHOOK_SECRET=webhook.secret, BENCH_WEBHOOK_ID=str(webhook.pk))
    from webhooks_raw_app import SQL

    from companyos.foundation.ids import uuid7

    text = BODY.decode()
    with psycopg.connect(current_database_url(), autocommit=True) as conn:
        started = time.perf_counter()
        for _ in range(count):
            expected = "sha256=" + hmac.new(webhook.secret.encode(), BODY, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(expected, github_signature(webhook.secret, BODY))
            params = {
                "id": uuid7(),
                "now": datetime.now(UTC),
                "webhook": webhook.pk,
                "delivery_id": str(uuid.uuid4()),
            }
            params |= {"event": "pull_request", "action": "opened", "payload": text, "headers": "{}"}
            conn.execute(SQL, params).fetchone()
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="Deliveries per run (default 500).")
    parser.add_argument("--concurrency", type=int, default=16, help="Concurrent connections (default 16).")
    parser.add_argument("--runs", type=int, default=3, help="Runs per server; medians are printed (default 3).")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes per server (default 1).")
    args = parser.parse_args()

    organization = Organization.objects.create(name="Webhook bench", slug=f"bench-{uuid.uuid4().hex[:12]}")
    integration = Integration.objects.create(
        organization=organization, service=Integration.Service.GITHUB, name="Bench", external_account_id="bench"
    )
    webhook = Webhook.objects.create(integration=integration, name="Bench")
    path = reverse("integrations:webhook_receive", args=[webhook.endpoint_token])
    signature = github_signature(webhook.secret, BODY)
    # The project as deployed (DEBUG off; plain HTTP on loopback), its pool
    # on by default; without it each statement connects. One client floods
    # one webhook: the rate limits are counted, as always, but set too high
    # to refuse, or they would measure themselves.
    pooled_env = {
        "LOG_LEVEL": "WARNING",
        "DEBUG": "False",
        "SECURE_SSL_REDIRECT": "False",
        "ALLOWED_HOSTS": "127.0.0.1",
        "WEBHOOK_RATE_LIMIT_PER_ADDRESS": "1000000000",
        "WEBHOOK_RATE_LIMIT_PER_ENDPOINT": "1000000000",
    }
    django_env = {**pooled_env, "DATABASE_POOL_MAX_SIZE": "0", "CONN_MAX_AGE": "0"}
    raw_env = {
        "BENCH_WEBHOOK_SECRET": webhook.secret,
        "BENCH_WEBHOOK_ID": str(webhook.pk),
        "BENCH_DATABASE_URL": current_database_url(),
        "BENCH_POOL_MIN_SIZE": str(settings.DATABASE_POOL_MIN_SIZE),
        "BENCH_POOL_MAX_SIZE": str(settings.DATABASE_POOL_MAX_SIZE),
        "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}",
    }
    servers = {
        "django": ("companyos.config.asgi:application", django_env),
        "pooled": ("companyos.config.asgi:application", pooled_env),
        "raw": ("webhooks_raw_app:app", raw_env),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    try:
        with contextlib.ExitStack() as stack:
            urls = {
                name: stack.enter_context(uvicorn_server(app, env=env, workers=args.workers))
                for name, (app, env) in servers.items()
            }
            for _ in range(args.runs):
                for name, url in urls.items():
                    results[name].append(measure(url, path, signature, args.requests, args.concurrency))
        floor = in_process_floor(webhook, min(args.requests, 2000))
    finally:
        stored = WebhookDelivery.objects.filter(webhook=webhook).count()
        organization.delete()  # cascades to the integration, the webhook and its deliveries

    med = {
        name: {key: statistics.median(run[key] for run in runs) for key in ("rate", "p50", "p99")}
        for name, runs in results.items()
    }
    print(
        f"webhooks: {args.requests} signed deliveries x {args.runs} runs per server, concurrency {args.concurrency}, "
        f"{len(BODY)}-byte body (pull_request.opened), uvicorn --workers {args.workers} for each server, "
        f"pool of {settings.DATABASE_POOL_MAX_SIZE} connections per process for each, "
        "acknowledge path only (no worker); medians"
    )
    print(f"{'':40}{'deliveries/s':>14}{'p50 ms':>10}{'p99 ms':>10}")
    labels = {
        "django": "project, no pool",
        "pooled": "project, psycopg pool",
        "raw": "raw ASGI app + psycopg pool (baseline)",
    }
    for name, label in labels.items():
        print(f"{label:40}{med[name]['rate']:>14.0f}{med[name]['p50']:>10.2f}{med[name]['p99']:>10.2f}")
    for name in ("django", "pooled"):
        print(
            f"{labels[name]} / raw: throughput {med[name]['rate'] / med['raw']['rate']:.2f}x, "
            f"p99 {med[name]['p99'] / med['raw']['p99']:.2f}x"
        )
    print(f"in-process floor (HMAC + the same INSERT, 1 connection, no HTTP): {floor:.0f} deliveries/s")
    print(f"rows stored during the run: {stored} (removed again)")
    print(f"database: {connection.settings_dict['NAME']}")


if __name__ == "__main__":
    main()
