"""Parse the moments and ages the analytics commands take on the command line."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.core.management import CommandError
from django.utils import timezone

_AGE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_age(value: str) -> timedelta:
    """``90d``, ``2h``, ``30m`` or ``45s``."""
    if match := _AGE.match(value):
        return timedelta(**{_UNITS[match[2]]: int(match[1])})
    raise CommandError(f"{value!r} is not an age like 90d, 2h, 30m or 45s")


def parse_moment(value: str) -> datetime:
    """An age before now (``2h``) or a timezone-aware ISO 8601 timestamp."""
    if _AGE.match(value):
        return timezone.now() - parse_age(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is neither an age like 2h nor an ISO 8601 timestamp") from None
    if moment.utcoffset() is None:
        raise CommandError(f"{value!r} has no timezone offset")
    return moment
