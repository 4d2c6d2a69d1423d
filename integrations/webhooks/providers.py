"""What each provider sends and what we do with it.

A provider knows how its requests are signed, where the delivery id and the
event name are, which events we handle, and which of its payload's objects
to apply (the mapping of each is in ``github`` and ``vercel``). Adding a provider means adding a class
here and registering it in ``PROVIDERS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.core.exceptions import ValidationError

from integrations.models import Service, Webhook
from integrations.webhooks import github, vercel
from integrations.webhooks.signatures import github_signature, signature_matches, vercel_signature

STALE = "stale: older than the state already applied"

# Headers kept with each delivery besides the provider's own (never the signature).
COMMON_HEADERS = ("Content-Type", "Content-Length", "User-Agent")
HEADER_VALUE_LIMIT = 200
# The length of WebhookDelivery.delivery_id and .event.
IDENTIFIER_LIMIT = 100


class MalformedDelivery(ValueError):
    """A signed request that does not say which delivery or event it is."""


@dataclass(frozen=True)
class Identity:
    """Which delivery a request is, as far as the provider tells us."""

    delivery_id: str
    event: str
    action: str = ""


class Provider:
    """A service that pushes webhooks; subclasses fill in the specifics."""

    service: ClassVar[str]
    name: ClassVar[str]  # as the provider writes it, for messages
    # The events we handle; anything else is acknowledged and ignored.
    events: ClassVar[frozenset[str]]
    # Events accepted whatever the webhook's ``events`` list says.
    always_accepted: ClassVar[frozenset[str]] = frozenset()
    headers: ClassVar[tuple[str, ...]] = ()

    def signature_valid(self, *, secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def claimed_identity(self, *, headers: Mapping[str, str]) -> Identity:
        """What an unverified request claims to be, for the log of rejected deliveries."""
        return Identity(delivery_id="", event="")

    def identify(self, *, headers: Mapping[str, str], payload: Mapping[str, Any]) -> Identity:
        raise NotImplementedError

    def process(self, *, webhook: Webhook, identity: Identity, payload: Mapping[str, Any]) -> str:
        """Apply a verified delivery; return why it was ignored, or "" when applied."""
        raise NotImplementedError

    def apply(self, *, webhook: Webhook, identity: Identity, payload: Mapping[str, Any]) -> str:
        """:meth:`process`, refusing with a ``ValidationError`` that says so a payload that lacks
        a field its event carries, or holds one of another type: the mappings read the
        provider's documented shape as it is, so a payload off it fails there."""
        try:
            return self.process(webhook=webhook, identity=identity, payload=payload)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
            raise ValidationError(f"The {identity.event} payload is not what {self.name} sends: {what}.") from exc

    def ignore_reason(self, *, webhook: Webhook, event: str) -> str:
        """Why a delivery of ``event`` is not processed, or "" when it is."""
        if event not in self.events:
            return f"unsupported event {event!r}"
        if webhook.events and event not in webhook.events and event not in self.always_accepted:
            return f"the webhook does not accept {event!r}"
        return ""

    def stored_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers worth keeping in the delivery log, bounded in size."""
        names = (*COMMON_HEADERS, *self.headers)
        return {name: _bounded(headers[name], HEADER_VALUE_LIMIT) for name in names if name in headers}


def _bounded(value: Any, limit: int = IDENTIFIER_LIMIT) -> str:
    """A caller-supplied string made safe to store: bounded, no NUL, no unpaired surrogates."""
    if not isinstance(value, str):
        return ""
    return value[:limit].replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _identifier(value: Any, name: str) -> str:
    """A delivery id or event name from a verified request, stored as is: so it must fit as is.

    Truncating an id could make two deliveries one; refusing it cannot.
    """
    if not isinstance(value, str) or not value or len(value) > IDENTIFIER_LIMIT or _bounded(value) != value:
        raise MalformedDelivery(f"{name} must be a string of 1 to {IDENTIFIER_LIMIT} characters.")
    return value


class GitHub(Provider):
    """GitHub repository and organization webhooks (content type application/json)."""

    service = Service.GITHUB
    name = "GitHub"
    events = frozenset({"ping", "pull_request", "repository"})
    always_accepted = frozenset({"ping"})
    headers = (
        "X-GitHub-Event",
        "X-GitHub-Delivery",
        "X-GitHub-Hook-ID",
        "X-GitHub-Hook-Installation-Target-ID",
        "X-GitHub-Hook-Installation-Target-Type",
    )

    def signature_valid(self, *, secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
        return signature_matches(github_signature(secret, body), headers.get("X-Hub-Signature-256"))

    def claimed_identity(self, *, headers: Mapping[str, str]) -> Identity:
        return Identity(
            delivery_id=_bounded(headers.get("X-GitHub-Delivery")), event=_bounded(headers.get("X-GitHub-Event"))
        )

    def identify(self, *, headers: Mapping[str, str], payload: Mapping[str, Any]) -> Identity:
        return Identity(
            delivery_id=_identifier(headers.get("X-GitHub-Delivery"), "The X-GitHub-Delivery header"),
            event=_identifier(headers.get("X-GitHub-Event"), "The X-GitHub-Event header"),
            action=_bounded(payload.get("action")),
        )

    def process(self, *, webhook: Webhook, identity: Identity, payload: Mapping[str, Any]) -> str:
        if identity.event == "ping":
            return ""
        if identity.event == "repository" and identity.action == "deleted":
            return "repository deletions are not mirrored: the repository and its history stay"
        integration = webhook.integration
        repository, applied = github.repository_apply(integration=integration, data=payload["repository"])
        if identity.event == "pull_request":
            _, applied = github.pull_request_apply(repository=repository, data=payload["pull_request"])
        return "" if applied else STALE


class Vercel(Provider):
    """Vercel account and integration webhooks."""

    service = Service.VERCEL
    name = "Vercel"
    events = frozenset(vercel.EVENT_STATES)

    def signature_valid(self, *, secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
        return signature_matches(vercel_signature(secret, body), headers.get("x-vercel-signature"))

    def identify(self, *, headers: Mapping[str, str], payload: Mapping[str, Any]) -> Identity:
        return Identity(
            delivery_id=_identifier(payload.get("id"), 'The event\'s "id"'),
            event=_identifier(payload.get("type"), 'The event\'s "type"'),
        )

    def process(self, *, webhook: Webhook, identity: Identity, payload: Mapping[str, Any]) -> str:
        created_at = payload.get("createdAt")
        if isinstance(created_at, bool) or not isinstance(created_at, int | float):
            raise ValidationError('"createdAt" must be the event time in milliseconds since the epoch.')
        _, applied = vercel.deployment_apply(
            integration=webhook.integration,
            event_type=identity.event,
            data=payload["payload"],
            at=datetime.fromtimestamp(created_at / 1000, tz=UTC),
        )
        return "" if applied else STALE


PROVIDERS: Mapping[str, Provider] = {provider.service: provider for provider in (GitHub(), Vercel())}
