"""Trigram indexes for the global search (the models' ``global_search``), built without locking writes."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("design", "0002_history_triggers"),
        ("console", "0007_trigram_extension"),
    ]

    operations = [
        AddIndexConcurrently(
            "designcomponent", GinIndex(OpClass(Upper("name"), name="gin_trgm_ops"), name="component_name_trgm")
        ),
        AddIndexConcurrently(
            "figmafile", GinIndex(OpClass(Upper("name"), name="gin_trgm_ops"), name="figma_name_trgm")
        ),
        AddIndexConcurrently(
            "figmafile", GinIndex(OpClass(Upper("file_key"), name="gin_trgm_ops"), name="figma_file_key_trgm")
        ),
    ]
