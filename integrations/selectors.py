"""Reads for integrations and webhooks."""

from __future__ import annotations

from integrations.models import Integration, Webhook


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
