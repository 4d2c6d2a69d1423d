"""The live console: what a page tells ``static/companyos/live.js`` to watch, and the version check of edits.

A page that is live renders a JSON configuration (``live_config``) that the
script reads; it opens ``/ws/events/`` with the admin session, subscribes to
the organizations the page is about, and:

- on the index and an organization's page, adds each event to the activity
  feed (rendered by the server first, so the page works without JavaScript);
- on the changelist of a model that declares events
  (``companyos.foundation.events.StateEvents``), updates a row's status badge
  to its newest event and counts the rows not shown yet ("3 new — show");
- on such a model's change page, warns when an event about the object arrives.

Those two pages carry when they were rendered (``renderedAt``): the events
stamped before it, which the server's gap repair also hands out, are on the
page already.

Everything is read from declarations: the events' organization model is the
target of ``EVENTS_MODEL.organization``, its members the many-to-many to the
user model, the badges the model's ``status_tones``. The platform imports no
domain app.

Edits are checked against the row's version (:func:`row_version`): a change
form carries the version it was rendered from, and a save of a row that
changed since is refused (:class:`VersionCheckedForm`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.urls import NoReverseMatch, reverse

from companyos.foundation.events import ALL_TOPICS, declaration_of, envelope_event, get_event_model
from companyos.foundation.ids import uuid7_floor

# The events an activity feed shows when the page opens.
FEED_LENGTH = 20
# The data keys that name an event's object, in order of preference (the same list is in live.js).
SUMMARY_KEYS = ("title", "project_name", "name", "handle", "url")
# The form field carrying the version a change form was rendered from.
VERSION_FIELD = "_cos_version"
# Stands for the object id in admin URL templates the script fills in.
_ANY_ID = uuid.UUID(int=0)


def organization_model() -> type[models.Model]:
    """The model events belong to (the target of the events' ``organization`` foreign key)."""
    return get_event_model()._meta.get_field("organization").related_model


def organizations_of(user) -> models.QuerySet:
    """The organizations ``user`` is a member of: those the websocket lets them watch."""
    model = organization_model()
    members = next(field for field in model._meta.many_to_many if field.related_model is get_user_model())
    return model.objects.filter(**{members.name: user}).order_by("pk")


def admin_url_templates(site: admin.AdminSite) -> dict[str, str]:
    """``app_label.model`` → its change page URL with ``{id}`` for the object id."""
    templates = {}
    for model in site._registry:
        meta = model._meta
        try:
            url = reverse(f"{site.name}:{meta.app_label}_{meta.model_name}_change", args=[_ANY_ID])
        except NoReverseMatch:  # a primary key that is no uuid
            continue
        templates[meta.label_lower] = url.replace(str(_ANY_ID), "{id}")
    return templates


def recent_events(organization_ids: list) -> list[dict[str, Any]]:
    """The newest events of these organizations, newest first, as the websocket sends them."""
    if not organization_ids:
        return []
    events = get_event_model().objects.filter(organization_id__in=organization_ids).order_by("-occurred_at")
    return [envelope_event(event) for event in events[:FEED_LENGTH]]


def summary(data: dict[str, Any]) -> str:
    """A few words naming an event's object, from its data (live.js names arriving events the same way)."""
    for key in SUMMARY_KEYS:
        if isinstance(data.get(key), str) and data[key]:
            return data[key][:80]
    return ""


def feed_context(site: admin.AdminSite, organization_ids: list) -> dict[str, Any]:
    """The context of a page with an activity feed of these organizations."""
    events = recent_events(organization_ids)
    templates = admin_url_templates(site)
    for event in events:
        template = templates.get(event["subject"]["type"])
        event["url"] = template.replace("{id}", event["subject"]["id"]) if template and event["subject"]["id"] else ""
        event["shown_at"] = event["occurred_at"][:19].replace("T", " ")
        event["summary"] = summary(event["data"])
    since: dict[str, str] = {}
    for event in events:  # newest first: the first of each organization is where its replay starts
        since.setdefault(event["organization"], event["id"])
    return {
        "live_feed": events,
        "live_config": {
            "mode": "feed",
            "organizations": [str(pk) for pk in organization_ids],
            "topics": [ALL_TOPICS],
            "since": since,
            "adminUrls": templates,
            "seen": [event["id"] for event in events],
        },
    }


def model_live_config(model: type[models.Model], user, *, object_id: str | None = None) -> dict[str, Any] | None:
    """What a changelist (or, with ``object_id``, a change page) of ``model`` watches; None if it has no events."""
    declaration = declaration_of(model)
    if declaration is None:
        return None
    field = model._meta.get_field(declaration.state_field)
    return {
        "mode": "change" if object_id else "changelist",
        "organizations": [str(pk) for pk in organizations_of(user).values_list("pk", flat=True)],
        "topics": [declaration.topic],
        "model": model._meta.label_lower,
        "verboseName": str(model._meta.verbose_name),
        "stateField": declaration.state_field,
        "labels": {str(value): str(label) for value, label in field.flatchoices},
        "tones": {str(value): tone for value, tone in getattr(model, "status_tones", {}).items()},
        "objectId": object_id,
        # Events stamped before this are already on the page (live.js).
        "renderedAt": str(uuid7_floor(time.time_ns() // 1_000_000)),
    }


def row_version(model: type[models.Model], pk: Any, *, lock: bool = False) -> str | None:
    """The row's version: PostgreSQL's ``xmin``, which every write of the row changes.

    Whatever path the write took (a save, ``QuerySet.update``, the queue's
    ``UPDATE … RETURNING``, raw SQL), so no column has to be kept up to date.
    ``lock`` holds the row until the transaction ends, so nothing changes it
    between the check and the save. None for a row that is gone.
    """
    meta = model._meta
    quote = connection.ops.quote_name
    sql = f"SELECT xmin::text FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql + (" FOR UPDATE" if lock else ""), [meta.pk.get_db_prep_value(pk, connection)])
        row = cursor.fetchone()
    return row[0] if row else None


class VersionCheckedForm:
    """A model form mixin refusing to save over a row changed since the form was rendered.

    The change page carries the version it showed (``VERSION_FIELD``); a
    submission whose version is no longer the row's is refused with a message
    instead of silently overwriting the other change. Forms posted without a
    version (scripts, other tools) are not checked.
    """

    def _post_clean(self):
        super()._post_clean()
        shown = self.data.get(VERSION_FIELD) if self.instance.pk and not self.instance._state.adding else None
        if not shown or self._errors:
            return
        if row_version(type(self.instance), self.instance.pk, lock=True) != shown:
            name = self.instance._meta.verbose_name
            self.add_error(
                None,
                ValidationError(
                    f"This {name} was changed by someone else after you opened this page, so your changes were "
                    "not saved. Reload the page to see the current values, then make your changes again.",
                    code="stale",
                ),
            )
