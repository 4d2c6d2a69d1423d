"""Write paths for integrations, webhooks and the webhook delivery log.

A delivery goes through two steps. ``webhook_delivery_record`` stores it
and queues the job that applies it (one statement, before the provider gets
its answer), and ``webhook_delivery_process`` applies it later: in that job
on a worker, in the periodic sweep of what is still received
(integrations/jobs.py), or again on demand (``webhook_delivery_redeliver``). Processing locks the
delivery row with ``SKIP LOCKED``, so each delivery is applied by exactly one
of them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_redis import get_redis_connection

from companyos.foundation.batches import delete_in_batches
from companyos.foundation.console.history import history_source
from companyos.foundation.db import session_lost
from companyos.foundation.ids import uuid7
from companyos.foundation.jobs import defer_job_sql, job_to_defer

# The module, not its task: the jobs call these services, so they import this module too.
from integrations import jobs
from integrations.models import Integration, Webhook, WebhookDelivery, new_webhook_secret
from integrations.selectors import REFUSAL_DAYS, refusals_key
from integrations.webhooks.database import primary_connection
from integrations.webhooks.providers import PROVIDERS, Identity

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status


def integration_rotate_credentials(*, integration: Integration, credentials: Mapping[str, Any]) -> Integration:
    """Replace an integration's credentials (stored encrypted; never logged)."""
    if not isinstance(credentials, Mapping) or not credentials:
        raise ValidationError("Credentials must be a non-empty mapping of names to values.")
    try:
        json.dumps(credentials)
    except (TypeError, ValueError) as exc:
        raise ValidationError("Credentials must be JSON: strings, numbers, lists and mappings.") from exc
    integration.credentials = dict(credentials)
    integration.save(update_fields=["credentials"])
    return integration


MIN_SECRET_LENGTH = 16


def webhook_rotate_secret(*, webhook: Webhook, secret: str | None = None) -> str:
    """Give a webhook a new signing secret and return it; this is the only time it is shown.

    We generate the secret, except for providers that generate their own
    (Vercel shows its secret once when the webhook is created there): pass
    that one as ``secret``. The old secret stops working at once: deliveries
    signed with it answer 401 until the provider has the new one.
    """
    if secret is None:
        secret = new_webhook_secret()
    elif len(secret.strip()) < MIN_SECRET_LENGTH or secret != secret.strip():
        raise ValidationError(
            f"A signing secret needs at least {MIN_SECRET_LENGTH} characters and no surrounding spaces."
        )
    webhook.secret = secret
    webhook.save(update_fields=["secret"])
    return secret


# One round trip stores the delivery, queues the job that applies it when it
# is to be processed, and counts it on the webhook: the delivery and its job
# commit together or not at all. A redelivery of a stored id changes nothing
# (no row comes back, no job is queued), except that one whose processing
# failed is taken up again: that is what a provider's "redeliver" is for.
# The statement writes no tracked column (the webhook's counters are churn),
# so it needs no change context for the history.
# The deliveries among which a delivery id is unique (the model's partial unique constraint).
_UNIQUE_AMONG = "NOT (status = 'rejected')"
_RECORD_SQL = f"""
WITH delivery AS (
    INSERT INTO {WebhookDelivery._meta.db_table} AS d (
        id, created_at, updated_at, webhook_id, delivery_id, event, action, status,
        response_code, signature_valid, attempts, error, payload, headers
    )
    VALUES (
        %(id)s, %(now)s, %(now)s, %(webhook)s, %(delivery_id)s, %(event)s, %(action)s, %(status)s,
        %(code)s, %(signature_valid)s, 0, %(error)s, %(payload)s::jsonb, %(headers)s::jsonb
    )
    ON CONFLICT (webhook_id, delivery_id) WHERE {_UNIQUE_AMONG}
    DO UPDATE SET status = EXCLUDED.status, error = EXCLUDED.error, payload = EXCLUDED.payload,
                  headers = EXCLUDED.headers, response_code = EXCLUDED.response_code, updated_at = EXCLUDED.updated_at
    WHERE d.status = 'failed'
    RETURNING d.id, d.status
), queued AS (
    -- The stored row's id: a failed delivery taken up again keeps its own.
    SELECT {defer_job_sql("jsonb_build_object('delivery_pk', delivery.id::text)")}
      FROM delivery WHERE delivery.status = 'received'
)
UPDATE {Webhook._meta.db_table}
   SET delivery_count = delivery_count + 1,
       failure_count = failure_count + %(failed)s,
       last_delivery_at = %(now)s,
       last_delivery_status = CASE WHEN EXISTS (SELECT FROM delivery) THEN %(code)s ELSE %(duplicate_code)s END
 WHERE id = %(webhook)s
-- Reading "queued" is what runs it.
RETURNING (SELECT id FROM delivery), (SELECT count(*) FROM queued)
"""  # noqa: S608 - table names only

DUPLICATE_RESPONSE_CODE = 200
# The delivery a redelivery repeats: the one row its conflict found.
_STORED_SQL = f"""
SELECT id FROM {WebhookDelivery._meta.db_table}
 WHERE webhook_id = %(webhook)s AND delivery_id = %(delivery_id)s AND {_UNIQUE_AMONG}
"""  # noqa: S608 - table name only


