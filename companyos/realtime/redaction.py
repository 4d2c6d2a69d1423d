"""Keeps API tokens passed as ``?token=`` out of the server's logs.

uvicorn logs every request's path with its query string: the access log
(``uvicorn.access``) for HTTP, and ``uvicorn.error`` for websocket handshakes
(``"WebSocket /ws/events/?token=…" [accepted]``). :class:`RedactTokens` is
attached to both by ``RealtimeConfig.ready``, not through ``LOGGING``: a
logger configured there loses the handlers uvicorn gave it, which would also
undo ``--no-access-log``.
"""

from __future__ import annotations

import logging
import re

# The value of a `token` query parameter, wherever it appears in a line.
TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"']*")
REDACTED = r"\1[redacted]"
# The loggers that write request paths with their query strings.
REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact(value: object) -> object:
    return TOKEN_IN_QUERY.sub(REDACTED, value) if isinstance(value, str) else value


class RedactTokens(logging.Filter):
    """Replaces ``token=<value>`` in a record's message and arguments, keeping their shape for the formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) for arg in record.args)
        return True


def install() -> None:
    """Attach the filter to the loggers that log request paths (once)."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactTokens) for existing in logger.filters):
            logger.addFilter(RedactTokens())
