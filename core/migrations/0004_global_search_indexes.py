"""Trigram indexes for the global search (the models' ``global_search``), built without locking writes."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("core", "0003_history_triggers"),
        ("console", "0007_trigram_extension"),
    ]

    operations = [
        AddIndexConcurrently(
            "organization", GinIndex(OpClass(Upper("name"), name="gin_trgm_ops"), name="core_org_name_trgm")
        ),
        AddIndexConcurrently(
            "user", GinIndex(OpClass(Upper("email"), name="gin_trgm_ops"), name="core_user_email_trgm")
        ),
        AddIndexConcurrently("user", GinIndex(OpClass(Upper("name"), name="gin_trgm_ops"), name="core_user_name_trgm")),
    ]