async def webhook_delivery_record(
    *,
    webhook: Webhook,
    identity: Identity,
    status: str,
    response_code: int,
    payload_json: str | None,
    headers: Mapping[str, str],
    signature_valid: bool,
    error: str = "",
) -> tuple[uuid.UUID | None, bool]:
    """Store a delivery, queue its processing if it is ``received``, and count it on its webhook, in one statement.

    ``payload_json`` is the verified body as received (stored as JSONB
    without re-encoding); rejected deliveries pass None. Returns the stored
    delivery's id and whether the call was a redelivery (a delivery id
    already stored): that changes nothing and returns the id of the delivery
    it repeats, read by a second statement on that rare path (None if it was
    pruned meanwhile). Any 4xx answer counts as a failure on the webhook.
    """
    params = {
        "id": uuid7(),
        "now": timezone.now(),
        "webhook": webhook.pk,
        "delivery_id": identity.delivery_id,
        "event": identity.event,
        "action": identity.action,
        "status": status,
        "code": response_code,
        "signature_valid": signature_valid,
        "error": error,
        "payload": payload_json,
        "headers": json.dumps(dict(headers)),
        "failed": int(response_code >= 400),
        "duplicate_code": DUPLICATE_RESPONSE_CODE,
        **job_to_defer(jobs.process_delivery),
    }
    async with primary_connection() as connection:
        row = await (await connection.execute(_RECORD_SQL, params)).fetchone()
        if row and row[0] is not None:
            return row[0], False
        stored = await (await connection.execute(_STORED_SQL, params)).fetchone()
    return (stored[0] if stored else None), True


def webhook_refusal_count(*, webhook: Webhook, code: int) -> None:
    """Count an unverified request refused with ``code``, in Redis only (skipped while Redis is down)."""
    key = refusals_key(webhook_pk=webhook.pk, day=timezone.now().date())
    client = get_redis_connection("default")
    try:
        if client.hincrby(key, str(code), 1) == 1:
            client.expire(key, (REFUSAL_DAYS + 1) * 86400)
    except redis.RedisError:
        logger.debug("Redis is down: a refused request to webhook %s was not counted", webhook.pk)


def _locked_received(**lookup: Any) -> WebhookDelivery | None:
    """The oldest matching received delivery that nobody else is processing, locked."""
    return (
        WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("webhook__integration__organization")
        .filter(status=Status.RECEIVED, **lookup)
        .order_by("created_at")
        .first()
    )


def _delivery_run(delivery: WebhookDelivery) -> None:
    """Apply a locked delivery and log the outcome on it.

    The changes run in a savepoint: a failure rolls back everything the
    delivery did (including its events, which are published on commit) and
    is recorded as ``failed`` with the error, for a redelivery to retry.
    """
    webhook = delivery.webhook
    provider = PROVIDERS[webhook.integration.service]
    identity = Identity(delivery.delivery_id, delivery.event, delivery.action)
    started = time.perf_counter()
    try:
        # History records what the delivery changes as coming from the webhook.
        with transaction.atomic(), history_source("webhook", delivery=str(delivery.pk)):
            reason = provider.ignore_reason(webhook=webhook, event=delivery.event) or provider.apply(
                webhook=webhook, identity=identity, payload=delivery.payload
            )
    except ValidationError as exc:  # the payload's fault, said in the message: no traceback to log
        delivery.status, delivery.error = Status.FAILED, " ".join(exc.messages)
        logger.warning("Webhook delivery %s (%s) refused: %s", delivery.pk, delivery.event, delivery.error)
    except Exception as exc:  # any bug or surprise in a payload fails this delivery only
        if session_lost():  # not the delivery's failure: nothing can be written, and its job runs it again
            raise
        logger.exception("Webhook delivery %s (%s) failed", delivery.pk, delivery.event)
        delivery.status, delivery.error = Status.FAILED, f"{type(exc).__name__}: {exc}"
    else:
        delivery.status, delivery.error = (Status.IGNORED, reason) if reason else (Status.PROCESSED, "")
    delivery.attempts += 1
    delivery.processed_at = timezone.now()
    delivery.processing_ms = (time.perf_counter() - started) * 1000
    delivery.save(update_fields=["status", "error", "attempts", "processed_at", "processing_ms"])


def webhook_delivery_process(*, delivery_pk: uuid.UUID) -> WebhookDelivery | None:
    """Process one received delivery; None if it is not waiting or another process has it."""
    with transaction.atomic():
        delivery = _locked_received(pk=delivery_pk)
        if delivery is not None:
            _delivery_run(delivery)
    return delivery


def webhook_deliveries_process_pending(*, limit: int = 100) -> int:
    """Process up to ``limit`` waiting deliveries, oldest first, each in its own transaction.

    Any number of workers can run this at once; returns how many it processed.
    """
    processed = 0
    while processed < limit:
        with transaction.atomic():
            delivery = _locked_received()
            if delivery is None:
                break
            _delivery_run(delivery)
        processed += 1
    return processed


def webhook_delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Process a stored delivery again, now, whatever its status (the admin's redeliver action).

    Applying a payload twice is harmless: rows change only where the
    payload differs from them, and events fire only for real changes.
    """
    if delivery.status == Status.REJECTED:
        raise ValidationError("A rejected delivery has no verified payload to process.")
    with transaction.atomic():
        locked = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("webhook__integration__organization")
            .get(pk=delivery.pk)
        )
        _delivery_run(locked)
    return locked


def webhook_deliveries_prune(*, older_than: timedelta | None = None, batch_size: int = 5000) -> int:
    """Delete deliveries older than the retention period, in batches; returns how many.

    Small batches keep each statement's locks and WAL short on a busy table.
    """
    if older_than is None:
        older_than = timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    if older_than < timedelta(0) or batch_size < 1:
        raise ValidationError("The retention period and the batch size must be positive.")
    return delete_in_batches(WebhookDelivery.objects.filter(created_at__lt=timezone.now() - older_than), batch_size)
