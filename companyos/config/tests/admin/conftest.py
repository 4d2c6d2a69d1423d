"""Staff users of each role, logged-in clients, and the parents rows hang off."""

import pytest
from django.test import Client

from companyos.config.tests.admin.cases import parents
from companyos.foundation.tests.support import give_role
from core.tests.factories import UserFactory


def _staff(role: str):
    return give_role(UserFactory(is_staff=True, email=f"{role}@staff.example.com"), role)


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
