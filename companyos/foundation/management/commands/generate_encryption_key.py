"""Print a new Fernet key for FIELD_ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand

from companyos.foundation import crypto


class Command(BaseCommand):
    help = (
        "Print a new key for FIELD_ENCRYPTION_KEYS. To rotate: put it first in the list, keep the old "
        "keys after it, deploy, run `manage.py rotate_encryption_keys`, then drop the old keys."
    )
    # Generating a key touches no data: it must work even while the key check fails.
    requires_system_checks: list[str] = []

    def handle(self, *args, **options) -> None:
        self.stdout.write(crypto.generate_key())
