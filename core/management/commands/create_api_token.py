"""``manage.py create_api_token <email>``: create an API token and print it, once."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.models import User
from core.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print it (it is stored only as a hash: copy it now)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email", help="The user's email address.")
        parser.add_argument("--name", default="command line", help="What the token is for.")
        parser.add_argument("--expires-in-days", type=int, default=None, help="Expire after N days (default: never).")

    def handle(self, *args, email: str, name: str, expires_in_days: int | None, **options) -> None:
        try:
            user = User.objects.get_by_natural_key(email)
        except User.DoesNotExist:
            raise CommandError(f"No user with email {email!r}.") from None
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        expires_at = timezone.now() + dt.timedelta(days=expires_in_days) if expires_in_days else None
        try:
            token, raw = api_token_create(user=user, name=name, expires_at=expires_at)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        # The token alone on stdout, so that `TOKEN=$(manage.py create_api_token …)` works.
        self.stdout.write(raw)
        expiry = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never expires"
        self.stderr.write(f"Token {token.prefix}… for {user.email} ({expiry}). It will not be shown again.")
