"""The public webhook endpoint: ``POST /webhooks/<endpoint_token>/``.

The view only verifies and stores: it answers as soon as the delivery is
safely in the database (one lookup, one statement) and a job to apply it
is queued; the worker, woken by that job's NOTIFY, applies it (integrations/jobs.py).
Every outcome a caller can cause
is a 4xx or a 2xx, never a 500:

- 404 unknown or inactive endpoint (nothing stored: there is no webhook to
  attach it to);
- 413 body over ``WEBHOOK_MAX_BODY_BYTES``, 401 missing or wrong signature,
  400 malformed body: stored as a ``rejected`` delivery without payload and
  counted as a failure on the webhook;
- 202 accepted (``received``), or accepted and ``ignored`` for events we do
  not handle or the webhook does not take;
- 200 for a delivery id already stored (a redelivery), which changes nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.db import DataError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.jobs import defer_delivery_processing
from integrations.models import Webhook, WebhookDelivery
from integrations.selectors import webhook_get_for_endpoint
from integrations.services import webhook_delivery_record
from integrations.webhooks.providers import PROVIDERS, Provider

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON.")


def _jsonb_storable(value: Any) -> bool:
    """Whether PostgreSQL's JSONB takes ``value``: it refuses NUL and unpaired surrogates, which JSON allows."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_jsonb_storable(key) and _jsonb_storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_jsonb_storable(item) for item in value)
    return True


def _parse(body: bytes) -> tuple[dict[str, Any], str]:
    """The body as a JSON object and as text; ValueError when PostgreSQL's JSONB could not hold it."""
    text = body.decode("utf-8")
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("The JSON is nested too deeply.") from exc
    if not isinstance(payload, dict):
        raise ValueError("The body must be a JSON object.")
    # Only \u escapes can smuggle in what JSONB refuses (the text itself is valid UTF-8).
    try:
        storable = "\\u" not in text or _jsonb_storable(payload)
    except RecursionError:
        storable = False
    if not storable:
        raise ValueError("The JSON holds characters that cannot be stored (NUL or unpaired surrogates).")
    return payload, text


def _reject(
    *, webhook: Webhook, provider: Provider, request: HttpRequest, code: int, reason: str, signature_valid: bool = False
) -> JsonResponse:
    """Answer a 4xx and log it as a rejected delivery, keeping nothing the caller sent but headers."""
    logger.info("Webhook %s rejected a delivery (%s): %s", webhook.pk, code, reason)
    webhook_delivery_record(
        webhook=webhook,
        identity=provider.claimed_identity(headers=request.headers),
        status=Status.REJECTED,
        response_code=code,
        payload_json=None,
        headers=provider.stored_headers(request.headers),
        signature_valid=signature_valid,
        error=reason,
    )
    return JsonResponse({"error": reason}, status=code)


@csrf_exempt
@require_POST
def webhook_receive(request: HttpRequest, endpoint_token: str) -> HttpResponse:
    """Verify, store and acknowledge one delivery."""
    webhook = webhook_get_for_endpoint(endpoint_token=endpoint_token)
    provider = PROVIDERS.get(webhook.integration.service) if webhook else None
    if webhook is None or provider is None:
        return JsonResponse({"error": "Unknown webhook endpoint."}, status=404)

    limit = settings.WEBHOOK_MAX_BODY_BYTES
    too_large = f"The body is larger than {limit} bytes."
    # Refuse a declared oversize without reading it, then bound what is read.
    if _declared_length(request) > limit:
        return _reject(webhook=webhook, provider=provider, request=request, code=413, reason=too_large)
    body = request.read(limit + 1)
    if len(body) > limit:
        return _reject(webhook=webhook, provider=provider, request=request, code=413, reason=too_large)

    if not provider.signature_valid(secret=webhook.secret, body=body, headers=request.headers):
        return _reject(
            webhook=webhook, provider=provider, request=request, code=401, reason="Missing or wrong signature."
        )

    try:
        payload, text = _parse(body)
        identity = provider.identify(headers=request.headers, payload=payload)
        reason = provider.ignore_reason(webhook=webhook, event=identity.event)
        status = Status.IGNORED if reason else Status.RECEIVED
        delivery_pk = webhook_delivery_record(
            webhook=webhook,
            identity=identity,
            status=status,
            response_code=202,
            payload_json=text,
            headers=provider.stored_headers(request.headers),
            signature_valid=True,
            error=reason,
        )
    # Not UTF-8, not JSON, not storable, a MalformedDelivery, or (DataError) a
    # value PostgreSQL refuses that the checks above did not foresee.
    except (ValueError, DataError) as exc:
        return _reject(
            webhook=webhook,
            provider=provider,
            request=request,
            code=400,
            reason=f"Malformed delivery: {exc}",
            signature_valid=True,
        )

    if delivery_pk is None:
        return JsonResponse({"status": "duplicate", "delivery_id": identity.delivery_id}, status=200)
    answer = {"status": status, "delivery": str(delivery_pk)}
    if status == Status.RECEIVED:
        defer_delivery_processing(delivery_pk)
    return JsonResponse(answer, status=202)
