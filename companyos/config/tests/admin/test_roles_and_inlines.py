"""The roles' permissions as the migration leaves them, and inlines that stay small."""

import pytest
from django.contrib.auth.models import Group

from agents.tests.factories import AgentTaskFactory

pytestmark = pytest.mark.django_db


def codenames(role: str) -> set[str]:
    return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))


def test_viewer_may_only_view():
    viewer = codenames("viewer")
    assert {"view_agenttask", "view_event", "view_change", "view_user", "view_webhookdelivery"} <= viewer
    assert all(codename.startswith("view_") for codename in viewer)


def test_operator_changes_operational_models_and_deletes_nothing():
    operator = codenames("operator")
    assert {"change_agenttask", "change_socialpost", "change_integration", "view_user"} <= operator
    assert not {"change_user", "change_organization", "change_group", "manage_secrets"} & operator
    assert not any(codename.startswith(("delete_", "add_")) for codename in operator)


def test_operator_changes_exactly_the_models_that_declare_it():
    change = {codename for codename in codenames("operator") if codename.startswith("change_")}
    assert change == {
        "change_integration",
        "change_webhook",
        "change_webhookdelivery",
        "change_repository",
        "change_pullrequest",
        "change_deployment",
        "change_figmafile",
        "change_designcomponent",
        "change_socialaccount",
        "change_socialpost",
        "change_agent",
        "change_agenttask",
        "change_agentcollaboration",
    }


def test_admin_has_everything_including_secrets():
    admin = codenames("admin")
    assert {"manage_secrets", "delete_agenttask", "add_user", "change_group", "view_change"} <= admin


def test_agent_page_shows_recent_tasks_only_with_a_link_to_all(rows, admin_client):
    AgentTaskFactory.create_batch(25, organization=rows.organization, agent=rows.agent)

    response = admin_client.get(f"/admin/agents/agent/{rows.agent.pk}/change/")

    inline = next(
        formset
        for formset in response.context["inline_admin_formsets"]
        if formset.opts.model._meta.model_name == "agenttask"
    )
    assert len(inline.formset.forms) == 10
    # Read-only: its forms build no field for what they show, only the hidden id.
    assert set(inline.formset.forms[0].fields) == {"id", "agent"}
    assert f"/admin/agents/agenttask/?agent__id__exact={rows.agent.pk}" in response.content.decode()


def test_organization_page_edits_its_newest_members_only(rows, admin_client):
    from core.tests.factories import OrganizationMemberFactory

    OrganizationMemberFactory.create_batch(55, organization=rows.organization)

    response = admin_client.get(f"/admin/core/organization/{rows.organization.pk}/change/")

    (members,) = response.context["inline_admin_formsets"]
    assert len(members.formset.forms) == 50
    assert f'?organization__id__exact={rows.organization.pk}">55</a>' in response.content.decode()
