"""Telling a lost connection from other database errors, and logging it as one line."""

from __future__ import annotations

import logging
import sys

import psycopg
from django.db import OperationalError
from procrastinate.exceptions import ConnectorException

from companyos.foundation.db import LostConnectionsAsOneLine, connection_lost


def _record(logger: str, level: int, message: str, error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        return logging.LogRecord(logger, level, __file__, 1, message, ("job 7",), sys.exc_info())


def _wrapped(error: psycopg.Error) -> ConnectorException:
    wrapper = ConnectorException("\n    Database error.\n    ")
    wrapper.__cause__ = error
    return wrapper


def _django(error: psycopg.Error) -> OperationalError:
    wrapper = OperationalError(str(error))
    wrapper.__cause__ = error
    return wrapper


def test_a_lost_connection_is_told_from_other_errors_also_inside_a_library_s_wrapper():
    assert connection_lost(psycopg.OperationalError("consuming input failed: server closed the connection"))
    assert connection_lost(OperationalError("the connection is closed"))
    assert connection_lost(_wrapped(psycopg.OperationalError("connection failed: session is read-only")))
    assert connection_lost(_django(psycopg.errors.AdminShutdown("terminating connection due to administrator command")))
    assert connection_lost(psycopg.errors.CrashShutdown("terminating connection because of crash of another server"))
    assert not connection_lost(_wrapped(psycopg.errors.RaiseException("Job was not found")))
    assert not connection_lost(ValueError("a bug"))


def test_an_error_of_the_work_itself_of_a_connection_error_type_is_not_a_lost_connection():
    """A deadlock and a statement timeout are OperationalErrors too, with SQLSTATEs of their own."""
    assert not connection_lost(_django(psycopg.errors.DeadlockDetected("deadlock detected")))
    assert not connection_lost(psycopg.errors.QueryCanceled("canceling statement due to statement timeout"))
    assert not connection_lost(_wrapped(psycopg.errors.DeadlockDetected("deadlock detected")))


def test_a_library_s_record_of_a_lost_connection_becomes_one_warning_line():
    lost = _wrapped(psycopg.OperationalError("consuming input failed: server closed the connection\nhost 2: refused"))
    record = _record("procrastinate.utils", logging.ERROR, "listener error: %s", lost)

    assert LostConnectionsAsOneLine().filter(record)

    assert (record.levelname, record.exc_info, record.exc_text) == ("WARNING", None, None)
    assert record.getMessage() == "listener error: job 7 (consuming input failed: server closed the connection)"


def test_a_lower_level_stays_and_other_errors_and_loggers_keep_their_traceback():
    lost = psycopg.OperationalError("server closed the connection")
    info = _record("procrastinate.worker", logging.INFO, "%s ended with status: Error, to retry", lost)
    bug = _record("procrastinate.worker", logging.ERROR, "%s ended with status: Error", ZeroDivisionError("x"))
    deadlock = _record(
        "procrastinate.worker", logging.ERROR, "%s ended", _django(psycopg.errors.DeadlockDetected("deadlock detected"))
    )
    ours = _record("agents.worker", logging.ERROR, "%s failed", lost)
    lookalike = _record("procrastinate_admin", logging.ERROR, "%s failed", lost)
    one_line = LostConnectionsAsOneLine()

    for record in (info, bug, deadlock, ours, lookalike):
        assert one_line.filter(record)

    assert (info.levelname, info.exc_info) == ("INFO", None), "a retried job's line keeps its level"
    assert bug.levelname == "ERROR" and bug.exc_info[0] is ZeroDivisionError
    assert deadlock.levelname == "ERROR" and deadlock.exc_info is not None, "a deadlock keeps its traceback"
    assert ours.exc_info is not None and lookalike.exc_info is not None, "only the libraries named"


def test_the_console_handler_carries_the_filter():
    handlers = logging.getLogger().handlers
    assert any(isinstance(each, LostConnectionsAsOneLine) for handler in handlers for each in handler.filters)
