"""Trigram indexes for the global search (the models' ``global_search``), built without locking writes."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("development", "0003_history_triggers"),
        ("console", "0007_trigram_extension"),
    ]

    operations = [
        AddIndexConcurrently(
            "deployment", GinIndex(OpClass(Upper("external_id"), name="gin_trgm_ops"), name="deploy_external_id_trgm")
        ),
        AddIndexConcurrently(
            "deployment", GinIndex(OpClass(Upper("project_name"), name="gin_trgm_ops"), name="deploy_project_trgm")
        ),
        AddIndexConcurrently(
            "deployment", GinIndex(OpClass(Upper("url"), name="gin_trgm_ops"), name="deploy_url_trgm")
        ),
        AddIndexConcurrently(
            "deployment", GinIndex(OpClass(Upper("branch"), name="gin_trgm_ops"), name="deploy_branch_trgm")
        ),
        AddIndexConcurrently(
            "pullrequest", GinIndex(OpClass(Upper("title"), name="gin_trgm_ops"), name="pr_title_trgm")
        ),
        AddIndexConcurrently(
            "pullrequest", GinIndex(OpClass(Upper("head_branch"), name="gin_trgm_ops"), name="pr_head_branch_trgm")
        ),
        AddIndexConcurrently(
            "repository", GinIndex(OpClass(Upper("full_name"), name="gin_trgm_ops"), name="repo_full_name_trgm")
        ),
        AddIndexConcurrently("repository", GinIndex(OpClass(Upper("url"), name="gin_trgm_ops"), name="repo_url_trgm")),
    ]
