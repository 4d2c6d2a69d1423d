"""Trigram indexes for the global search (the models' ``global_search``), built without locking writes."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("integrations", "0003_history_triggers"),
        ("console", "0007_trigram_extension"),
    ]

    operations = [
        AddIndexConcurrently(
            "integration", GinIndex(OpClass(Upper("name"), name="gin_trgm_ops"), name="int_name_trgm")
        ),
        AddIndexConcurrently(
            "integration", GinIndex(OpClass(Upper("external_account_id"), name="gin_trgm_ops"), name="int_account_trgm")
        ),
        AddIndexConcurrently(
            "webhook", GinIndex(OpClass(Upper("name"), name="gin_trgm_ops"), name="webhook_name_trgm")
        ),
    ]
