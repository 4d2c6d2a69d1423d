"""``Idempotency-Key`` for the writes that create things.

A client that did not get the answer to a create sends it again with the
same key and gets the first answer back instead of a second object. The key's record lives in Redis for
``API_IDEMPOTENCY_SECONDS``, per user, with a fingerprint of the request: the
same key with another body or path is a 422, and while the first request is
still running a second one is a 409.

A created token's secret is never stored: replaying a token creation is a
409 naming the token, whose secret was shown once.

While Redis is unreachable keys are not checked (the write goes through),
as the rate limits fail open: a cache outage must not stop writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest
from django_redis import get_redis_connection
from ninja import Schema, Status

from companyos.api.problems import Problem

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# How long a request holding a key may run before the key is free again.
IN_PROGRESS_SECONDS = 60


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def idempotent(
    request: HttpRequest,
    create: Callable[[], Any],
    *,
    schema: type[Schema],
    status: int = 201,
    replayable: bool = True,
) -> Status:
    """Run ``create`` once per ``Idempotency-Key``; its result is rendered with ``schema``."""
    key = request.headers.get(HEADER)
    if key is None:
        return Status(status, create())
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Problem(400, f"An {HEADER} has 1 to {MAX_KEY_LENGTH} characters.")
    fingerprint = _sha256(request.method.encode() + request.path.encode() + b"\n" + request.body)
    redis_key = f"{settings.REDIS_KEY_PREFIX}:api:idempotency:{request.user.pk}:{_sha256(key.encode())}"
    client = get_redis_connection("default")
    try:
        claimed = client.set(redis_key, json.dumps({"fingerprint": fingerprint}), nx=True, ex=IN_PROGRESS_SECONDS)
        stored = None if claimed else client.get(redis_key)
    except redis.RedisError:
        return Status(status, create())
    if stored is not None:
        return _replay(json.loads(stored), fingerprint)
    try:
        result = create()
    except BaseException:
        _forget(client, redis_key)
        raise
    body = schema.from_orm(result).model_dump(mode="json", by_alias=True)
    record = {"fingerprint": fingerprint, "status": status}
    record |= {"body": body} if replayable else {"created": str(body["id"])}
    # Should Redis fail now, the answer still goes out; only a retry would not be recognised.
    with contextlib.suppress(redis.RedisError):
        client.set(redis_key, json.dumps(record), ex=settings.API_IDEMPOTENCY_SECONDS)
    return Status(status, body)


def _replay(record: dict[str, Any], fingerprint: str) -> Status:
    if record["fingerprint"] != fingerprint:
        raise Problem(422, f"This {HEADER} was used with another request; use a new key for a new request.")
    if "status" not in record:
        raise Problem(409, f"A request with this {HEADER} is still running; retry once it has answered.")
    if "body" not in record:
        raise Problem(409, f"Already created ({record['created']}) with this {HEADER}; its secret was shown once.")
    return Status(record["status"], record["body"])


def _forget(client: redis.Redis, redis_key: str) -> None:
    # Should Redis fail now, the claim expires by itself after IN_PROGRESS_SECONDS.
    with contextlib.suppress(redis.RedisError):
        client.delete(redis_key)
