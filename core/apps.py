from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"
    description = "People and organizations"

    def ready(self) -> None:
        from companyos import checks, crypto  # noqa: F401  (registers the start-up checks)

        # A missing or malformed FIELD_ENCRYPTION_KEYS stops the process here,
        # at start, not on the first read of an encrypted column.
        crypto.fernet()
