"""Trigram indexes for the global search (the models' ``global_search``), built without locking writes."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("agents", "0005_history_triggers"),
        ("console", "0007_trigram_extension"),
    ]

    operations = [
        AddIndexConcurrently("agent", GinIndex(OpClass(Upper("name"), name="gin_trgm_ops"), name="agent_name_trgm")),
        AddIndexConcurrently("agent", GinIndex(OpClass(Upper("slug"), name="gin_trgm_ops"), name="agent_slug_trgm")),
        AddIndexConcurrently(
            "agenttask", GinIndex(OpClass(Upper("title"), name="gin_trgm_ops"), name="task_title_trgm")
        ),
    ]
