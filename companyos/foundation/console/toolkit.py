"""Building blocks shared by every app's ``admin.py``.

ModelAdmins in CompanyOS are configuration: the rendering helpers (status
badges, links to related objects), the write-only secret form field, the base
ModelAdmin with read-only timestamps and the history page, and the helper that
runs an admin action through a service and reports what it did all live here,
once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from companyos.foundation.console.live import (
    VERSION_FIELD,
    VersionCheckedForm,
    feed_context,
    model_live_config,
    organization_model,
    row_version,
)
from companyos.foundation.fields import masked
from companyos.foundation.jsonbounds import BoundedJSONFormField


def tone(model: type[models.Model] | models.Model, value: str) -> str:
    """The badge tone a model declares for one of its values.

    A model declares ``status_tones = {value: "success" | "warning" |
    "danger"}`` for the values of its status-like fields; any value it leaves
    out, and every value of a model that declares none, is "neutral", so a new
    choice never breaks a page.
    """
    return getattr(model, "status_tones", {}).get(value, "neutral")


def badge(model: type[models.Model] | models.Model, value: str, label: str | None = None, *, field: str = "") -> str:
    """A coloured pill for a value, in its model's tone (CSS in static/companyos/admin.css).

    ``field`` names the field shown, so the live changelist (static/companyos/live.js) can update it.
    """
    pill = format_html('<span class="cos-badge cos-badge-{}">{}</span>', tone(model, value), label or value)
    return format_html('<span data-cos-field="{}">{}</span>', field, pill) if field else pill


def status_badge(field_name: str, *, description: str | None = None) -> Callable[[Any], str]:
    """A ``list_display`` column that shows a choices field as a badge."""

    @admin.display(description=description or field_name.replace("_", " "), ordering=field_name)
    def column(obj: Any) -> str:
        return badge(obj, getattr(obj, field_name), getattr(obj, f"get_{field_name}_display")(), field=field_name)

    column.__name__ = f"{field_name}_badge"
    return column


def change_url(obj: models.Model) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def changelist_url(model: type[models.Model], **filters: Any) -> str:
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def link(obj: models.Model | None, label: str | None = None) -> str:
    """A link to an object's change page, or an em dash for none."""
    if obj is None:
        return "—"
    return format_html('<a href="{}">{}</a>', change_url(obj), label or str(obj))


def fk_link(field_name: str, *, description: str | None = None) -> Callable[[Any], str]:
    """A ``list_display`` column linking to the object a foreign key points to.

    The ModelAdmin must name the field in ``list_select_related`` (checked by
    the query-count tests), so the column costs no query per row.
    """

    @admin.display(description=description or field_name.replace("_", " "), ordering=field_name)
    def column(obj: Any) -> str:
        return link(getattr(obj, field_name))

    column.__name__ = f"{field_name}_link"
    return column


def count_link(
    model: type[models.Model], filter_field: str, annotation: str, *, description: str
) -> Callable[[Any], str]:
    """A count column (from a queryset annotation) linking to the filtered list."""

    @admin.display(description=description, ordering=annotation)
    def column(obj: Any) -> str:
        value = getattr(obj, annotation)
        return format_html(
            '<a href="{}">{}</a>', changelist_url(model, **{f"{filter_field}__id__exact": obj.pk}), value
        )

    column.__name__ = f"{annotation}_link"
    return column


def subquery_count(model: type[models.Model], fk: str, **filters: Any) -> Coalesce:
    """Count the rows of ``model`` pointing at each row, as a correlated subquery.

    Unlike ``Count()`` over a join, several of these on one list do not
    multiply each other's rows, and each is one index lookup per row shown.
    """
    rows = model.objects.filter(**{fk: OuterRef("pk")}, **filters).order_by().values(fk)
    return Coalesce(Subquery(rows.annotate(total=Count("*")).values("total")), 0)


