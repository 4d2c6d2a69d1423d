"""delete_in_batches: what it deletes, and in how many statements."""

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from companyos.foundation.batches import delete_in_batches
from companyos.foundation.console.models import Change

pytestmark = pytest.mark.django_db


def changes(count: int, at: dt.datetime) -> list[int]:
    rows = [Change(at=at, model="core.organization", object_id=uuid.uuid4(), operation="insert") for _ in range(count)]
    return [change.pk for change in Change.objects.bulk_create(rows)]


def test_deletes_the_queryset_a_batch_per_statement():
    now = timezone.now()
    old = changes(5, now - dt.timedelta(days=400))
    recent = changes(2, now)

    with CaptureQueriesContext(connection) as queries:
        deleted = delete_in_batches(Change.objects.filter(pk__in=old + recent, at__lt=now - dt.timedelta(days=1)), 2)

    assert deleted == 5
    assert set(Change.objects.filter(pk__in=old + recent).values_list("pk", flat=True)) == set(recent)
    # 2 + 2 + 1: the short batch says there is nothing left.
    assert sum(query["sql"].startswith("DELETE") for query in queries.captured_queries) == 3


def test_nothing_to_delete_is_one_statement():
    with CaptureQueriesContext(connection) as queries:
        assert delete_in_batches(Change.objects.filter(pk=-1), 100) == 0

    assert sum(query["sql"].startswith("DELETE") for query in queries.captured_queries) == 1


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="positive"):
        delete_in_batches(Change.objects.all(), 0)
