"""Change history: which tables are tracked, and who/from where.

Every tracked table has one AFTER INSERT/UPDATE/DELETE row trigger calling
``console_record_change()`` (migration 0002), which writes a
``console.Change`` with the before/after values of the changed columns. The
triggers are (re)installed after every ``migrate`` by
:func:`install_triggers`, so tracking adds no migration to the domain apps.

Who and from where come from the context the application attaches to its
SQL through pghistory's runtime (``pghistory.context``: a transaction-local
setting sent with each write). Each change records:

- ``source``: ``admin`` (a staff request), ``web`` (another request),
  ``webhook`` (a provider's delivery), ``worker`` (an agent worker),
  ``shell`` (``manage.py shell``), ``command`` (another management command);
  empty when the change came from outside the application (``psql``, raw
  SQL from another client).
- ``user``: the user, when a person did it.

Requests get it from :class:`HistoryMiddleware`; workers, commands and the
shell wrap their work in :func:`history_source`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple

import pghistory.middleware
from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections
from django.urls import reverse

SOURCES = ("admin", "web", "webhook", "worker", "shell", "command")

# Never worth a history row on their own: they move on every save, login or API call.
IGNORED = ("updated_at", "last_login", "last_used_at")


class Tracking(NamedTuple):
    # Columns whose values history must not keep (a change is recorded as
    # "(hidden)"): a secret kept here would outlive a key rotation.
    hidden: tuple[str, ...] = ()
    # Columns that move with traffic, not decisions (counters, leases): a
    # change to them alone writes no history row.
    churn: tuple[str, ...] = ()


# Not tracked, on purpose:
# - analytics.Event and analytics.Metric: append-only logs, never updated, each
#   row is its own record; a trigger would double every write of the two
#   largest tables (measured in docs/admin.md).
# - integrations.WebhookDelivery: the delivery log is itself a history.
TRACKED: dict[str, Tracking] = {
    "core.user": Tracking(hidden=("password",)),
    "core.organization": Tracking(),
    "core.organizationmember": Tracking(),
    "core.apitoken": Tracking(hidden=("token_hash",)),
    "integrations.integration": Tracking(hidden=("credentials",)),
    "integrations.webhook": Tracking(
        hidden=("secret",),
        churn=("delivery_count", "failure_count", "last_delivery_at", "last_delivery_status"),
    ),
    "development.repository": Tracking(),
    "development.pullrequest": Tracking(),
    "development.deployment": Tracking(),
    "design.figmafile": Tracking(),
    "design.designcomponent": Tracking(),
    "social.socialaccount": Tracking(),
    "social.socialpost": Tracking(),
    "agents.agent": Tracking(
        churn=(
            "tasks_completed",
            "tasks_failed",
            "total_duration_ms",
            "success_rate",
            "avg_duration_ms",
            "last_active_at",
        ),
    ),
    # Lease renewals (every few seconds while a task runs) are not changes.
    "agents.agenttask": Tracking(churn=("lease_expires_at",)),
    "agents.agentcollaboration": Tracking(),
}

# Inserts and deletes always record; updates only when a column that matters
# changed, decided by the trigger's WHEN so churn never even calls the function.
WRITE_TRIGGER, UPDATE_TRIGGER = "console_change_write", "console_change_update"


def tracked_models() -> list:
    """The tracked models that exist in this project."""
    found = []
    for label in TRACKED:
        try:
            found.append(apps.get_model(label))
        except LookupError:
            continue
    return found


def install_triggers(*, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create or replace the history triggers on every tracked table that exists."""
    connection = connections[using]
    quote = connection.ops.quote_name
    existing = set(connection.introspection.table_names())
    installed = []
    with connection.cursor() as cursor:
        # After `migrate console zero` (or before console is migrated) there is
        # nothing to call: the tables stay untracked until it is migrated again.
        cursor.execute("SELECT to_regprocedure('console_record_change()')")
        if cursor.fetchone()[0] is None:
            return installed
        for model in tracked_models():
            table = model._meta.db_table
            if table not in existing:
                continue
            # The table's real columns: a partial migrate may lag the models.
            columns = [column.name for column in connection.introspection.get_table_description(cursor, table)]
            tracking = TRACKED[model._meta.label_lower]
            hidden = ",".join(column for column in tracking.hidden if column in columns)
            ignored = {*IGNORED, *tracking.churn}
            watched = [column for column in columns if column not in ignored]
            arguments = f"'{model._meta.label_lower}', '{hidden}', '{','.join(sorted(ignored & set(columns)))}'"
            changed = " OR ".join(f"OLD.{quote(column)} IS DISTINCT FROM NEW.{quote(column)}" for column in watched)
            cursor.execute(
                f"CREATE OR REPLACE TRIGGER {WRITE_TRIGGER} AFTER INSERT OR DELETE ON {quote(table)} "
                f"FOR EACH ROW EXECUTE FUNCTION console_record_change({arguments})"
            )
            cursor.execute(
                f"CREATE OR REPLACE TRIGGER {UPDATE_TRIGGER} AFTER UPDATE ON {quote(table)} "
                f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION console_record_change({arguments})"
            )
            installed.append(table)
    return installed


def install_triggers_after_migrate(sender, *, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    if sender.label == "console":
        install_triggers(using=using)


def history_prune(*, before: datetime, batch_size: int = 10_000) -> int:
    """Delete the history recorded before ``before``, in batches (short locks); returns the count."""
    from companyos.foundation.console.models import Change

    deleted = 0
    while True:
        batch = list(Change.objects.filter(at__lt=before).order_by("id").values_list("id", flat=True)[:batch_size])
        if not batch:
            return deleted
        deleted += Change.objects.filter(id__in=batch).delete()[0]


def history_source(source: str, **metadata: Any) -> AbstractContextManager:
    """Attribute every change made inside the block to ``source`` (and metadata)."""
    if source not in SOURCES:
        raise ValueError(f"Unknown history source {source!r}; one of {SOURCES}.")
    return pghistory.context(source=source, **metadata)


def source_of_path(path: str) -> str:
    """Which door a request came through, from its path (companyos/urls.py)."""
    if path.startswith(reverse("admin:index")):
        return "admin"
    if path.startswith("/webhooks/"):
        return "webhook"
    return "web"


class HistoryMiddleware(pghistory.middleware.HistoryMiddleware):
    """pghistory's middleware (user, url) plus where the change came from."""

    def get_context(self, request) -> dict[str, Any]:
        return {**super().get_context(request), "source": source_of_path(request.path)}
