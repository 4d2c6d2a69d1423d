"""The raw baseline of ``bench/webhooks.py``: verify, store and acknowledge without Django.

A bare ASGI app doing the same work per delivery as ``POST /webhooks/<token>/``:
HMAC-SHA256 check of the body, JSON parse, the same single INSERT ... ON
CONFLICT statement (delivery row + webhook counters) over a psycopg pool,
then 202. Configured by the benchmark through environment variables.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from companyos.foundation.ids import uuid7

SECRET = os.environ["BENCH_WEBHOOK_SECRET"].encode()
WEBHOOK_ID = os.environ["BENCH_WEBHOOK_ID"]
SQL = """
WITH delivery AS (
    INSERT INTO integrations_webhookdelivery AS d (
        id, created_at, updated_at, webhook_id, delivery_id, event, action, status,
        response_code, signature_valid, attempts, error, payload, headers
    )
    VALUES (%(id)s, %(now)s, %(now)s, %(webhook)s, %(delivery_id)s, %(event)s, %(action)s, 'received',
            202, true, 0, '', %(payload)s::jsonb, %(headers)s)
    ON CONFLICT (webhook_id, delivery_id) WHERE NOT (status = 'rejected') DO NOTHING
    RETURNING d.id
)
UPDATE integrations_webhook
   SET delivery_count = delivery_count + 1, last_delivery_at = %(now)s,
       last_delivery_status = CASE WHEN EXISTS (SELECT FROM delivery) THEN 202 ELSE 200 END
 WHERE id = %(webhook)s
RETURNING (SELECT id FROM delivery)
"""
_pool: AsyncConnectionPool | None = None


async def _respond(send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send) -> None:
    global _pool
    if _pool is None:
        _pool = AsyncConnectionPool(
            os.environ["BENCH_DATABASE_URL"],
            min_size=int(os.environ["BENCH_POOL_MIN_SIZE"]),
            max_size=int(os.environ["BENCH_POOL_MAX_SIZE"]),
            open=False,
        )
        await _pool.open()
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    headers = dict(scope["headers"])
    expected = b"sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, headers.get(b"x-hub-signature-256", b"")):
        await _respond(send, 401, b'{"error": "signature"}')
        return
    text = body.decode()
    payload = json.loads(text)
    params = {
        "id": uuid7(),
        "now": datetime.now(UTC),
        "webhook": WEBHOOK_ID,
        "delivery_id": headers[b"x-github-delivery"].decode(),
        "event": headers[b"x-github-event"].decode(),
        "action": payload.get("action", ""),
        "payload": text,
        "headers": Jsonb({"X-GitHub-Event": headers[b"x-github-event"].decode()}),
    }
    async with _pool.connection() as conn:
        row = await (await conn.execute(SQL, params)).fetchone()
    await _respond(send, 202 if row and row[0] else 200, b'{"status": "received"}')
