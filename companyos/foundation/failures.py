"""Failures expected in operation, and the one line a log gives each.

A lost database connection (a failover, a restarted server) and a provider
that does not answer or asks us to slow down are not bugs: the work that met
one retries it. Our workers log such a failure as one line; Procrastinate
logs every job that ended on one with its whole traceback, per attempt, and
would bury the lines that matter. :class:`ExpectedFailuresAsOneLine` makes
its records one line too.
"""

from __future__ import annotations

import logging

from companyos.foundation.db import connection_lost, error_summary


class TransientFailure(Exception):
    """A failure expected to pass by itself (a provider unreachable, rate limited): the job that
    met it retries it. An app's error of that kind subclasses this one; ``str()`` says what happened."""


def expected_failure(error: BaseException) -> bool:
    """Whether ``error`` is a failure met in operation rather than a bug: a lost connection or a
    :class:`TransientFailure`."""
    return isinstance(error, TransientFailure) or connection_lost(error)


class ExpectedFailuresAsOneLine(logging.Filter):
    """A library's record of an expected failure, as one line (a warning at most) with the error's
    first line.

    Set on the console handler for the ``loggers`` named (and their children);
    a record of any other error keeps its level and traceback.
    """

    def __init__(self, loggers: tuple[str, ...] = ("procrastinate",)) -> None:
        super().__init__()
        self._loggers = loggers

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        from_library = any(record.name == name or record.name.startswith(f"{name}.") for name in self._loggers)
        if from_library and error is not None and expected_failure(error):
            record.msg, record.args = f"{record.getMessage()} ({error_summary(error)})", ()
            record.exc_info = record.exc_text = None
            level = min(record.levelno, logging.WARNING)
            record.levelno, record.levelname = level, logging.getLevelName(level)
        return True