class WriteOnlyWidget(forms.PasswordInput):
    """Never renders the stored value; shows a masked hint as placeholder."""

    def __init__(self, attrs: dict | None = None):
        super().__init__(attrs={"autocomplete": "new-password", **(attrs or {})}, render_value=False)

    def get_context(self, name, value, attrs):
        context = super().get_context(name, None, attrs)
        context["widget"]["attrs"].setdefault(
            "placeholder", (f"{masked(str(value))} set — type to replace" if value else "not set — type to set")
        )
        return context


class WriteOnlyField(forms.CharField):
    """A secret entered in the admin and never shown back.

    Empty on display and optional: leaving it empty keeps the stored value
    (``has_changed`` is false), typing a value replaces it. ``parse`` turns
    the typed text into the stored value (e.g. JSON for credentials).
    """

    widget = WriteOnlyWidget

    def __init__(self, *, parse: Callable[[str], Any] = str, **kwargs: Any):
        self.parse = parse
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        super().__init__(**kwargs)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool(data)

    def clean(self, value: Any) -> Any:
        value = super().clean(value)
        if not value:
            return value
        try:
            return self.parse(value)
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"Could not read the value: {exc}") from exc


def run_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[models.Model],
    service: Callable[[models.Model], Any],
    *,
    verb: str,
) -> int:
    """Call ``service`` once per object, each in its own transaction.

    One bad object (a task in the wrong state) must not undo the others, so
    each call is atomic on its own; what succeeded and what was refused (the
    service's ValidationError) are both reported. Returns the success count.
    """
    done, refused = 0, []
    for obj in objects:
        try:
            with transaction.atomic():
                service(obj)
        except ValidationError as exc:
            refused.append(f"{obj}: {' '.join(exc.messages)}")
        else:
            done += 1
    if done:
        name = modeladmin.model._meta.verbose_name if done == 1 else modeladmin.model._meta.verbose_name_plural
        modeladmin.message_user(request, f"{verb} {done} {name}.", messages.SUCCESS)
    for message in refused:
        modeladmin.message_user(request, f"Not {verb.lower()}: {message}", messages.WARNING)
    return done


