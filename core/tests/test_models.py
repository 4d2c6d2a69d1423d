"""Users, organizations and memberships, against PostgreSQL."""

import datetime as dt

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.db import IntegrityError, transaction
from django.test import RequestFactory
from django.utils import timezone

from core.models import Organization, OrganizationMember, User
from core.tests.factories import OrganizationFactory, OrganizationMemberFactory, UserFactory
from core.tests.utils import violates

pytestmark = pytest.mark.django_db


def test_user_model_is_core_user_and_logs_in_by_email():
    assert get_user_model() is User
    assert User.USERNAME_FIELD == "email"


@pytest.fixture
def fast_hasher(settings):
    # The production hasher is slow on purpose; these tests are about lookups.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.usefixtures("fast_hasher")
class TestUserEmail:
    def test_email_is_unique_regardless_of_case(self):
        UserFactory(email="ada@example.com")
        with violates("core_user_email_ci_unique"):
            User.objects.create(email="Ada@Example.COM", name="Ada again")

    def test_create_user_stores_the_email_lowercased(self):
        user = User.objects.create_user("Grace.Hopper@Example.com", password="a-long-Passphrase-1906")
        assert user.email == "grace.hopper@example.com"

    @pytest.mark.parametrize("typed", ["grace@example.com", "GRACE@example.com", "Grace@Example.Com"])
    def test_authenticate_by_email_in_any_case(self, typed):
        user = User.objects.create_user("grace@example.com", password="a-long-Passphrase-1906")
        # django-axes (settings.AUTHENTICATION_BACKENDS) counts attempts per request.
        request = RequestFactory().post("/admin/login/")
        assert authenticate(request, email=typed, password="a-long-Passphrase-1906") == user
        assert authenticate(request, email=typed, password="wrong") is None

    def test_unusable_password_never_authenticates(self):
        user = UserFactory()
        assert not user.has_usable_password()
        assert authenticate(RequestFactory().post("/admin/login/"), email=user.email, password="") is None

    def test_role_check(self):
        user = UserFactory()
        with violates("core_user_role_valid"):
            User.objects.filter(pk=user.pk).update(role="owner")


class TestTimestamps:
    def test_updated_at_moves_on_save_and_created_at_does_not(self):
        org = OrganizationFactory()
        org.refresh_from_db()
        created, updated = org.created_at, org.updated_at
        org.name = "Renamed"
        org.save()
        org.refresh_from_db()
        assert org.created_at == created
        assert org.updated_at > updated

    def test_updated_at_moves_with_update_fields(self):
        org = OrganizationFactory()
        org.refresh_from_db()
        created, updated = org.created_at, org.updated_at
        org.plan = Organization.Plan.ENTERPRISE
        org.save(update_fields=["plan"])
        org.refresh_from_db()
        assert (org.plan, org.created_at) == ("enterprise", created)
        assert org.updated_at > updated

    def test_timestamps_are_timezone_aware(self):
        org = OrganizationFactory()
        org.refresh_from_db()
        assert timezone.is_aware(org.created_at) and timezone.is_aware(org.updated_at)

    def test_ids_are_time_ordered_uuid7(self):
        first, second = OrganizationFactory(), OrganizationFactory()
        assert first.id.version == 7
        assert first.id < second.id


class TestOrganization:
    def test_slug_is_unique(self):
        OrganizationFactory(slug="acme")
        with violates("core_organization_slug_unique"):
            OrganizationFactory(slug="acme")

    def test_plan_check(self):
        with violates("core_organization_plan_valid"):
            OrganizationFactory(plan="gold")

    def test_settings_jsonb_round_trips_nested_unicode(self):
        value = {
            "locale": "ja-JP",
            "welcome": "ようこそ 👋 — «Acme»",
            "nested": {"list": [1, 2.5, None, True, {"deep": ["ü", "ß"]}], "empty": {}},
        }
        org = OrganizationFactory(settings=value)
        assert Organization.objects.get(pk=org.pk).settings == value
        # And it is real JSONB: the database can look inside it.
        assert Organization.objects.filter(settings__nested__list__4__deep__0="ü").get() == org


class TestMembership:
    def test_one_membership_per_user_and_organization(self):
        member = OrganizationMemberFactory()
        with violates("core_member_org_user_unique"):
            OrganizationMemberFactory(organization=member.organization, user=member.user)

    def test_role_check(self):
        with violates("core_member_role_valid"):
            OrganizationMemberFactory(role="janitor")

    def test_deleting_the_organization_deletes_its_memberships(self):
        member = OrganizationMemberFactory()
        member.organization.delete()
        assert not OrganizationMember.objects.filter(pk=member.pk).exists()
        assert User.objects.filter(pk=member.user_id).exists()

    def test_deleting_the_user_deletes_their_memberships(self):
        member = OrganizationMemberFactory()
        member.user.delete()
        assert not OrganizationMember.objects.filter(pk=member.pk).exists()
        assert Organization.objects.filter(pk=member.organization_id).exists()

    def test_deleting_the_inviter_keeps_the_membership(self):
        inviter = UserFactory()
        member = OrganizationMemberFactory(invited_by=inviter)
        inviter.delete()
        member.refresh_from_db()
        assert member.invited_by is None

    def test_members_through_the_organization(self):
        member = OrganizationMemberFactory()
        assert list(member.organization.members.all()) == [member.user]


def test_joined_at_defaults_to_now():
    before = timezone.now() - dt.timedelta(seconds=1)
    member = OrganizationMemberFactory()
    assert member.joined_at >= before


def test_integrity_error_leaves_the_transaction_usable():
    # The savepoint in `violates` is what lets a test continue after a refusal.
    OrganizationFactory(slug="taken")
    with pytest.raises(IntegrityError), transaction.atomic():
        OrganizationFactory(slug="taken")
    assert Organization.objects.filter(slug="taken").count() == 1
