"""Connected third-party accounts and the webhook endpoints they push to."""

from __future__ import annotations

import secrets

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.db import models

from companyos.foundation.console.history import tracked
from companyos.foundation.events import StateEvents
from companyos.foundation.fields import EncryptedJSONField, EncryptedTextField
from companyos.foundation.models import BaseModel, ExternalModel, choices_check
from companyos.foundation.search import Searchable, trigram_index
from companyos.foundation.tracking import TrackedFieldsMixin


class Service(models.TextChoices):
    GITHUB = "github"
    VERCEL = "vercel"
    FIGMA = "figma"
    SLACK = "slack"
    TWITTER = "twitter"
    LINKEDIN = "linkedin"


def new_endpoint_token() -> str:
    """An unguessable token that forms a webhook's public URL."""
    return secrets.token_urlsafe(24)


def new_webhook_secret() -> str:
    return secrets.token_hex(32)


class IntegrationStatus(models.TextChoices):
    ACTIVE = "active"
    DISCONNECTED = "disconnected"
    ERROR = "error"


class Integration(ExternalModel):
    """A connected account at an outside service (GitHub org, Vercel team...)."""

    operators_may_change = True
    status_tones = {
        IntegrationStatus.ACTIVE: "success",
        IntegrationStatus.DISCONNECTED: "danger",
        IntegrationStatus.ERROR: "danger",
    }

    Service = Service

    Status = IntegrationStatus

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(text=("name", "external_account_id"))

    # The unique (organization, service, external_account_id) index serves
    # lookups by organization.
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="integrations", db_index=False
    )
    service = models.CharField(max_length=16, choices=Service)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status, default=Status.ACTIVE)
    credentials = EncryptedJSONField(
        default=dict, blank=True, help_text="Tokens and keys; encrypted at rest, never shown back."
    )
    scopes = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    config = models.JSONField(default=dict, blank=True)
    external_account_id = models.CharField(max_length=100)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey("core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta(ExternalModel.Meta):
        triggers = tracked(hidden=("credentials",))
        ordering = ["organization", "service", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "service", "external_account_id"],
                name="integrations_integration_account_unique",
            ),
            choices_check("service", Service, "integrations_integration"),
            choices_check("status", IntegrationStatus, "integrations_integration"),
        ]
        indexes = [
            # The sync scheduler: active integrations of a service, least recently synced first.
            models.Index(
                fields=["service", "last_synced_at"],
                name="int_sync_due_idx",
                condition=models.Q(status="active"),
            ),
            # The "needs attention" list: integrations in error, per organization.
            models.Index(fields=["organization"], name="int_error_idx", condition=models.Q(status="error")),
            # The global search (global_search above).
            trigram_index("name", name="int_name_trgm"),
            trigram_index("external_account_id", name="int_account_trgm"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_service_display()})"


class Webhook(ExternalModel):
    """An endpoint through which a provider pushes events to us."""

    operators_may_change = True

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(text=("name",))

    integration = models.ForeignKey("integrations.Integration", on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=200)
    endpoint_token = models.CharField(max_length=64, default=new_endpoint_token, editable=False)
    secret = EncryptedTextField(
        default=new_webhook_secret, help_text="Signing secret; encrypted at rest, never shown back."
    )
    events = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="Provider event names accepted; empty accepts all.",
    )
    is_active = models.BooleanField(default=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    last_delivery_status = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="HTTP status of the last delivery."
    )
    delivery_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)

    class Meta(ExternalModel.Meta):
        triggers = tracked(
            hidden=("secret",),
            churn=("delivery_count", "failure_count", "last_delivery_at", "last_delivery_status"),
        )
        ordering = ["integration", "name"]
        constraints = [
            # Every delivery looks its endpoint up by token.
            models.UniqueConstraint(fields=["endpoint_token"], name="integrations_webhook_token_unique"),
            models.CheckConstraint(
                condition=models.Q(failure_count__lte=models.F("delivery_count")),
                name="integrations_webhook_failures_lte_deliveries",
            ),
        ]
        indexes = [
            # The global search (global_search above).
            trigram_index("name", name="webhook_name_trgm"),
        ]

    def __str__(self) -> str:
        return self.name


class WebhookDeliveryStatus(models.TextChoices):
    RECEIVED = "received"  # verified and stored, waiting to be processed
    PROCESSED = "processed"
    IGNORED = "ignored"  # an event we do not handle or the webhook does not accept, or a stale one
    FAILED = "failed"  # processing raised; a redelivery tries again
    REJECTED = "rejected"  # answered 4xx (bad signature, too large, malformed): nothing of it is trusted


