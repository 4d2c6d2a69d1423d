"""The staff console's login: throttled by django-axes, with optional TOTP two-factor.

django-axes counts failures per account and per address (settings
``AXES_*``); :func:`attempted_username` makes the account count
case-insensitive, as emails are. :class:`LoginForm` asks for the code of a
TOTP device (django-otp) from everyone who has a confirmed one, and, when
``ADMIN_REQUIRE_2FA`` is on, refuses members of the ``admin`` role who have
none. A passed code marks the session verified (django-otp's login signal),
which :meth:`CompanyOSAdminSite.has_permission` asks of those who must use
two factors.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_otp import user_has_device
from django_otp.forms import OTPAuthenticationFormMixin
from django_otp.plugins.otp_totp.models import TOTPDevice

from companyos.foundation.console.roles import ADMIN

NO_DEVICE = (
    "Members of the admin role must log in with an authenticator code, and this account has no "
    "authenticator set up: ask another admin to add a TOTP device for it."
)


def attempted_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The account a login attempt names, lower-cased: the key of its failure count."""
    username = (credentials or {}).get("username") or request.POST.get("username") or ""
    return str(username).strip().lower()


def two_factor_required(user: Any) -> bool:
    """Whether ``user`` may only use the console with a verified TOTP code: with ``ADMIN_REQUIRE_2FA``,
    superusers and members of the ``admin`` role."""
    if not (settings.ADMIN_REQUIRE_2FA and user.is_authenticated):
        return False
    return user.is_superuser or user.groups.filter(name=ADMIN).exists()


class LoginForm(OTPAuthenticationFormMixin, AdminAuthenticationForm):
    """The admin login: email, password and, for accounts with an authenticator, its current code."""

    # django-otp's otp_device and otp_challenge fields are left out: one code, checked against one device.
    otp_token = forms.CharField(
        required=False,
        label="Authenticator code",
        help_text="Only if you have set up an authenticator app.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}),
    )

    def _chosen_device(self, user: Any) -> Any:
        # The form offers no device choice: a code is checked against the
        # user's first confirmed authenticator (django-otp tries none unasked).
        return TOTPDevice.objects.devices_for_user(user, confirmed=True).order_by("pk").first()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        user = self.get_user()
        if user is not None:
            if user_has_device(user):
                self.clean_otp(user)
            elif two_factor_required(user):
                raise ValidationError(NO_DEVICE, code="two_factor_required")
        return cleaned
