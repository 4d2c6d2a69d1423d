"""Every changelist runs the same number of queries for 5 rows as for 500."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from companyos.config.tests.admin.cases import CASES

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _queries(client, url) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return [query["sql"] for query in captured.captured_queries]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_changelist_query_count_does_not_grow_with_rows(case, rows, admin_client):
    case.make(rows, 5)
    _queries(admin_client, case.url())  # warm per-process caches (content types, site)
    few = _queries(admin_client, case.url())

    case.make(rows, 495)
    assert case.model._default_manager.count() >= 500
    many = _queries(admin_client, case.url())

    assert len(many) == len(few), "\n".join(many)