class WebhookDelivery(TrackedFieldsMixin, BaseModel):
    """One request a provider sent to a webhook endpoint: the delivery log.

    ``created_at`` is when the delivery was received. The verified payload is
    kept so a delivery can be processed again (redelivered); rejected
    deliveries keep no payload, only the reason. Rows older than
    ``WEBHOOK_DELIVERY_RETENTION_DAYS`` are removed by ``prune_webhook_deliveries``.
    """

    operators_may_change = True
    status_tones = {
        WebhookDeliveryStatus.RECEIVED: "warning",
        WebhookDeliveryStatus.PROCESSED: "success",
        WebhookDeliveryStatus.FAILED: "danger",
        WebhookDeliveryStatus.REJECTED: "danger",
    }

    # Real-time events (companyos.foundation.events): only the outcomes the
    # worker (or a redelivery) saves. Acknowledging a delivery must stay one
    # statement, so receiving publishes nothing: no created event, and
    # `received` and `rejected` (which only the intake sets) have none. The
    # intake's raw INSERT fires no post_save anyway, including for deliveries
    # it stores already `ignored`.
    state_events = StateEvents(
        topic="webhook.delivery",
        category="integrations",
        state_field="status",
        states={
            WebhookDeliveryStatus.PROCESSED: "webhook.delivery.processed",
            WebhookDeliveryStatus.IGNORED: "webhook.delivery.ignored",
            WebhookDeliveryStatus.FAILED: "webhook.delivery.failed",
        },
        # Never the payload or the headers (the provider's data), nor the error text: it can name our
        # internals, and members see events; staff read it on the delivery's admin page.
        snapshot=(
            "id", "webhook", "delivery_id", "event", "action", "status", "response_code", "attempts",
            "created_at", "processed_at", "processing_ms",
        ),
        # The worker loads the delivery with webhook__integration__organization: no extra query there.
        organization=lambda delivery: delivery.webhook.integration.organization_id,
        extra_data=lambda delivery: {"service": delivery.webhook.integration.service},
    )  # fmt: skip

    Status = WebhookDeliveryStatus

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(exact=("id",))

    # The (webhook, -created_at) index serves lookups by webhook.
    webhook = models.ForeignKey(
        "integrations.Webhook", on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    delivery_id = models.CharField(
        max_length=100, help_text="The provider's delivery id (X-GitHub-Delivery, Vercel's event id)."
    )
    event = models.CharField(max_length=100, help_text="The provider's event name (pull_request, deployment.ready...).")
    action = models.CharField(max_length=100, blank=True, help_text="GitHub's action (opened, closed...), if any.")
    status = models.CharField(max_length=16, choices=Status, default=Status.RECEIVED)
    response_code = models.PositiveSmallIntegerField(help_text="HTTP status the provider got back.")
    signature_valid = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times processing ran (redeliveries included).")
    processed_at = models.DateTimeField(null=True, blank=True)
    processing_ms = models.FloatField(null=True, blank=True, help_text="Time the last processing took.")
    error = models.TextField(blank=True, help_text="Why the delivery failed, was rejected or was ignored.")
    payload = models.JSONField(null=True, blank=True, help_text="The verified body; none for rejected deliveries.")
    headers = models.JSONField(default=dict, blank=True, help_text="The provider's headers that identify the delivery.")

    class Meta(BaseModel.Meta):
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            # Idempotency: a redelivery of a verified delivery id is recognised and
            # changes nothing. Rejected rows stay out of it, or anyone holding the
            # URL could block a real delivery id by sending it unsigned first.
            models.UniqueConstraint(
                fields=["webhook", "delivery_id"],
                condition=~models.Q(status="rejected"),
                name="integrations_webhookdelivery_delivery_unique",
            ),
            choices_check("status", WebhookDeliveryStatus, "integrations_webhookdelivery"),
            models.CheckConstraint(
                condition=~models.Q(status="rejected") | models.Q(payload__isnull=True),
                name="integrations_webhookdelivery_rejected_no_payload",
            ),
        ]
        indexes = [
            # The admin inline and the delivery log of one webhook, newest first.
            models.Index(fields=["webhook", "-created_at"], name="whd_webhook_recent_idx"),
            # The worker's queue: deliveries still waiting, oldest first.
            models.Index(fields=["created_at"], name="whd_pending_idx", condition=models.Q(status="received")),
            # Retention deletes by age; the table is append-only, so a BRIN index is tiny.
            BrinIndex(fields=["created_at"], name="whd_created_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.delivery_id} ({self.status})"
