"""The console's global search: the box on every page, results grouped by model, only models the user may view."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from analytics.tests.factories import EventFactory
from core.tests.factories import UserFactory
from development.tests.factories import DeploymentFactory, RepositoryFactory

pytestmark = pytest.mark.django_db


def change_link(obj) -> str:
    meta = obj._meta
    return f'<a href="/admin/{meta.app_label}/{meta.model_name}/{obj.pk}/change/">{obj}</a>'


def test_every_admin_page_has_the_search_box(admin_client):
    for url in ("/admin/", "/admin/development/deployment/", "/admin/search/?q=x"):
        html = admin_client.get(url).content.decode()
        assert '<form action="/admin/search/" method="get">' in html and 'name="q"' in html, url
    assert 'action="/admin/search/"' not in Client().get("/admin/login/").content.decode()


def test_a_deployment_is_found_by_its_vercel_id(admin_client, rows):
    deployment = DeploymentFactory(organization=rows.organization, repository=rows.repository)
    DeploymentFactory(organization=rows.organization, repository=rows.repository)

    response = admin_client.get("/admin/search/", {"q": deployment.external_id})

    html = response.content.decode()
    assert [group["name"] for group in response.context["groups"]] == ["Deployments"]
    assert [result["label"] for result in response.context["groups"][0]["results"]] == [str(deployment)]
    assert change_link(deployment) in html


def test_a_repository_is_found_by_part_of_its_name_with_its_deployments(admin_client, rows):
    repository = RepositoryFactory(organization=rows.organization, owner="acme", name="acme-web")
    deployment = DeploymentFactory(organization=rows.organization, repository=repository)

    response = admin_client.get("/admin/search/", {"q": "acme-web"})

    html = response.content.decode()
    assert change_link(repository) in html and change_link(deployment) in html
    assert change_link(rows.repository) not in html
    assert [group["name"] for group in response.context["groups"]] == ["Repositories", "Deployments"]


def test_an_event_is_found_by_its_id(admin_client, rows):
    event = EventFactory(organization=rows.organization)

    response = admin_client.get("/admin/search/", {"q": str(event.pk)})

    assert [group["name"] for group in response.context["groups"]] == ["Events"]
    assert change_link(event) in response.content.decode()


def test_models_the_user_may_not_view_give_no_results(rows):
    repository = RepositoryFactory(organization=rows.organization, owner="acme", name="acme-web")
    deployment = DeploymentFactory(organization=rows.organization, repository=repository)
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_deployment"))
    client = Client()
    client.force_login(user)

    response = client.get("/admin/search/", {"q": "acme-web"})

    assert [group["name"] for group in response.context["groups"]] == ["Deployments"]
    html = response.content.decode()
    assert change_link(deployment) in html and change_link(repository) not in html


def test_many_matches_show_the_first_ones_and_link_to_the_list(admin_client, rows):
    for _ in range(12):
        DeploymentFactory(organization=rows.organization, repository=rows.repository, project_name="storefront")

    response = admin_client.get("/admin/search/", {"q": "storefront"})

    (group,) = response.context["groups"]
    assert len(group["results"]) == 10
    assert '<a href="/admin/development/deployment/?q=storefront">' in response.content.decode()


def test_without_a_query_the_page_says_what_to_type_and_with_no_match_says_so(admin_client):
    assert "Type an id" in admin_client.get("/admin/search/").content.decode()
    assert "Nothing found for “no-such-thing”" in admin_client.get("/admin/search/?q=no-such-thing").content.decode()
