"""The admin benchmarks capture their pages under the production settings they measure."""

from urllib.parse import urlencode

import pytest

from analytics.management.commands import bench_admin_changelist, bench_search
from development.tests.factories import DeploymentFactory


@pytest.fixture
def production_redirects(settings):
    """What DEBUG off sets: plain HTTP is redirected to HTTPS."""
    settings.SECURE_SSL_REDIRECT = True


@pytest.mark.django_db
@pytest.mark.usefixtures("production_redirects")
def test_the_changelist_benchmark_captures_the_page_not_a_redirect(admin_user):
    command = bench_admin_changelist.Command()
    command.user = admin_user

    statements = command._capture("/admin/analytics/event/")

    assert any('FROM "analytics_event"' in sql for sql in statements)


@pytest.mark.django_db
@pytest.mark.usefixtures("production_redirects")
def test_the_search_benchmark_finds_what_it_searches_for(admin_user):
    deployment = DeploymentFactory()
    command = bench_search.Command()
    command.user = admin_user

    statements = command._capture_finding(f"/admin/search/?{urlencode({'q': deployment.external_id})}", deployment)

    assert any('FROM "development_deployment"' in sql for sql in statements)
