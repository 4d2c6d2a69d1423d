"""Each admin action: its effect, its event (an analytics.Event row) and its history record."""

import datetime as dt

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from agents.models import AgentTask
from agents.tests.factories import AgentTaskFactory
from analytics.models import Event
from companyos.foundation.console.models import Change
from design.models import DesignComponent
from design.tests.factories import DesignComponentFactory
from integrations.models import Integration, Webhook
from social.models import SocialPost
from social.tests.factories import SocialPostFactory

pytestmark = pytest.mark.django_db

TASKS = "/admin/agents/agenttask/"


def act(client, url, action, objects, **data):
    """Post an action; returns the response and the messages the next page shows."""
    response = client.post(url, {"action": action, "_selected_action": [str(o.pk) for o in objects], **data})
    if response.status_code != 302:
        return response, [str(m) for m in get_messages(response.wsgi_request)]
    return response, [str(m) for m in client.get(response["Location"]).context["messages"]]


def event_of(obj, event_type):
    return Event.objects.filter(subject_id=obj.pk, event_type=event_type).first()


def history_of(obj, user) -> Change:
    """The admin's update of ``obj``, attributed to ``user`` and the admin."""
    return Change.objects.get(object_id=obj.pk, operation="update", user=user, source="admin")


def _task(rows, status, **extra):
    started = timezone.now() - dt.timedelta(minutes=1)
    return AgentTaskFactory(
        organization=rows.organization, agent=rows.agent, status=status, started_at=started, **extra
    )


def test_approve_completes_the_task_and_records_who(rows, admin_client, staff_admin):
    task = _task(rows, AgentTask.Status.AWAITING_APPROVAL, requires_approval=True)

    response, messages = act(admin_client, TASKS, "approve", [task])

    assert response.status_code == 302
    assert messages == ["Approved 1 agent task."]
    task.refresh_from_db()
    assert (task.status, task.approved_by) == (AgentTask.Status.COMPLETED, staff_admin)
    assert task.approved_at is not None
    assert event_of(task, "agent.task.completed").actor_user_id in (None, staff_admin.pk)
    change = history_of(task, staff_admin)
    assert change.before["status"] == "awaiting_approval" and change.after["status"] == "completed"
    assert change.after["approved_by_id"] == str(staff_admin.pk)


def test_approve_refuses_a_task_not_awaiting_approval(rows, admin_client):
    task = _task(rows, AgentTask.Status.QUEUED)

    _, messages = act(admin_client, TASKS, "approve", [task])

    assert len(messages) == 1 and messages[0].startswith("Not approved:")
    task.refresh_from_db()
    assert task.status == AgentTask.Status.QUEUED
    assert not Change.objects.filter(object_id=task.pk, operation="update").exists()


def test_reject_asks_for_a_reason_then_fails_the_task(rows, admin_client, staff_admin):
    task = _task(rows, AgentTask.Status.AWAITING_APPROVAL, requires_approval=True)

    form, _ = act(admin_client, TASKS, "reject", [task])
    assert form.status_code == 200 and b"Reject tasks" in form.content
    _, messages = act(admin_client, TASKS, "reject", [task], apply="1", reason="Wrong repository")

    assert messages == ["Rejected 1 agent task."]
    task.refresh_from_db()
    assert (task.status, task.rejection_reason) == (AgentTask.Status.FAILED, "Wrong repository")
    assert event_of(task, "agent.task.failed")
    assert history_of(task, staff_admin).after["rejection_reason"] == "Wrong repository"


def test_retry_queues_a_failed_task_again(rows, admin_client, staff_admin):
    task = _task(rows, AgentTask.Status.FAILED, attempts=3, completed_at=timezone.now(), error="boom")

    _, messages = act(admin_client, TASKS, "retry", [task])

    assert messages == ["Retried 1 agent task."]
    task.refresh_from_db()
    assert (task.status, task.attempts) == (AgentTask.Status.QUEUED, 0)
    assert event_of(task, "agent.task.queued")
    assert history_of(task, staff_admin).after["status"] == "queued"


