"""The change history of every domain model, written by PostgreSQL triggers.

One AFTER row trigger per tracked table (``companyos.foundation.console.history``)
calls ``console_record_change()``, which writes a :class:`Change`: which
object, insert/update/delete, the before and after values of the columns
that changed, when, and the context the application attached to the
transaction (who, from where). Because the database writes it, bulk
``update()``, raw SQL and ``psql`` sessions are recorded like ``save()``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models.functions import Now


class ChangeOperation(models.TextChoices):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


class Change(models.Model):
    """One row changed in a tracked table."""

    status_tones = {
        ChangeOperation.INSERT: "success",
        ChangeOperation.UPDATE: "warning",
        ChangeOperation.DELETE: "danger",
    }

    Operation = ChangeOperation

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(db_default=Now(), help_text="When the transaction that made the change began.")
    model = models.CharField(max_length=100, help_text="app_label.model of the changed row.")
    object_id = models.UUIDField()
    operation = models.CharField(max_length=8, choices=Operation)
    before = models.JSONField(
        null=True, blank=True, help_text="Old values of the changed columns (the whole row for a delete)."
    )
    after = models.JSONField(
        null=True, blank=True, help_text="New values of the changed columns (the whole row for an insert)."
    )
    # Denormalised from the context so the list filters and searches one table.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who made the change, when a person did.",
    )
    source = models.CharField(
        max_length=16, blank=True, help_text="admin, web, webhook, worker, shell, command; empty: outside the app."
    )
    context_id = models.UUIDField(null=True, blank=True, help_text="Groups the changes of one request or block.")
    context = models.JSONField(
        null=True, blank=True, help_text="Everything else the application attached (url, worker...)."
    )

    class Meta:
        ordering = ["-id"]
        indexes = [
            # An object's history page, newest first.
            models.Index(fields=["object_id", "-id"], name="change_object_idx"),
            # Every index costs each tracked write: the cross-object list filters
            # by model, source or user walking the primary key, newest first.
            # Retention deletes by age; append-only, so BRIN stays tiny.
            BrinIndex(fields=["at"], name="change_at_brin"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(operation__in=ChangeOperation.values), name="console_change_operation_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.model} {self.object_id}"

    @property
    def fields(self) -> list[tuple[str, object, object]]:
        """(column, before, after) for each column the change touched."""
        before, after = self.before or {}, self.after or {}
        return [(name, before.get(name), after.get(name)) for name in sorted({*before, *after})]


class ConsolePermissions(models.Model):
    """Holds the console's own permissions; no table."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("manage_secrets", "Can set integration credentials and rotate webhook secrets")]

    def __str__(self) -> str:
        return "console permissions"