def action_form(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: models.QuerySet,
    form_class: type[forms.Form],
    *,
    title: str,
    apply: Callable[[dict[str, Any]], Any],
) -> TemplateResponse | None:
    """An action that first asks for input (a rejection reason, a time).

    The first call renders the form with the selected objects; the form posts
    back to the same action with ``apply`` set, and a valid form runs
    ``apply(cleaned_data)``; unless that returns a response of its own, the
    user goes back to the list.
    """
    form = form_class(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        result = apply(form.cleaned_data)
        return result if isinstance(result, TemplateResponse) else None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "objects": queryset,
        "opts": modeladmin.model._meta,
        "action": request.POST.get("action"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/companyos/action_form.html", context)


def name_every_input(fields: dict[str, forms.Field]) -> None:
    """Give each input its field's label as accessible name, where the admin leaves it without one.

    A tabular inline names its inputs only by column headings, and a split
    date-time field's label reaches its first input only; screen readers
    (and the axe audit of the browser tests) need a name on each.
    """
    for name, field in fields.items():
        label = str(field.label or name)
        widget = getattr(field.widget, "widget", field.widget)  # inside a related-object wrapper
        if isinstance(widget, forms.MultiWidget):
            for part, subwidget in zip(("date", "time", *range(2, 9)), widget.widgets, strict=False):
                subwidget.attrs.setdefault("aria-label", f"{label} ({part})")
        else:
            widget.attrs.setdefault("aria-label", label)


class ConstraintsCheckedForm(forms.ModelForm):
    """A model form that checks every constraint of the model before saving, not only its own fields'.

    Django skips a constraint naming a field the form leaves out (a task's
    read-only status), and the database's IntegrityError is then a 500; here
    it is a form error instead. Errors on fields the form lacks are shown
    above the form.
    """

    def _post_clean(self):
        super()._post_clean()
        if self._errors:
            return
        try:
            self.instance.validate_constraints()
        except ValidationError as exc:
            for field, errors in exc.error_dict.items():
                self.add_error(field if field in self.fields else None, errors)


class ModelAdmin(admin.ModelAdmin):
    """The base of every CompanyOS ModelAdmin.

    Timestamps are read-only everywhere, lists are paginated in pages staff
    can scan, and the history page shows the trigger-recorded history
    (``companyos.foundation.console.history``) instead of Django's LogEntry list, which
    misses every change made outside the admin. Every form checks all the
    model's constraints (:class:`ConstraintsCheckedForm`, whichever form an
    admin declares) and parses JSON within the platform's bounds
    (``companyos.foundation.jsonbounds``). Pages are live
    (``companyos.foundation.console.live``): lists and change pages of models
    with events follow them, an organization's page has its activity feed, and
    a change form refuses to save over a row changed since it was opened.
    """

    change_form_template = "admin/companyos/change_form.html"

    list_per_page = 50
    list_max_show_all = 200
    timestamps = ("created_at", "updated_at")
    show_facets = admin.ShowFacets.NEVER
    formfield_overrides = {models.JSONField: {"form_class": BoundedJSONFormField}}

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), *self.timestamps)

    def get_form(self, request, obj=None, change=False, **kwargs):
        # change by keyword: Django's UserAdmin.get_form takes it only that way.
        form = super().get_form(request, obj, change=change, **kwargs)
        if not (issubclass(form, ConstraintsCheckedForm) and issubclass(form, VersionCheckedForm)):
            bases = (VersionCheckedForm, ConstraintsCheckedForm, form)
            form = type(form.__name__, bases, {"__module__": form.__module__})
        name_every_input(form.base_fields)
        return form

    def get_formsets_with_inlines(self, request, obj=None):
        for formset, inline in super().get_formsets_with_inlines(request, obj):
            name_every_input(formset.form.base_fields)

            class NamedFormSet(formset):
                def add_fields(self, form, index):
                    super().add_fields(form, index)
                    name_every_input(form.fields)  # the "delete" box is added here

            yield NamedFormSet, inline

    def changelist_view(self, request, extra_context=None):
        live_config = model_live_config(self.model, request.user)
        return super().changelist_view(request, {"live_config": live_config, **(extra_context or {})})

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk is not None:
            # A form sent back with errors keeps the version it was opened on: saving it again is still refused.
            context["version_field"] = VERSION_FIELD
            context["version"] = request.POST.get(VERSION_FIELD) or row_version(self.model, obj.pk)
            if self.model is organization_model():
                context.update(feed_context(self.admin_site, [obj.pk]))
            else:
                context["live_config"] = model_live_config(self.model, request.user, object_id=str(obj.pk))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_view(self, request, object_id, extra_context=None):
        from companyos.foundation.console.views import object_history_view

        return object_history_view(self, request, object_id, extra_context=extra_context)


class RecentRowsInline(admin.TabularInline):
    """An inline showing the newest ``max_rows`` related rows only.

    A parent may own 100k children (an agent's tasks): rendering them all
    would be one huge page. Pair it with a link to the full filtered list.
    """

    extra = 0
    max_rows = 10
    show_change_link = True
    formfield_overrides = ModelAdmin.formfield_overrides

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-created_at")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        max_rows = self.max_rows

        class LimitedFormSet(formset):
            # The formset filters by the parent first; the slice comes last.
            def get_queryset(self):
                return super().get_queryset()[:max_rows]

        return LimitedFormSet


class ReadOnlyInline(RecentRowsInline):
    """The newest related rows, read-only; they are changed on their own pages."""

    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        # The declared fields are all shown read-only: the formset builds no form field for them.
        return self.fields or super().get_readonly_fields(request, obj)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
