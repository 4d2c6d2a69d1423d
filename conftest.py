"""Shared pytest fixtures for the whole suite."""

import time

import pytest

from companyos.foundation.ratelimit import WINDOW_SECONDS
from core.models import OrganizationMember
from core.tests.factories import AdminUserFactory, OrganizationFactory, OrganizationMemberFactory, UserFactory

# More than a test of a per-minute limit takes on a loaded machine.
RATE_LIMIT_TEST_SECONDS = 10


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    """Pages render without a collectstatic manifest, whatever DEBUG the environment set.

    Production (DEBUG off) serves hashed files from a manifest that
    ``collectstatic`` writes; tests render templates without running it.
    """
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def organization(db):
    return OrganizationFactory()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def member(organization, user):
    """``user`` as a member of ``organization``."""
    return OrganizationMemberFactory(organization=organization, user=user)


@pytest.fixture
def admin_user(db):
    """A superuser (staff) with an unusable password; use ``client.force_login``."""
    return AdminUserFactory()


@pytest.fixture
def owner(organization):
    """A user who owns ``organization``."""
    return OrganizationMemberFactory(organization=organization, role=OrganizationMember.Role.OWNER).user


@pytest.fixture
def rate_limit_window():
    """For a test whose requests must all count in one window of the per-minute limits
    (companyos.foundation.ratelimit): when the window ends within seconds, the test starts in the next.
    """
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < RATE_LIMIT_TEST_SECONDS:
        time.sleep(left + 0.1)
