"""Reads for integrations and webhooks."""

from __future__ import annotations

from datetime import date, timedelta

import redis
from django.conf import settings
from django.utils import timezone
from django_redis import get_redis_connection

from integrations.models import Integration, Webhook
from integrations.webhooks.database import ALIAS, primary_connection

# Unverified requests refused (401, 413) are counted per webhook and day in Redis, for this many days.
REFUSAL_DAYS = 7


def refusals_key(*, webhook_pk: object, day: date) -> str:
    """The Redis hash counting one day's refused requests to a webhook, by HTTP status."""
    return f"{settings.REDIS_KEY_PREFIX}:webhook-refusals:{webhook_pk}:{day.isoformat()}"


def webhook_refusals(*, webhook: Webhook) -> dict[int, int]:
    """Unverified requests refused in the last ``REFUSAL_DAYS`` days, by HTTP status; empty while Redis is down."""
    today = timezone.now().date()
    keys = [refusals_key(webhook_pk=webhook.pk, day=today - timedelta(days_ago)) for days_ago in range(REFUSAL_DAYS)]
    client = get_redis_connection("default")
    totals: dict[int, int] = {}
    try:
        for key in keys:
            for code, count in client.hgetall(key).items():
                totals[int(code)] = totals.get(int(code), 0) + int(count)
    except redis.RedisError:
        return {}
    return dict(sorted(totals.items()))


# The columns in the order of the models' fields, as Model.from_db expects them.
_ENDPOINT_SQL = f"""
SELECT webhook.id, webhook.integration_id, webhook.secret, webhook.events, integration.service
  FROM {Webhook._meta.db_table} AS webhook
  JOIN {Integration._meta.db_table} AS integration ON integration.id = webhook.integration_id
 WHERE webhook.endpoint_token = %s AND webhook.is_active AND integration.status <> %s
"""  # noqa: S608 - table names only


async def webhook_get_for_endpoint(*, endpoint_token: str) -> Webhook | None:
    """The active webhook behind a public endpoint; None if there is none.

    A webhook of a disconnected integration takes no deliveries either. Only
    what the intake reads is loaded (the webhook's id, secret and events, its
    integration's service): reading any other field would need a query, which
    Django refuses on the event loop, so nothing reads stale data by mistake.
    """
    async with primary_connection() as connection:
        cursor = await connection.execute(_ENDPOINT_SQL, [endpoint_token, Integration.Status.DISCONNECTED])
        row = await cursor.fetchone()
    if row is None:
        return None
    webhook_id, integration_id, secret, events, service = row
    secret = Webhook._meta.get_field("secret").from_db_value(secret, None, None)
    webhook = Webhook.from_db(
        ALIAS, ["id", "integration_id", "secret", "events"], [webhook_id, integration_id, secret, events]
    )
    webhook.integration = Integration.from_db(ALIAS, ["id", "service"], [integration_id, service])
    return webhook
