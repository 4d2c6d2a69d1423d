"""Write paths for social posts.

Status changes are saved with ``save(update_fields=[...])``, so the save
publishes the ``social.post.*`` events ``SocialPost`` declares; nothing here
publishes them itself.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from social.models import SocialPost

Status = SocialPost.Status

# A post can be (re)scheduled until it starts publishing.
SCHEDULABLE = (Status.DRAFT, Status.SCHEDULED, Status.FAILED, Status.CANCELED)
CANCELABLE = (Status.DRAFT, Status.SCHEDULED)


def _locked(post: SocialPost) -> SocialPost:
    return SocialPost.objects.select_for_update().get(pk=post.pk)


def post_schedule(*, post: SocialPost, at: datetime) -> SocialPost:
    """Schedule ``post`` for publication at ``at`` (in the future)."""
    if at <= timezone.now():
        raise ValidationError("A post can only be scheduled in the future.", code="in_past")
    with transaction.atomic():
        locked = _locked(post)
        if locked.status not in SCHEDULABLE:
            raise ValidationError(
                f"A {locked.get_status_display().lower()} post cannot be scheduled.", code="bad_status"
            )
        locked.status, locked.scheduled_at, locked.error_message = Status.SCHEDULED, at, ""
        locked.save(update_fields=["status", "scheduled_at", "error_message"])
    return locked


def post_cancel(*, post: SocialPost) -> SocialPost:
    """Cancel a draft or scheduled post; ``scheduled_at`` is kept as history."""
    with transaction.atomic():
        locked = _locked(post)
        if locked.status not in CANCELABLE:
            raise ValidationError(
                f"A {locked.get_status_display().lower()} post cannot be canceled.", code="bad_status"
            )
        locked.status = Status.CANCELED
        locked.save(update_fields=["status"])
    return locked
