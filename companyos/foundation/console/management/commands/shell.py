"""``manage.py shell`` with every change it makes recorded as coming from the shell."""

import getpass

from django.core.management.commands import shell

from companyos.foundation.console.history import history_source


class Command(shell.Command):
    def handle(self, **options):
        try:
            os_user = getpass.getuser()
        except (KeyError, OSError):  # no login name in this environment
            os_user = ""
        with history_source("shell", os_user=os_user):
            return super().handle(**options)
