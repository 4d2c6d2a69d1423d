#!/usr/bin/env python
"""Django's command-line utility for CompanyOS."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.config.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - loads settings.py
    except ImproperlyConfigured as error:
        # Django's runner would swallow this and fail later with "Models aren't loaded yet".
        sys.exit(f"{error}: see .env.example, or run `python3 dev.py manage ...`, which sets up local servers.")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
