"""Admin for connected services, their webhooks and the delivery log.

Credentials and webhook secrets are write-only here: the change form offers
an empty field that replaces the stored value only when filled, and nothing
renders the stored value back. Only holders of ``console.manage_secrets``
(the admin role) see those fields or run the rotation actions.
"""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from companyos.foundation.console.toolkit import (
    ModelAdmin,
    ReadOnlyInline,
    WriteOnlyField,
    action_form,
    count_link,
    fk_link,
    run_action,
    status_badge,
    subquery_count,
)
from companyos.foundation.fields import masked
from companyos.foundation.jsonbounds import load_bounded_json
from integrations.models import Integration, Webhook, WebhookDelivery
from integrations.selectors import REFUSAL_DAYS, webhook_refusals

MANAGE_SECRETS = "console.manage_secrets"


def parse_credentials(text: str) -> dict:
    value = load_bounded_json(text)
    if not isinstance(value, dict):
        raise ValueError("credentials must be a JSON object")
    return value


class IntegrationForm(forms.ModelForm):
    new_credentials = WriteOnlyField(
        parse=parse_credentials,
        label="Credentials",
        help_text="A JSON object of tokens and keys. Leave empty to keep the stored credentials.",
    )

    class Meta:
        model = Integration
        # The stored credentials never reach a form: new_credentials replaces them.
        fields = (
            "organization",
            "service",
            "name",
            "status",
            "scopes",
            "config",
            "external_account_id",
            "last_synced_at",
            "last_error",
            "created_by",
            "metadata",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The widget hints that a value is stored (masked), never the value.
        if "new_credentials" in self.fields and not self.instance._state.adding and self.instance.credentials:
            stored = ", ".join(f"{name}: {masked(str(value))}" for name, value in self.instance.credentials.items())
            self.fields["new_credentials"].widget.attrs["placeholder"] = f"{stored} — type to replace"


class CredentialsForm(forms.Form):
    credentials = WriteOnlyField(
        parse=parse_credentials, required=True, help_text="A JSON object; replaces the stored credentials."
    )


class WebhookInline(admin.TabularInline):
    model = Webhook
    extra = 0
    fields = (
        "name",
        "is_active",
        "events",
        "last_delivery_at",
        "last_delivery_status",
        "delivery_count",
        "failure_count",
    )
    readonly_fields = ("last_delivery_at", "last_delivery_status", "delivery_count", "failure_count")
    show_change_link = True


@admin.register(Integration)
class IntegrationAdmin(ModelAdmin):
    form = IntegrationForm
    list_display = (
        "name",
        "service",
        fk_link("organization"),
        status_badge("status"),
        "external_account_id",
        "webhooks_count",
        "last_synced_at",
    )
    list_select_related = ("organization",)
    list_filter = ("service", "status", "organization")
    search_fields = ("name", "external_account_id", "organization__name")
    autocomplete_fields = ("organization", "created_by")
    date_hierarchy = "created_at"
    readonly_fields = ("last_synced_at", "last_error")
    inlines = (WebhookInline,)
    actions = ("rotate_credentials",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(webhooks_total=subquery_count(Webhook, "integration"))

    webhooks_count = staticmethod(count_link(Webhook, "integration", "webhooks_total", description="webhooks"))

    def get_fieldsets(self, request, obj=None):
        account = ["organization", "service", "name", "status", "external_account_id", "scopes", "config"]
        if request.user.has_perm(MANAGE_SECRETS):
            account.insert(4, "new_credentials")
        return (
            (None, {"fields": account}),
            ("Sync", {"fields": ("last_synced_at", "last_error", "created_by", "metadata")}),
            ("Dates", {"fields": ("created_at", "updated_at")}),
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if not request.user.has_perm(MANAGE_SECRETS):
            form.base_fields.pop("new_credentials", None)
        return form

    def save_model(self, request, obj, form, change):
        credentials = form.cleaned_data.get("new_credentials")
        if credentials and not change:
            obj.credentials = credentials
        super().save_model(request, obj, form, change)
        if credentials and change:
            from integrations.services import integration_rotate_credentials

            integration_rotate_credentials(integration=obj, credentials=credentials)

    def has_manage_secrets_permission(self, request):
        return request.user.has_perm(MANAGE_SECRETS)

    @admin.action(description="Rotate credentials of the selected integration", permissions=["manage_secrets"])
    def rotate_credentials(self, request, queryset):
        from integrations.services import integration_rotate_credentials

        if queryset.count() != 1:
            self.message_user(request, "Select exactly one integration to rotate its credentials.", messages.WARNING)
            return None

        return action_form(
            self,
            request,
            queryset,
            CredentialsForm,
            title="Rotate credentials",
            apply=lambda data: run_action(
                self,
                request,
                queryset,
                lambda integration: integration_rotate_credentials(
                    integration=integration, credentials=data["credentials"]
                ),
                verb="Rotated credentials of",
            ),
        )


class DeliveryInline(ReadOnlyInline):
    model = WebhookDelivery
    fields = ("created_at", "event", "action", "status", "response_code", "attempts", "processed_at", "error")


@admin.register(Webhook)
class WebhookAdmin(ModelAdmin):
    list_display = (
        "name",
        fk_link("integration"),
        "is_active",
        "last_delivery_at",
        "last_delivery_status",
        "delivery_count",
        "failure_count",
    )
    list_select_related = ("integration",)
    list_filter = ("is_active", "integration__service", "last_delivery_status")
    search_fields = ("name", "integration__name", "=endpoint_token")
    autocomplete_fields = ("integration",)
    readonly_fields = (
        "endpoint_token",
        "last_delivery_at",
        "last_delivery_status",
        "delivery_count",
        "failure_count",
        "refused_requests",
    )
    fieldsets = (
        (None, {"fields": ("integration", "name", "is_active", "events", "endpoint_token")}),
        (
            "Deliveries",
            {
                "fields": (
                    "last_delivery_at",
                    "last_delivery_status",
                    "delivery_count",
                    "failure_count",
                    "refused_requests",
                )
            },
        ),
        ("Other", {"fields": ("metadata", "created_at", "updated_at")}),
    )
    inlines = (DeliveryInline,)
    actions = ("rotate_secret",)

    def has_manage_secrets_permission(self, request):
        return request.user.has_perm(MANAGE_SECRETS)

    @admin.display(description=f"refused requests (last {REFUSAL_DAYS} days)")
    def refused_requests(self, webhook: Webhook) -> str:
        """Unsigned, wrongly signed (401) and oversized (413) requests: counted in Redis, never stored as deliveries."""
        counts = webhook_refusals(webhook=webhook) if webhook.pk else {}
        return ", ".join(f"{count} × {code}" for code, count in counts.items()) or "none"

    @admin.action(description="Rotate the signing secret of the selected webhooks", permissions=["manage_secrets"])
    def rotate_secret(self, request, queryset):
        """Shows each new secret once, on this response only, to paste into the provider."""
        from integrations.services import webhook_rotate_secret

        secrets = {}
        run_action(
            self,
            request,
            queryset,
            lambda webhook: secrets.__setitem__(webhook, webhook_rotate_secret(webhook=webhook)),
            verb="Rotated the secret of",
        )
        if not secrets:
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "New webhook secrets",
            "opts": self.model._meta,
            "secrets": secrets.items(),
        }
        return TemplateResponse(request, "admin/integrations/webhook/secrets.html", context)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ModelAdmin):
    """The delivery log: written by the intake, read here; only redelivery changes it."""

    list_display = (
        "delivery_id",
        fk_link("webhook"),
        "event",
        "action",
        status_badge("status"),
        "response_code",
        "signature_valid",
        "attempts",
        "created_at",
    )
    list_select_related = ("webhook",)
    list_filter = ("status", "signature_valid", "webhook__integration__service")
    search_fields = ("=delivery_id", "event")
    date_hierarchy = "created_at"
    readonly_fields = (
        "webhook",
        "delivery_id",
        "event",
        "action",
        "status",
        "response_code",
        "signature_valid",
        "attempts",
        "processed_at",
        "processing_ms",
        "error",
        "payload",
        "headers",
    )
    fieldsets = (
        (None, {"fields": ("webhook", "delivery_id", "event", "action", "status")}),
        (
            "Processing",
            {"fields": ("response_code", "signature_valid", "attempts", "processed_at", "processing_ms", "error")},
        ),
        ("Request", {"fields": ("payload", "headers", "created_at", "updated_at")}),
    )
    actions = ("redeliver",)

    def has_add_permission(self, request):
        return False

    @admin.action(description="Process the selected deliveries again", permissions=["change"])
    def redeliver(self, request, queryset):
        from integrations.services import webhook_delivery_redeliver

        run_action(
            self, request, queryset, lambda delivery: webhook_delivery_redeliver(delivery=delivery), verb="Redelivered"
        )
