"""Change history: which tables are tracked, and who/from where.

A model is tracked by declaring it in its ``Meta``::

    class Meta(BaseModel.Meta):
        triggers = tracked(hidden=("secret",), churn=("delivery_count",))

:func:`tracked` returns two django-pgtrigger triggers, so ``makemigrations``
writes them into the model's app like any other schema change: an AFTER
INSERT OR DELETE trigger and an AFTER UPDATE trigger whose WHEN lists the
columns that matter, so churn never even calls the function. Both call
``console_record_change()`` (console migration 0006), which writes a
``console.Change`` with the before/after values of the changed columns.

Who and from where come from the context the application attaches to its
writes (:func:`change_context`: a transaction-local setting sent with each
INSERT, UPDATE or DELETE). Each change records:

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

import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import pgtrigger
import pgtrigger.compiler
import psycopg.pq
from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Model
from django.urls import reverse

SOURCES = ("admin", "web", "webhook", "worker", "shell", "command")

# Never worth a history row on their own: they move on every save, login or API call.
IGNORED = ("updated_at", "last_login", "last_used_at")

# Not tracked, on purpose:
# - analytics.Event and analytics.Metric: append-only logs, never updated, each
#   row is its own record; a trigger would double every write of the two
#   largest tables (measured in docs/admin.md).
# - integrations.WebhookDelivery: the delivery log is itself a history.


class RecordChangeSql(pgtrigger.compiler.UpsertTriggerSql):
    """A trigger executing the shared ``console_record_change()`` itself.

    pgtrigger's own template also creates a function per trigger (the body
    that trigger would run); these triggers all run the one function of
    console migration 0006, so that part is left out. Migrations keep
    instances of this class: the template may only change compatibly.
    """

    def get_template(self) -> str:
        return """
            DROP TRIGGER IF EXISTS {pgid} ON {table};
            CREATE TRIGGER {pgid} {when} {operation} ON {table}
                FOR EACH {level} {condition} EXECUTE FUNCTION {execute};
            COMMENT ON TRIGGER {pgid} ON {table} IS '{hash}';
        """

    def get_defaults(self, pgid: str) -> dict[str, str]:
        return {**super().get_defaults(pgid), "func": ""}

    def __init__(self, *, func: str = "", **kwargs: Any) -> None:
        super().__init__(func=func, **kwargs)


class RecordChange(pgtrigger.Trigger):
    """One of the two history triggers :func:`tracked` declares on a model."""

    when = pgtrigger.After

    def __init__(self, *, name: str, operation: pgtrigger.Operation, hidden: Iterable[str], churn: Iterable[str]):
        self.hidden, self.churn = tuple(hidden), tuple(churn)
        super().__init__(name=name, operation=operation)

    def ignored_fields(self, model: type[Model]) -> list[str]:
        """The model's fields whose changes alone are not worth a record."""
        names = {field.name for field in model._meta.concrete_fields}
        return [*(name for name in IGNORED if name in names), *self.churn]

    def get_condition(self, model: type[Model]) -> pgtrigger.Condition | None:
        # Written out rather than pgtrigger.AnyChange, whose lookups the
        # encrypted fields do not offer.
        if self.operation != pgtrigger.Update:
            return None
        ignored = set(self.ignored_fields(model))
        watched = [field.column for field in model._meta.concrete_fields if field.name not in ignored]
        return pgtrigger.Condition(" OR ".join(f'OLD."{column}" IS DISTINCT FROM NEW."{column}"' for column in watched))

    def render_execute(self, model: type[Model]) -> str:
        def columns(names: Iterable[str]) -> str:
            return ",".join(sorted(model._meta.get_field(name).column for name in names))

        arguments = (model._meta.label_lower, columns(self.hidden), columns(self.ignored_fields(model)))
        return "console_record_change({})".format(", ".join(f"'{argument}'" for argument in arguments))

    def compile(self, model: type[Model]) -> pgtrigger.compiler.Trigger:
        return pgtrigger.compiler.Trigger(
            name=self.name,
            sql=RecordChangeSql(
                pgid=self.get_pgid(model),
                table=model._meta.db_table,
                when=self.when,
                operation=self.operation,
                condition=self.render_condition(model),
                execute=self.render_execute(model),
            ),
        )


def tracked(*, hidden: Iterable[str] = (), churn: Iterable[str] = ()) -> list[RecordChange]:
    """The ``Meta.triggers`` that record every change of a model in history.

    ``hidden``: fields whose values history must not keep (a change is
    recorded as "(hidden)"): a secret kept there would outlive a key
    rotation. ``churn``: fields that move with traffic, not decisions
    (counters, leases): a change to them alone writes no history row;
    :data:`IGNORED` fields never do. Inserts and deletes always record.
    """
    hidden, churn = tuple(hidden), tuple(churn)
    return [
        RecordChange(name="change_write", operation=pgtrigger.Insert | pgtrigger.Delete, hidden=hidden, churn=churn),
        RecordChange(name="change_update", operation=pgtrigger.Update, hidden=hidden, churn=churn),
    ]


