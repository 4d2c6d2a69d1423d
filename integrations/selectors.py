"""Reads for integrations and webhooks."""

from __future__ import annotations

from datetime import date, timedelta

import redis
from django.conf import settings
from django.utils import timezone
from django_redis import get_redis_connection

from integrations.models import Integration, Webhook

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


def webhook_get_for_endpoint(*, endpoint_token: str) -> Webhook | None:
    """The active webhook behind a public endpoint, with its integration; None if there is none.

    A webhook of a disconnected integration takes no deliveries either.
    """
    return (
        Webhook.objects.select_related("integration")
        .filter(endpoint_token=endpoint_token, is_active=True)
        .exclude(integration__status=Integration.Status.DISCONNECTED)
        .first()
    )