def test_cancel_cancels_unfinished_tasks_and_reports_the_rest(rows, admin_client, staff_admin):
    queued = _task(rows, AgentTask.Status.QUEUED)
    done = _task(rows, AgentTask.Status.COMPLETED, completed_at=timezone.now())

    _, messages = act(admin_client, TASKS, "cancel", [queued, done])

    assert messages[0] == "Cancelled 1 agent task."
    assert messages[1].startswith("Not cancelled:")
    queued.refresh_from_db()
    done.refresh_from_db()
    assert (queued.status, done.status) == (AgentTask.Status.CANCELLED, AgentTask.Status.COMPLETED)
    assert event_of(queued, "agent.task.cancelled")
    assert history_of(queued, staff_admin).after["status"] == "cancelled"


def test_schedule_and_cancel_posts(rows, admin_client, staff_admin):
    post = SocialPostFactory(account=rows.account, author=staff_admin)
    at = timezone.localtime() + dt.timedelta(days=2)

    _, messages = act(
        admin_client, "/admin/social/socialpost/", "schedule", [post],
        apply="1", at_0=at.strftime("%Y-%m-%d"), at_1=at.strftime("%H:%M:%S"),
    )  # fmt: skip

    assert messages == ["Scheduled 1 social post."]
    post.refresh_from_db()
    assert post.status == SocialPost.Status.SCHEDULED
    assert abs(post.scheduled_at - at) < dt.timedelta(seconds=1)
    assert event_of(post, "social.post.scheduled")
    assert history_of(post, staff_admin).after["status"] == "scheduled"

    _, messages = act(admin_client, "/admin/social/socialpost/", "cancel", [post])

    assert messages == ["Canceled 1 social post."]
    post.refresh_from_db()
    assert post.status == SocialPost.Status.CANCELED
    assert event_of(post, "social.post.canceled")
    assert Change.objects.filter(object_id=post.pk, after__status="canceled", source="admin").exists()


def test_mark_components_outdated(rows, admin_client, staff_admin):
    generated = DesignComponentFactory(figma_file=rows.figma_file, code_status=DesignComponent.CodeStatus.GENERATED)
    no_code = DesignComponentFactory(figma_file=rows.figma_file)

    _, messages = act(admin_client, "/admin/design/designcomponent/", "mark_outdated", [generated, no_code])

    assert messages == [
        "Marked the code of 1 component(s) outdated.",
        "Skipped 1 component(s) with no code yet or already outdated.",
    ]
    generated.refresh_from_db()
    no_code.refresh_from_db()
    assert (generated.code_status, no_code.code_status) == ("outdated", "not_started")
    event = event_of(generated, "design.component.outdated")
    assert (event.category, event.actor_user_id) == ("design", staff_admin.pk)
    assert history_of(generated, staff_admin).after == {"code_status": "outdated"}


def test_rotate_credentials_keeps_them_out_of_history(rows, admin_client, staff_admin):
    integration = rows.integration

    form, _ = act(admin_client, "/admin/integrations/integration/", "rotate_credentials", [integration])
    assert form.status_code == 200 and b"Rotate credentials" in form.content
    _, messages = act(
        admin_client, "/admin/integrations/integration/", "rotate_credentials", [integration],
        apply="1", credentials='{"access_token": "ghp_brand_new_secret"}',
    )  # fmt: skip

    assert messages == ["Rotated credentials of 1 integration."]
    assert Integration.objects.get(pk=integration.pk).credentials == {"access_token": "ghp_brand_new_secret"}
    change = history_of(integration, staff_admin)
    assert change.after == {"credentials": "(hidden)"}
    assert not Change.objects.filter(after__icontains="ghp_brand_new_secret").exists()
    assert "ghp_brand_new_secret" not in str(list(Change.objects.values_list("before", "after")))


def test_rotate_webhook_secret_shows_it_once(rows, admin_client, staff_admin):
    webhook = rows.webhook
    old_secret = webhook.secret

    response, _ = act(admin_client, "/admin/integrations/webhook/", "rotate_secret", [webhook])

    new_secret = Webhook.objects.get(pk=webhook.pk).secret
    assert new_secret != old_secret
    assert response.status_code == 200 and new_secret in response.content.decode()
    assert history_of(webhook, staff_admin).after == {"secret": "(hidden)"}
    # The change page never renders it back.
    assert new_secret not in admin_client.get(f"/admin/integrations/webhook/{webhook.pk}/change/").content.decode()


