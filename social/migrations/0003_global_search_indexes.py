"""Trigram indexes for the global search (the models' ``global_search``), built without locking writes."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("social", "0002_history_triggers"),
        ("console", "0007_trigram_extension"),
    ]

    operations = [
        AddIndexConcurrently(
            "socialaccount", GinIndex(OpClass(Upper("handle"), name="gin_trgm_ops"), name="account_handle_trgm")
        ),
        AddIndexConcurrently(
            "socialaccount", GinIndex(OpClass(Upper("display_name"), name="gin_trgm_ops"), name="account_display_trgm")
        ),
        AddIndexConcurrently(
            "socialaccount", GinIndex(OpClass(Upper("external_id"), name="gin_trgm_ops"), name="account_external_trgm")
        ),
        AddIndexConcurrently("socialpost", GinIndex(OpClass(Upper("url"), name="gin_trgm_ops"), name="post_url_trgm")),
    ]