def history_triggers(model: type[Model]) -> list[RecordChange]:
    """The history triggers a model declares (none: it is not tracked)."""
    return [trigger for trigger in getattr(model._meta, "triggers", ()) if isinstance(trigger, RecordChange)]


def tracked_models() -> list[type[Model]]:
    """Every installed model that declares :func:`tracked` triggers."""
    return [model for model in apps.get_models() if history_triggers(model)]


def history_prune(*, before: datetime, batch_size: int = 10_000) -> int:
    """Delete the history recorded before ``before``, in batches (short locks); returns the count."""
    from companyos.foundation.batches import delete_in_batches
    from companyos.foundation.console.models import Change

    return delete_in_batches(Change.objects.filter(at__lt=before), batch_size)


# The transaction-local setting console_record_change() reads the context from.
CONTEXT_SETTING = "companyos.change_context"
# Only these can change a tracked row; the rest (reads, savepoints, DDL) is sent as is.
WRITE_STATEMENTS = ("insert", "update", "delete", "with", "merge")
# A request with another method changes nothing, so it gets no context (and no user lookup).
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

# The current context, and its JSON as sent (serialised once per block, not per statement).
_current_context: ContextVar[tuple[dict[str, Any], str] | None] = ContextVar("change_context", default=None)


def _send_context(execute, sql, params, many, context):
    """Send the current context with each write, as a transaction-local setting (execute wrapper)."""
    text = sql.decode() if isinstance(sql, bytes) else sql
    if not text.lstrip()[:6].lower().startswith(WRITE_STATEMENTS):
        return execute(sql, params, many, context)
    _, value = _current_context.get()
    cursor = context["cursor"]
    if many:
        # executemany() prepares its statement, which cannot hold two: the
        # setting goes first, in a transaction around both.
        with transaction.atomic(using=context["connection"].alias):
            cursor.execute(f"SELECT set_config('{CONTEXT_SETTING}', %s, true)", [value])
            return execute(sql, params, many, context)
    # Otherwise one round trip: the setting prefixed to the statement, with a
    # parameter in the style the statement uses.
    if isinstance(params, dict):
        placeholder, params = "%(change_context)s", {**params, "change_context": value}
    else:
        if params is None:  # the statement was not interpolated: its % signs are literal
            text = text.replace("%", "%%")
        placeholder, params = "%s", (value, *(params or ()))
    result = execute(f"SELECT set_config('{CONTEXT_SETTING}', {placeholder}, true); {text}", params, many, context)
    # The cursor's result (rows, rowcount) must be the write's, not set_config()'s.
    while cursor.nextset():
        pass
    return result


@contextmanager
def change_context(*, source: str = "", user: Any = None, **metadata: Any) -> Iterator[None]:
    """Attach source, user and metadata to every write made inside the block.

    Nested blocks belong to the outer one (same context id): they replace
    its source and user when they give one, and add to its metadata.
    """
    outer_context = _current_context.get()
    outer = None if outer_context is None else outer_context[0]
    if outer is None:
        current = {"id": uuid.uuid4(), "source": source, "user": user, "metadata": metadata}
    else:
        current = {
            "id": outer["id"],
            "source": source or outer["source"],
            "user": user or outer["user"],
            "metadata": {**outer["metadata"], **metadata},
        }
    token = _current_context.set((current, json.dumps(current, cls=DjangoJSONEncoder)))
    try:
        if outer is None:
            with connection.execute_wrapper(_send_context):
                yield
        else:
            yield
    finally:
        _current_context.reset(token)
        if outer is None:
            _forget_sent_context()


def _forget_sent_context() -> None:
    """Unset the setting in a transaction that outlives the block: its later writes are not the block's."""
    if not connection.in_atomic_block or connection.needs_rollback:
        return
    if connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
        return  # it can only roll back
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, '', true)", [CONTEXT_SETTING])


def history_source(source: str, **metadata: Any):
    """Attribute every change made inside the block (or decorated function) to ``source`` and metadata."""
    if source not in SOURCES:
        raise ValueError(f"Unknown history source {source!r}; one of {SOURCES}.")
    return change_context(source=source, **metadata)


def source_of_path(path: str) -> str:
    """Which door a request came through, from its path (companyos/config/urls.py)."""
    if path.startswith(reverse("admin:index")):
        return "admin"
    if path.startswith("/webhooks/"):
        return "webhook"
    return "web"


class HistoryMiddleware:
    """Attributes the changes of a write request to its user, URL and source."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method not in WRITE_METHODS:
            return self.get_response(request)
        user = getattr(request, "user", None)
        with change_context(
            source=source_of_path(request.path),
            user=user.pk if user is not None and user.is_authenticated else None,
            url=request.path,
        ):
            return self.get_response(request)
