from django.apps import AppConfig


class FoundationConfig(AppConfig):
    """The platform layer every domain app builds on; it imports none of them."""

    name = "companyos.foundation"
    label = "foundation"
    verbose_name = "Foundation"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from companyos.foundation import checks, crypto, events, search  # noqa: F401  (checks and search register checks)

        # Every model that declares `state_events` publishes from its saves.
        post_save.connect(events.publish_saved, dispatch_uid="foundation.events.publish_saved")

        # A missing or malformed FIELD_ENCRYPTION_KEYS stops the process here,
        # at start, not on the first read of an encrypted column.
        crypto.fernet()
