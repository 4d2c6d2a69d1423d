"""Schema-wide guarantees: every constraint is tested, indexes are many and none redundant."""

from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection, models

OUR_APPS = ("core", "integrations", "development", "design", "social", "agents", "analytics")

# The 17 models of the original data model; models added later test their own constraints.
SCHEMA_MODELS = (
    "core.User", "core.Organization", "core.OrganizationMember",
    "integrations.Integration", "integrations.Webhook",
    "development.Repository", "development.PullRequest", "development.Deployment",
    "design.FigmaFile", "design.DesignComponent",
    "social.SocialAccount", "social.SocialPost",
    "agents.Agent", "agents.AgentTask", "agents.AgentCollaboration",
    "analytics.Event", "analytics.Metric",
)  # fmt: skip


def test_every_constraint_of_the_schema_models_has_a_rejection_test():
    """Each constraint name must appear in a model test (where `violates(name)` proves it)."""
    paths = [path for app in OUR_APPS for path in (Path(settings.BASE_DIR) / app / "tests").glob("test_models*.py")]
    tests = "\n".join(path.read_text() for path in paths)
    names = {
        constraint.name
        for label in SCHEMA_MODELS
        for constraint in apps.get_model(label)._meta.constraints
        if isinstance(constraint, models.UniqueConstraint | models.CheckConstraint)
    }
    assert len(names) >= 40
    assert sorted(name for name in names if f'"{name}"' not in tests) == []


INDEXES_SQL = """
    SELECT c.relname, ic.relname, am.amname, i.indisunique, i.indisprimary,
           i.indpred IS NOT NULL, i.indexprs IS NOT NULL, i.indkey::int2[]
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND split_part(c.relname, '_', 1) = ANY(%s)
"""


@pytest.fixture
def indexes(db):
    with connection.cursor() as cursor:
        cursor.execute(INDEXES_SQL, [list(OUR_APPS)])
        columns = ("table", "name", "method", "unique", "primary", "partial", "expression", "keys")
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def test_at_least_fifty_named_indexes(indexes):
    """Indexes and unique constraints are named in Meta (each with the query it serves)."""
    declared = {
        index.name
        for model in apps.get_models()
        if model._meta.app_label in OUR_APPS
        for index in [*model._meta.indexes, *model._meta.constraints]
        if not isinstance(index, models.CheckConstraint)
    }
    in_database = {index["name"] for index in indexes}
    assert declared - in_database == set()
    assert len(declared) >= 50, sorted(declared)
    # Partial, BRIN and GIN indexes are where PostgreSQL earns its keep here.
    assert sum(index["partial"] for index in indexes) >= 15
    assert {"brin", "gin"} <= {index["method"] for index in indexes}


def test_no_plain_btree_index_is_a_prefix_of_another(indexes):
    """A non-unique, non-partial B-tree whose columns lead another such index is dead weight."""
    # Django's auto-created many-to-many tables (user groups, permissions) are not ours to tune.
    ours = {m._meta.db_table for m in apps.get_models() if m._meta.app_label in OUR_APPS}
    plain = [
        i for i in indexes if i["table"] in ours and i["method"] == "btree" and not i["partial"] and not i["expression"]
    ]
    redundant = [
        (a["name"], b["name"])
        for a in plain
        if not a["unique"]
        for b in plain
        if b is not a and b["table"] == a["table"] and b["keys"][: len(a["keys"])] == a["keys"]
    ]
    assert redundant == []
