"""Global search reads each model's declaration: whole-field lookups, trigram matches, the indexes serving both."""

import uuid

import pytest
from django.db import connection, models
from django.test.utils import CaptureQueriesContext, isolate_apps

from companyos.foundation.models import BaseModel
from companyos.foundation.search import Searchable, index_problems, matches, trigram_index


def gadget_class(*, indexed: bool) -> type[models.Model]:
    class Gadget(BaseModel):
        global_search = Searchable(exact=("id", "code"), text=("name",))
        code = models.CharField(max_length=20)
        name = models.CharField(max_length=50)

        class Meta:
            app_label = "foundation"
            indexes = [
                models.Index(fields=["code"], name="gadget_code_idx"),
                trigram_index("name", name="gadget_name_trgm"),
            ]
            if not indexed:
                indexes = []

        def __str__(self) -> str:
            return self.name

    return Gadget


@pytest.fixture
def gadgets(db):
    """A model no app knows, with its table and its indexes."""
    with isolate_apps("companyos.foundation"):
        model = gadget_class(indexed=True)
        with connection.schema_editor() as editor:
            editor.create_model(model)
        yield model


def test_a_declared_field_without_its_index_is_an_error():
    with isolate_apps("companyos.foundation"):
        unindexed = gadget_class(indexed=False)
    with isolate_apps("companyos.foundation"):
        indexed = gadget_class(indexed=True)

    problems = index_problems(unindexed, unindexed.global_search)

    assert [problem.id for problem in problems] == ["foundation.E101", "foundation.E102"]
    assert "'code'" in problems[0].msg and "'name'" in problems[1].msg
    assert index_problems(indexed, indexed.global_search) == []


def test_a_whole_field_match_is_the_answer_else_text_matches_sorted_by_name(gadgets):
    exact = gadgets.objects.create(code="zed-1", name="Zed")
    inside = [gadgets.objects.create(code=f"c{n}", name=f"{letter} zed-1 box") for n, letter in enumerate("BA")]

    with CaptureQueriesContext(connection) as captured:
        assert matches(gadgets, gadgets.global_search, "  zed-1 ", limit=10) == [exact]
    assert len(captured) == 1
    assert matches(gadgets, gadgets.global_search, "zed-", limit=10) == [inside[1], inside[0]]


def test_one_row_more_than_the_limit_says_there_are_more(gadgets):
    gadgets.objects.bulk_create([gadgets(code=f"c{n}", name=f"widget {n}") for n in range(5)])

    assert len(matches(gadgets, gadgets.global_search, "widget", limit=3)) == 4
    assert len(matches(gadgets, gadgets.global_search, "widget", limit=5)) == 5


def test_a_uuid_is_looked_up_by_id_alone(gadgets):
    gadget = gadgets.objects.create(code="c", name="g")

    with CaptureQueriesContext(connection) as captured:
        found = matches(gadgets, gadgets.global_search, str(gadget.pk), limit=10)

    assert found == [gadget]
    assert len(captured) == 1 and "LIKE" not in captured[0]["sql"]
    assert matches(gadgets, gadgets.global_search, str(uuid.uuid4()), limit=10) == []


def test_a_query_shorter_than_a_trigram_matches_whole_fields_only(gadgets):
    gadgets.objects.create(code="ab", name="xaby")

    with CaptureQueriesContext(connection) as captured:
        found = matches(gadgets, gadgets.global_search, "ab", limit=10)

    assert [gadget.code for gadget in found] == ["ab"]
    assert "LIKE" not in " ".join(query["sql"] for query in captured)


def test_wildcards_in_the_query_are_matched_literally(gadgets):
    gadgets.objects.create(code="c1", name="dpl_abc")
    gadgets.objects.create(code="c2", name="dplxabc")

    assert [gadget.name for gadget in matches(gadgets, gadgets.global_search, "dpl_a", limit=10)] == ["dpl_abc"]


def test_every_query_can_be_served_by_an_index_and_counts_nothing(gadgets):
    gadgets.objects.create(code="zed-1", name="Zed")

    with CaptureQueriesContext(connection) as captured:
        matches(gadgets, gadgets.global_search, "zed-1", limit=10)  # whole field
        matches(gadgets, gadgets.global_search, "zed-", limit=10)  # no whole field, then text

    assert len(captured) == 3
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for query in captured:
            assert "COUNT(" not in query["sql"] and "LIMIT 11" in query["sql"]
            cursor.execute(f"EXPLAIN {query['sql']}")
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    assert not any("Seq Scan" in plan for plan in plans), plans
    assert "gadget_code_idx" in plans[0] and "gadget_name_trgm" in plans[2]
