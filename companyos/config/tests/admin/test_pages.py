"""Every registered model's admin pages, for each role."""

import pytest
from django.contrib import admin

from companyos.config.tests.admin.cases import CASES, NO_ADD, NO_CHANGE
from companyos.foundation.console.roles import operators_may_change

pytestmark = pytest.mark.django_db


def test_every_registered_model_has_a_case():
    assert {case.model for case in CASES} == set(admin.site._registry)


def _made(case, rows):
    case.make(rows, 2)
    return case.model._default_manager.order_by("-pk").first()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_admin_role_gets_every_page(case, rows, admin_client):
    obj = _made(case, rows)

    listing = admin_client.get(case.url(), {"q": case.search(obj)})
    assert listing.status_code == 200
    assert listing.context["cl"].result_count >= 1, "the search finds the object"
    filtered = admin_client.get(f"{case.url()}?{case.filter(obj)}")
    assert filtered.status_code == 200
    assert obj in filtered.context["cl"].result_list or filtered.context["cl"].result_count >= 1

    assert admin_client.get(case.url("change/", obj)).status_code == 200
    assert admin_client.get(case.url("history/", obj)).status_code == 200
    assert admin_client.get(case.url("add/")).status_code == (403 if case.model in NO_ADD else 200)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_viewer_reads_everything_and_changes_nothing(case, rows, viewer_client):
    obj = _made(case, rows)
    before = case.model._default_manager.count()

    assert viewer_client.get(case.url()).status_code == 200
    assert viewer_client.get(case.url("change/", obj)).status_code == 200
    assert viewer_client.get(case.url("history/", obj)).status_code == 200
    assert viewer_client.get(case.url("add/")).status_code == 403
    assert viewer_client.post(case.url("add/"), {}).status_code == 403
    assert viewer_client.post(case.url("change/", obj), {}).status_code == 403
    assert viewer_client.get(case.url("delete/", obj)).status_code == 403
    assert viewer_client.post(case.url("delete/", obj), {"post": "yes"}).status_code == 403
    assert case.model._default_manager.count() == before


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_operator_changes_operational_models_only(case, rows, operator_client):
    obj = _made(case, rows)
    meta = case.model._meta
    operational = operators_may_change(meta.app_label, meta.model_name) and case.model not in NO_CHANGE

    assert operator_client.get(case.url()).status_code == 200
    change_page = operator_client.get(case.url("change/", obj))
    assert change_page.status_code == 200
    # A change form with a save button only where the operator may change.
    assert ('name="_save"' in change_page.content.decode()) is operational
    assert (operator_client.post(case.url("change/", obj), {}).status_code == 403) is not operational
    assert operator_client.get(case.url("add/")).status_code == 403
    assert operator_client.post(case.url("delete/", obj), {"post": "yes"}).status_code == 403
    assert case.model._default_manager.filter(pk=obj.pk).exists()


def test_index_groups_the_seven_domains_in_order(admin_client):
    response = admin_client.get("/admin/")
    labels = [app["app_label"] for app in response.context["app_list"]]
    assert labels[:7] == ["core", "integrations", "development", "design", "social", "agents", "analytics"]
    assert "People and organizations" in response.content.decode()
    assert 'href="/admin/analytics/dashboard/"' in response.content.decode()
