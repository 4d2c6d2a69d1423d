"""Helpers for model tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import IntegrityError, transaction


@contextmanager
def violates(constraint: str) -> Iterator[None]:
    """Expect the block to be refused by PostgreSQL because of ``constraint``.

    The block runs in a savepoint, so the test's transaction stays usable, and
    the error must name the constraint: a row refused for another reason (a
    NOT NULL, a different constraint) does not count.
    """
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        yield
    assert f'"{constraint}"' in str(excinfo.value), str(excinfo.value)
