"""The admin login: throttled per account and per address, unlockable, with optional TOTP two-factor."""

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from companyos.foundation.console.login import NO_DEVICE
from companyos.foundation.console.roles import ADMIN
from core.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-Passphrase-1906"
LOGIN = "/admin/login/?next=/admin/"


def staff(email: str, *roles: str):
    user = UserFactory(email=email, is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def log_in(client: Client, email: str, password: str = PASSWORD, **extra: str):
    return client.post(LOGIN, {"username": email, "password": password, **extra})


def logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_an_account_is_locked_after_the_limit_even_for_the_right_password_until_unlocked(settings):
    user = staff("ops@example.com")
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        # Other addresses, so only the account's count can lock; case does not split the count.
        client = Client(REMOTE_ADDR=f"192.0.2.{attempt + 1}")
        response = log_in(client, "OPS@example.com" if attempt % 2 else user.email, "wrong")
        # The failure that reaches the limit is answered as a lockout already.
        assert response.status_code == (429 if attempt == settings.AXES_FAILURE_LIMIT - 1 else 200)

    client = Client(REMOTE_ADDR="198.51.100.1")
    refused = log_in(client, user.email)
    assert refused.status_code == 429
    assert not logged_in(client)

    call_command("axes_reset_username", user.email)
    assert log_in(client, user.email).status_code == 302
    assert logged_in(client)


def test_an_address_is_locked_after_the_limit_and_an_admin_unlocks_it_in_the_console(settings, admin_client):
    user = staff("someone@example.com")
    client = Client(REMOTE_ADDR="203.0.113.9")
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"guess-{attempt}@example.com", "wrong")

    assert log_in(client, user.email).status_code == 429
    assert not logged_in(client)

    # The console lists the lockout (one row per account tried, the refused one too);
    # deleting them unlocks the address.
    listing = admin_client.get("/admin/axes/accessattempt/", {"q": "203.0.113.9"})
    attempts = list(listing.context["cl"].result_list)
    assert len(attempts) == settings.AXES_FAILURE_LIMIT + 1
    admin_client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [a.pk for a in attempts], "post": "yes"},
    )
    assert not AccessAttempt.objects.filter(ip_address="203.0.113.9").exists()
    assert log_in(client, user.email).status_code == 302


def current_code(device: TOTPDevice) -> str:
    return str(totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)).zfill(device.digits)


def test_a_staff_member_with_an_authenticator_must_give_its_code():
    user = staff("careful@example.com")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    client = Client()

    without = log_in(client, user.email)
    assert without.status_code == 200
    assert without.context["form"].errors
    assert not logged_in(client)
    wrong = log_in(client, user.email, otp_token="000000" if current_code(device) != "000000" else "111111")
    assert wrong.status_code == 200
    assert not logged_in(client)

    # A wrong code makes the device wait (django-otp's throttling), as if the user had waited:
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    device.throttle_reset()
    assert log_in(client, user.email, otp_token=current_code(device)).status_code == 302
    assert logged_in(client)


def test_others_log_in_with_a_password_alone_while_two_factor_is_not_required():
    user = staff("plain@example.com", ADMIN)
    client = Client()

    assert log_in(client, user.email).status_code == 302
    assert logged_in(client)


def test_admins_need_an_authenticator_when_the_setting_requires_it(settings):
    settings.ADMIN_REQUIRE_2FA = True
    admin = staff("boss@example.com", ADMIN)
    client = Client()

    refused = log_in(client, admin.email)
    assert refused.status_code == 200
    assert refused.context["form"].non_field_errors() == [NO_DEVICE]
    assert not logged_in(client)

    # A session from before the setting, or one that skipped the code, is not enough.
    unverified = Client()
    unverified.force_login(admin)
    assert unverified.get("/admin/").status_code == 302

    device = TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    assert log_in(client, admin.email, otp_token=current_code(device)).status_code == 302
    assert logged_in(client)

    # Other roles are not asked for one.
    operator = staff("ops2@example.com", "operator")
    other = Client()
    assert log_in(other, operator.email).status_code == 302
    assert logged_in(other)
