"""Scheduling and canceling posts: which statuses allow it, and the events it publishes."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from analytics.models import Event
from social.models import SocialPost
from social.services import post_cancel, post_schedule
from social.tests.factories import SocialPostFactory

pytestmark = pytest.mark.django_db

Status = SocialPost.Status


def event_types(post) -> list[str]:
    return list(
        Event.objects.filter(subject_id=post.pk).order_by("occurred_at", "id").values_list("event_type", flat=True)
    )


def post_in(status):
    """A post in ``status``, with the timestamp that status requires."""
    return SocialPostFactory(status=status, published_at=timezone.now() if status == Status.PUBLISHED else None)


def in_two_days():
    return timezone.now() + dt.timedelta(days=2)


@pytest.mark.parametrize("status", [Status.DRAFT, Status.SCHEDULED, Status.FAILED, Status.CANCELED])
def test_a_post_not_yet_publishing_can_be_scheduled(status):
    post = SocialPostFactory(status=status, scheduled_at=in_two_days(), error_message="Rate limited")
    at = in_two_days() + dt.timedelta(hours=1)

    scheduled = post_schedule(post=post, at=at)

    post.refresh_from_db()
    assert (post.status, post.scheduled_at, post.error_message) == (Status.SCHEDULED, at, "")
    assert scheduled == post
    assert event_types(post)[-1] == "social.post.scheduled"


def test_scheduling_in_the_past_is_refused():
    post = SocialPostFactory()

    with pytest.raises(ValidationError) as refused:
        post_schedule(post=post, at=timezone.now() - dt.timedelta(minutes=1))

    assert refused.value.code == "in_past"
    post.refresh_from_db()
    assert post.status == Status.DRAFT and not event_types(post)


@pytest.mark.parametrize("status", [Status.PUBLISHING, Status.PUBLISHED])
def test_a_post_publishing_or_published_cannot_be_scheduled(status):
    post = post_in(status)

    with pytest.raises(ValidationError, match="cannot be scheduled") as refused:
        post_schedule(post=post, at=in_two_days())

    assert refused.value.code == "bad_status"
    post.refresh_from_db()
    assert post.status == status


def test_canceling_keeps_the_schedule_as_history():
    at = in_two_days()
    post = SocialPostFactory(status=Status.SCHEDULED, scheduled_at=at)

    post_cancel(post=post)

    post.refresh_from_db()
    assert (post.status, post.scheduled_at) == (Status.CANCELED, at)
    assert event_types(post)[-1] == "social.post.canceled"


@pytest.mark.parametrize("status", [Status.PUBLISHING, Status.PUBLISHED, Status.FAILED, Status.CANCELED])
def test_only_drafts_and_scheduled_posts_can_be_canceled(status):
    post = post_in(status)

    with pytest.raises(ValidationError, match="cannot be canceled") as refused:
        post_cancel(post=post)

    assert refused.value.code == "bad_status"
    post.refresh_from_db()
    assert post.status == status
