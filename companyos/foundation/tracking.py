"""Remember the database values of a few fields, to tell what a save changed.

Real-time events fire on state changes ("the deployment became ready"),
whichever code path saved the model. A ``post_save`` receiver only sees the
new values, so models that publish events mix in :class:`TrackedFieldsMixin`;
their ``state_events`` declaration (:class:`companyos.foundation.events.StateEvents`)
sets ``tracked_fields``. The values loaded from the database are kept,
compared in ``post_save`` through :meth:`TrackedFieldsMixin.tracked_changes`,
and refreshed once the save is done, so a second save with no change reports
nothing.

``QuerySet.update()`` and ``bulk_update()`` write without ``save()``: they
bypass this, so code changing states that way publishes with
:func:`companyos.foundation.events.publish_state_change` (``docs/realtime.md``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from django.db import router, transaction

_SNAPSHOT = "_tracked_loaded"


class TrackedFieldsMixin:
    """Keeps the last known database values of ``tracked_fields``.

    Put it before the model base: ``class Deployment(TrackedFieldsMixin, ExternalModel)``.
    A model's ``state_events`` declaration sets ``tracked_fields``.
    """

    tracked_fields: tuple[str, ...] = ()

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance.remember_tracked()
        return instance

    def remember_tracked(self, fields: Iterable[str] | None = None) -> None:
        """Take the current values of ``fields`` (default: all tracked) as the database's.

        Done after loading and saving; code that wrote the row without
        ``save()`` calls it so that a later save does not report that write again.
        """
        snapshot = self.__dict__.setdefault(_SNAPSHOT, {})
        for name in self.tracked_fields if fields is None else fields:
            if name not in self.tracked_fields:
                continue
            attname = self._meta.get_field(name).attname
            # Deferred fields are absent until loaded (refresh_from_db re-snapshots them).
            if attname in self.__dict__:
                # A copy: lists such as labels may be mutated in place afterwards.
                snapshot[name] = copy.copy(self.__dict__[attname])

    def _remember_unloaded(self, using: str) -> None:
        """Read the stored value of tracked fields assigned without being loaded (deferred ones)."""
        if self._state.adding:
            return
        snapshot = self.__dict__.setdefault(_SNAPSHOT, {})
        unloaded = [
            name
            for name in self.tracked_fields
            if name not in snapshot and self._meta.get_field(name).attname in self.__dict__
        ]
        if unloaded:
            stored = type(self)._base_manager.using(using).filter(pk=self.pk).values(*unloaded).first()
            snapshot.update(stored or {})

    def tracked_changes(self, update_fields: Iterable[str] | None = None) -> dict[str, Any]:
        """``{field: value in the database before}`` for the tracked fields now different.

        Empty for an object that was never loaded or saved. ``update_fields``
        (as given to ``save``) limits the answer to the fields actually written.
        """
        snapshot = self.__dict__.get(_SNAPSHOT)
        if not snapshot:
            return {}
        written = None if update_fields is None else set(update_fields)
        changes = {}
        for name, before in snapshot.items():
            if written is not None and name not in written:
                continue
            if getattr(self, self._meta.get_field(name).attname) != before:
                changes[name] = before
        return changes

    def save(self, *args, **kwargs) -> None:
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        # One transaction even in autocommit mode, so the event rows written by
        # post_save receivers commit together with the change (or not at all).
        with transaction.atomic(using=using, savepoint=False):
            self._remember_unloaded(using)
            super().save(*args, **kwargs)
        self.remember_tracked(kwargs.get("update_fields"))

    def refresh_from_db(self, *args, **kwargs) -> None:
        super().refresh_from_db(*args, **kwargs)
        self.remember_tracked(kwargs.get("fields"))