def test_operator_approves_but_cannot_touch_credentials(rows, operator_client, operator):
    task = _task(rows, AgentTask.Status.AWAITING_APPROVAL, requires_approval=True)
    assert 'value="approve"' in operator_client.get(TASKS).content.decode()
    act(operator_client, TASKS, "approve", [task])
    task.refresh_from_db()
    assert (task.status, task.approved_by) == (AgentTask.Status.COMPLETED, operator)

    credentials = Integration.objects.get(pk=rows.integration.pk).credentials
    act(
        operator_client, "/admin/integrations/integration/", "rotate_credentials", [rows.integration],
        apply="1", credentials='{"access_token": "operator-was-here"}',
    )  # fmt: skip
    assert Integration.objects.get(pk=rows.integration.pk).credentials == credentials
    page = operator_client.get(f"/admin/integrations/integration/{rows.integration.pk}/change/").content.decode()
    assert "new_credentials" not in page and "rotate_credentials" not in page


@pytest.mark.parametrize(
    ("url", "action"),
    [(TASKS, "approve"), (TASKS, "cancel"), ("/admin/integrations/webhook/", "rotate_secret")],
)
def test_viewer_cannot_run_actions(rows, viewer_client, url, action):
    task = _task(rows, AgentTask.Status.AWAITING_APPROVAL, requires_approval=True)
    target = task if url == TASKS else rows.webhook
    secret = rows.webhook.secret

    response, _ = act(viewer_client, url, action, [target])

    # Without the permission the action does not exist: the list is shown again.
    assert response.status_code == 200
    task.refresh_from_db()
    assert task.status == AgentTask.Status.AWAITING_APPROVAL
    assert Webhook.objects.get(pk=rows.webhook.pk).secret == secret
    assert not Change.objects.filter(source="admin").exists()
    assert f'value="{action}"' not in viewer_client.get(url).content.decode()


def test_api_token_is_created_through_the_service_shown_once_and_revoked(rows, admin_client, staff_admin):
    from core.models import ApiToken

    response = admin_client.post("/admin/core/apitoken/add/", {"user": str(rows.user.pk), "name": "CI watcher"})

    token = ApiToken.objects.get(name="CI watcher")
    raw = response.context["raw"]
    assert raw.startswith(token.prefix) and raw in response.content.decode()
    assert raw not in admin_client.get(f"/admin/core/apitoken/{token.pk}/change/").content.decode()
    assert Change.objects.get(object_id=token.pk, operation="insert").after["token_hash"] == "(hidden)"

    _, messages = act(admin_client, "/admin/core/apitoken/", "revoke", [token])

    assert messages == ["Revoked 1 API token."]
    token.refresh_from_db()
    assert token.revoked_at is not None
    after = history_of(token, staff_admin).after
    # PostgreSQL drops trailing zeros of the microseconds: compare instants, not text.
    assert after.keys() == {"revoked_at"}
    assert dt.datetime.fromisoformat(after["revoked_at"]) == token.revoked_at


def test_credentials_are_write_only_on_the_change_form(rows, admin_client):
    integration = rows.integration
    integration.credentials = {"access_token": "ghp_0123456789abcdefWXYZ"}
    integration.save(update_fields=["credentials"])
    url = f"/admin/integrations/integration/{integration.pk}/change/"

    page = admin_client.get(url).content.decode()
    assert "ghp_0123456789abcdefWXYZ" not in page
    assert "access_token: ••••••••WXYZ" in page  # a masked hint, never the value

    data = {**admin_client.get(url).context["adminform"].form.initial}
    data = {key: value for key, value in data.items() if value is not None and not isinstance(value, dict | list)}
    data.update(
        config="{}",
        metadata="{}",
        scopes="repo",
        new_credentials="",
        **{"webhooks-TOTAL_FORMS": "0", "webhooks-INITIAL_FORMS": "0"},
    )
    assert admin_client.post(url, data).status_code == 302
    assert Integration.objects.get(pk=integration.pk).credentials == {"access_token": "ghp_0123456789abcdefWXYZ"}

    data["new_credentials"] = '{"access_token": "ghp_replaced"}'
    assert admin_client.post(url, data).status_code == 302
    assert Integration.objects.get(pk=integration.pk).credentials == {"access_token": "ghp_replaced"}
