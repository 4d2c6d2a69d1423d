"""Telling a lost connection from other database errors."""

from __future__ import annotations

import psycopg
from django.db import OperationalError
from procrastinate.exceptions import ConnectorException

from companyos.foundation.db import connection_lost


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
