"""Debug error pages (and error reports) that show no secret.

Django's :class:`SafeExceptionReporterFilter` hides settings and variables
whose *name* looks secret (KEY, TOKEN, PASS...), but not a password inside a
URL: ``REDIS_URL``, every cache's ``LOCATION`` and the channel layer's hosts
carry the Redis password, and a failing connection's frame holds its URL.
:class:`SecretsFilter` also hides the password of any URL in settings,
request metadata (the environment, under a WSGI development server) and
the traceback's local variables.
"""

from __future__ import annotations

import re
from typing import Any

from django.template.defaultfilters import pprint
from django.views.debug import SafeExceptionReporterFilter

_URL_PASSWORD = re.compile(r"(?P<before>[a-z][a-z0-9+.-]*://[^:@/\s]*:)[^@/\s]+@", re.IGNORECASE)


class SecretsFilter(SafeExceptionReporterFilter):
    """Django's filter, plus the passwords inside URLs anywhere it shows a value."""

    def _without_url_passwords(self, value: Any) -> Any:
        if isinstance(value, str):
            # str() also resolves lazy strings (a CSP nonce in request.META).
            return _URL_PASSWORD.sub(rf"\g<before>{self.cleansed_substitute}@", str(value))
        return value

    def cleanse_setting(self, key, value):
        # Django recurses into dicts, lists and tuples through this method, so
        # strings nested anywhere in a setting come through here too.
        return self._without_url_passwords(super().cleanse_setting(key, value))

    def _frame_value(self, name: str, value: Any) -> Any:
        if self.hidden_settings.search(name):
            return self.cleansed_substitute
        if isinstance(value, str):
            return self._without_url_passwords(value)
        # A container or object holding a URL (a connection's kwargs): shown as
        # its redacted text, and only when there was something to redact.
        text = pprint(value)
        redacted = self._without_url_passwords(text)
        return value if redacted == text else redacted

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, self._frame_value(name, value))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]
