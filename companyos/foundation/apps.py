from django.apps import AppConfig


class FoundationConfig(AppConfig):
    """The platform layer every domain app builds on; it imports none of them."""

    name = "companyos.foundation"
    label = "foundation"
    verbose_name = "Foundation"

    def ready(self) -> None:
        from companyos.foundation import checks, crypto  # noqa: F401  (registers the start-up checks)

        # A missing or malformed FIELD_ENCRYPTION_KEYS stops the process here,
        # at start, not on the first read of an encrypted column.
        crypto.fernet()
