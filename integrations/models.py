"""Connected third-party accounts and the webhook endpoints they push to."""

from __future__ import annotations

import secrets

from django.contrib.postgres.fields import ArrayField
from django.db import models

from companyos.fields import EncryptedJSONField, EncryptedTextField
from core.models import ExternalModel, choices_check


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

    Service = Service

    Status = IntegrationStatus

    # The unique (organization, service, external_account_id) index serves
    # lookups by organization.
    organization = models.ForeignKey("core.Organization", on_delete=models.CASCADE, related_name="integrations", db_index=False)
    service = models.CharField(max_length=16, choices=Service)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status, default=Status.ACTIVE)
    credentials = EncryptedJSONField(default=dict, blank=True, help_text="Tokens and keys; encrypted at rest, never shown back.")
    scopes = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    config = models.JSONField(default=dict, blank=True)
    external_account_id = models.CharField(max_length=100)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey("core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta(ExternalModel.Meta):
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
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_service_display()})"


class Webhook(ExternalModel):
    """An endpoint through which a provider pushes events to us."""

    integration = models.ForeignKey("integrations.Integration", on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=200)
    endpoint_token = models.CharField(max_length=64, default=new_endpoint_token, editable=False)
    secret = EncryptedTextField(default=new_webhook_secret, help_text="Signing secret; encrypted at rest, never shown back.")
    events = ArrayField(models.CharField(max_length=100), default=list, blank=True, help_text="Provider event names accepted; empty accepts all.")
    is_active = models.BooleanField(default=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    last_delivery_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTTP status of the last delivery.")
    delivery_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)

    class Meta(ExternalModel.Meta):
        ordering = ["integration", "name"]
        constraints = [
            # Every delivery looks its endpoint up by token.
            models.UniqueConstraint(fields=["endpoint_token"], name="integrations_webhook_token_unique"),
            models.CheckConstraint(
                condition=models.Q(failure_count__lte=models.F("delivery_count")),
                name="integrations_webhook_failures_lte_deliveries",
            ),
        ]

    def __str__(self) -> str:
        return self.name
