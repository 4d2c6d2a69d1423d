"""Staff users of each role, logged-in clients, and the parents rows hang off."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from companyos.config.tests.admin.cases import parents
from companyos.foundation.console.roles import sync_roles
from core.tests.factories import UserFactory


def _staff(role: str):
    # The roles migration created the groups; a transactional test elsewhere
    # may have flushed them since, and sync_roles puts them back.
    if not Group.objects.filter(name=role).exists():
        sync_roles()
    user = UserFactory(is_staff=True, email=f"{role}@staff.example.com")
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(db):
    return _staff("viewer")


@pytest.fixture
def operator(db):
    return _staff("operator")


@pytest.fixture
def staff_admin(db):
    """A member of the ``admin`` group (not a superuser): the role, not the bypass."""
    return _staff("admin")


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(staff_admin):
    return _client(staff_admin)


@pytest.fixture
def viewer_client(viewer):
    return _client(viewer)


@pytest.fixture
def operator_client(operator):
    return _client(operator)


@pytest.fixture
def rows(db):
    return parents()
