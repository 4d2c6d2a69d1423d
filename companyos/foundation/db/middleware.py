"""Read-your-writes across requests, by WAL position.

A GET or HEAD request may read from a replica (the router decides which,
and whether any); other methods write, so all of their reads stay on the
primary, and once they are done the primary's WAL position
(``pg_current_wal_lsn()``, taken after the request's transactions
committed) goes into a cookie. The next requests of that browser read from a
replica only if it has replayed that position, so a save in the admin
followed by its changelist shows the change.

The cookie needs no signature: a forged value only sends its own reader to
the primary, or lets it read a replica that has not caught up with what it
wrote. It lives as long as a replica may lag before it is skipped: after
that, every replica still in use has replayed the position anyway.
"""

from __future__ import annotations

import logging
import math
import re

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import DatabaseError

from companyos.foundation.db import replica_aliases
from companyos.foundation.db.replicas import format_lsn, parse_lsn
from companyos.foundation.db.router import primary_position, read_after, replica_reads

logger = logging.getLogger("companyos.db")

COOKIE_NAME = "companyos_wrote_lsn"
_LSN = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")
LAG_TOLERANT_METHODS = frozenset({"GET", "HEAD"})


class ReadYourWritesMiddleware:
    """Lets GET/HEAD read from replicas that replayed this browser's last write."""

    def __init__(self, get_response) -> None:
        if not replica_aliases():
            raise MiddlewareNotUsed
        self.get_response = get_response
        self.cookie_age = math.ceil(
            settings.DATABASE_REPLICA_MAX_LAG_SECONDS + settings.DATABASE_REPLICA_CHECK_SECONDS + 1
        )

    def __call__(self, request):
        cookie = request.COOKIES.get(COOKIE_NAME, "")
        wrote = parse_lsn(cookie) if _LSN.fullmatch(cookie) else 0
        lag_tolerant = request.method in LAG_TOLERANT_METHODS
        with replica_reads(lag_tolerant), read_after(wrote):
            response = self.get_response(request)
        if not lag_tolerant:
            try:
                position = primary_position()
            except DatabaseError as exc:
                # Without it, this browser's next reads may miss the request's
                # writes until the replicas catch up: say so.
                logger.warning(
                    "could not read the primary's WAL position after %s %s: %s", request.method, request.path, exc
                )
                return response
            response.set_cookie(
                COOKIE_NAME,
                format_lsn(position),
                max_age=self.cookie_age,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response
