"""A library's records of expected failures (a lost connection, a provider down) are one line."""

from __future__ import annotations

import logging
import sys
import urllib.error

import psycopg
from procrastinate.exceptions import ConnectorException

from companyos.foundation.failures import ExpectedFailuresAsOneLine, TransientFailure


class ProviderDown(TransientFailure):
    pass


def _record(logger: str, level: int, message: str, error: BaseException, cause: BaseException | None = None):
    """The record a library logs with ``error`` (raised from ``cause``) as its exception."""
    try:
        raise error from cause
    except BaseException:
        return logging.LogRecord(logger, level, __file__, 1, message, ("job 7",), sys.exc_info())


def test_a_library_s_record_of_a_lost_connection_becomes_one_warning_line():
    lost = psycopg.OperationalError("consuming input failed: server closed the connection\nhost 2: refused")
    wrapper = ConnectorException("Database error.")
    record = _record("procrastinate.utils", logging.ERROR, "listener error: %s", wrapper, lost)

    assert ExpectedFailuresAsOneLine().filter(record)

    assert (record.levelname, record.exc_info, record.exc_text) == ("WARNING", None, None)
    assert record.getMessage() == "listener error: job 7 (consuming input failed: server closed the connection)"


def test_a_job_retried_after_a_transient_failure_is_one_line_with_that_failure_s_own_reason():
    """Its own words, not its cause's: "X could not be reached", not the socket's error."""
    unreachable = urllib.error.URLError("[Errno -2] Name or service not known")
    down = ProviderDown("X could not be reached: <urlopen error [Errno -2] Name or service not known>\nmore")
    record = _record("procrastinate.worker", logging.INFO, "%s ended with status: Error, to retry", down, unreachable)

    assert ExpectedFailuresAsOneLine().filter(record)

    assert (record.levelname, record.exc_info) == ("INFO", None)
    assert record.getMessage() == (
        "job 7 ended with status: Error, to retry "
        "(X could not be reached: <urlopen error [Errno -2] Name or service not known>)"
    )


def test_a_lower_level_stays_and_other_errors_and_loggers_keep_their_traceback():
    lost = psycopg.OperationalError("server closed the connection")
    info = _record("procrastinate.worker", logging.INFO, "%s ended with status: Error, to retry", lost)
    bug = _record("procrastinate.worker", logging.ERROR, "%s ended with status: Error", ZeroDivisionError("x"))
    deadlock = _record(
        "procrastinate.worker",
        logging.ERROR,
        "%s ended",
        ConnectorException("Database error."),
        psycopg.errors.DeadlockDetected("deadlock detected"),
    )
    ours = _record("agents.worker", logging.ERROR, "%s failed", lost)
    lookalike = _record("procrastinate_admin", logging.ERROR, "%s failed", ProviderDown("down"))
    one_line = ExpectedFailuresAsOneLine()

    for record in (info, bug, deadlock, ours, lookalike):
        assert one_line.filter(record)

    assert (info.levelname, info.exc_info) == ("INFO", None), "a retried job's line keeps its level"
    assert bug.levelname == "ERROR" and bug.exc_info[0] is ZeroDivisionError
    assert deadlock.levelname == "ERROR" and deadlock.exc_info is not None, "a deadlock keeps its traceback"
    assert ours.exc_info is not None and lookalike.exc_info is not None, "only the libraries named"


def test_the_console_handler_carries_the_filter():
    handlers = logging.getLogger().handlers
    assert any(isinstance(each, ExpectedFailuresAsOneLine) for handler in handlers for each in handler.filters)
