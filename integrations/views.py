"""The public webhook endpoint: ``POST /webhooks/<endpoint_token>/``.

The view only verifies and stores: it answers as soon as the delivery and
the job that applies it are committed (one Redis round trip for the rate
limits, shared with the deliveries arriving at the same time, one lookup,
one statement); the worker, woken by that job's NOTIFY,
applies it (integrations/jobs.py). It is asynchronous, with its database
work on the event loop (``integrations.webhooks.database``) and its Redis
calls on a few threads of their own, so deliveries share PostgreSQL's commits
instead of each waiting in a thread; companyos/config/webhook_asgi.py serves
it behind async middleware only.
Every outcome a caller can cause is a 4xx or a 2xx, never a 500:

- 404 unknown or inactive endpoint (nothing stored: there is no webhook to
  attach it to);
- 429 with ``Retry-After`` past ``WEBHOOK_RATE_LIMIT_PER_ADDRESS`` requests a
  minute from one address or ``WEBHOOK_RATE_LIMIT_PER_ENDPOINT`` to one
  webhook (``companyos.foundation.ratelimit``);
- 413 body over ``WEBHOOK_MAX_BODY_BYTES``, 401 missing or wrong signature:
  counted in Redis per webhook and code, nothing written to the database
  (anyone holding the URL can send these);
- 400 a signed body that is not JSON we may store (over the bounds of
  ``companyos.foundation.jsonbounds``) or not a delivery: stored as a
  ``rejected`` delivery without payload and counted as a failure on the
  webhook, the answer saying what was wrong and nothing of our internals;
- 202 accepted (``received``), or accepted and ``ignored`` for events we do
  not handle or the webhook does not take;
- 200 for a delivery id already stored (a redelivery), which changes nothing;
  ``delivery`` is then the id of the stored one, as in a 202 it is the new one's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from psycopg import DataError

from companyos.foundation.jsonbounds import load_bounded_json
from companyos.foundation.network import client_address
from companyos.foundation.ratelimit import Limit, SharedCounts, too_many_requests
from integrations.models import Webhook, WebhookDelivery
from integrations.selectors import webhook_get_for_endpoint
from integrations.services import webhook_delivery_record, webhook_refusal_count
from integrations.webhooks.database import primary_connection
from integrations.webhooks.providers import PROVIDERS, Provider

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _parse(body: bytes) -> tuple[dict[str, Any], str]:
    """The body as a JSON object and as text; ValueError when it is not one we may store."""
    payload = load_bounded_json(body, max_bytes=settings.WEBHOOK_MAX_BODY_BYTES)
    if not isinstance(payload, dict):
        raise ValueError("The body must be a JSON object.")
    return payload, body.decode("utf-8")


Result = TypeVar("Result")

# Redis calls go through the cache layers' synchronous client (its circuit
# breaker, Sentinel), off the event loop on threads of their own: handing a
# call to them costs less than asgiref's sync_to_async, whose per-call
# bookkeeping cost the intake a third of its throughput (docs/benchmarks.md).
_redis_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-redis")


async def _on_redis_thread(function: Callable[..., Result], /, *args: Any, **kwargs: Any) -> Result:
    return await asyncio.get_running_loop().run_in_executor(_redis_threads, partial(function, *args, **kwargs))


# Concurrent deliveries share the rate limits' round trips (and hand-overs to a thread).
_rate_limits = SharedCounts(_on_redis_thread)


async def _refuse_unverified(*, webhook: Webhook, code: int, reason: str) -> JsonResponse:
    """Answer a request nobody signed (or too large to check) with a 4xx, counted in Redis only.

    Anyone who knows the URL can send these, so each must stay cheap: no
    database write, no log line (the counts are on the webhook's admin page).
    """
    await _on_redis_thread(webhook_refusal_count, webhook=webhook, code=code)
    return JsonResponse({"error": reason}, status=code)


async def _reject(*, webhook: Webhook, provider: Provider, request: HttpRequest, reason: str) -> JsonResponse:
    """Answer a signed but malformed delivery 400 and log it as rejected, keeping nothing of it but headers.

    Only the webhook's sender can sign, so these are rare and worth a row.
    """
    logger.info("Webhook %s rejected a signed delivery: %s", webhook.pk, reason)
    await webhook_delivery_record(
        webhook=webhook,
        identity=provider.claimed_identity(headers=request.headers),
        status=Status.REJECTED,
        response_code=400,
        payload_json=None,
        headers=provider.stored_headers(request.headers),
        signature_valid=True,
        error=reason,
    )
    return JsonResponse({"error": reason}, status=400)


@csrf_exempt
@require_POST
async def webhook_receive(request: HttpRequest, endpoint_token: str) -> HttpResponse:
    """Verify, store and acknowledge one delivery."""
    # Both limits before the lookup: a flood of one address or one endpoint costs no database work.
    retry_after = await _rate_limits.hit_all(
        Limit("webhook-address", client_address(request), settings.WEBHOOK_RATE_LIMIT_PER_ADDRESS),
        Limit("webhook-endpoint", endpoint_token, settings.WEBHOOK_RATE_LIMIT_PER_ENDPOINT),
    )
    if retry_after:
        return too_many_requests(retry_after)
    # The lookup and the statement that stores share one connection.
    async with primary_connection():
        return await _verify_and_store(request, endpoint_token)


async def _verify_and_store(request: HttpRequest, endpoint_token: str) -> HttpResponse:
    webhook = await webhook_get_for_endpoint(endpoint_token=endpoint_token)
    provider = PROVIDERS.get(webhook.integration.service) if webhook else None
    if webhook is None or provider is None:
        return JsonResponse({"error": "Unknown webhook endpoint."}, status=404)

    limit = settings.WEBHOOK_MAX_BODY_BYTES
    # Refuse a declared oversize without reading it, then bound what is read.
    if _declared_length(request) > limit or len(body := request.read(limit + 1)) > limit:
        return await _refuse_unverified(webhook=webhook, code=413, reason=f"The body is larger than {limit} bytes.")
    if not provider.signature_valid(secret=webhook.secret, body=body, headers=request.headers):
        return await _refuse_unverified(webhook=webhook, code=401, reason="Missing or wrong signature.")

    try:
        payload, text = _parse(body)
        identity = provider.identify(headers=request.headers, payload=payload)
        reason = provider.ignore_reason(webhook=webhook, event=identity.event)
        status = Status.IGNORED if reason else Status.RECEIVED
        delivery_pk, duplicate = await webhook_delivery_record(
            webhook=webhook,
            identity=identity,
            status=status,
            response_code=202,
            payload_json=text,
            headers=provider.stored_headers(request.headers),
            signature_valid=True,
            error=reason,
        )
    # Not JSON we may store (JSONRefused) or a MalformedDelivery: the message
    # says what the caller did wrong.
    except UnicodeDecodeError:
        reason = "Malformed delivery: the body is not UTF-8."
    except ValueError as exc:
        reason = f"Malformed delivery: {exc}"
    # A value PostgreSQL refuses that the checks above did not foresee: its
    # message quotes our SQL, so it goes to the log, not to the caller.
    except DataError:
        logger.warning("Webhook %s: PostgreSQL refused a signed delivery", webhook.pk, exc_info=True)
        reason = "Malformed delivery: a value in it cannot be stored."
    else:
        # Both answers name our delivery the same way: a redelivery, the one it repeats.
        if duplicate:
            return JsonResponse({"status": "duplicate", "delivery": delivery_pk}, status=200)
        return JsonResponse({"status": status, "delivery": delivery_pk}, status=202)
    return await _reject(webhook=webhook, provider=provider, request=request, reason=reason)
