"""Write paths for design components."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from companyos.foundation.events import publish_state_change
from core.models import User
from design.models import DesignComponent

CodeStatus = DesignComponent.CodeStatus

# Only code that exists can fall behind its design.
HAS_CODE = (CodeStatus.GENERATED, CodeStatus.IN_REVIEW, CodeStatus.SYNCED)


def code_status_refusal(*, component: DesignComponent, code_status: str) -> str | None:
    """Why ``component``'s code may not get ``code_status`` (None when it may).

    The rule :func:`components_mark_outdated` applies, for the admin form that
    edits the field: only code that exists can become outdated.
    """
    if code_status == CodeStatus.OUTDATED and component.code_status not in (*HAS_CODE, CodeStatus.OUTDATED):
        return f"a component whose code is {component.get_code_status_display().lower()} has no code to fall behind"
    return None


def components_mark_outdated(
    *, components: Iterable[DesignComponent], user: User | None = None
) -> list[DesignComponent]:
    """Mark the code of ``components`` as outdated (its design changed since).

    Components without code yet, or already outdated, are left alone and not
    returned. The marked ones are updated in one statement on locked rows,
    which bypasses ``save()``, so each publishes the ``design.component.outdated``
    event its model declares through ``publish_state_change`` (as ``user``'s
    act when given). Returns the components that were marked.
    """
    ids = [component.pk for component in components]
    with transaction.atomic():
        marked = list(
            DesignComponent.objects.select_for_update(of=("self",))
            .select_related("figma_file")
            .filter(pk__in=ids, code_status__in=HAS_CODE)
            .order_by("pk")
        )
        if not marked:
            return []
        now = timezone.now()
        DesignComponent.objects.filter(pk__in=[c.pk for c in marked]).update(
            code_status=CodeStatus.OUTDATED, updated_at=now
        )
        for component in marked:
            previous, component.code_status, component.updated_at = component.code_status, CodeStatus.OUTDATED, now
            publish_state_change(component, previous=previous, by_user=user.pk if user else None)
    return marked
