"""``manage.py shell`` with every change it makes recorded as coming from the shell."""

import getpass

from django.core.management.commands import shell

from companyos.console.history import history_source


class Command(shell.Command):
    def handle(self, **options):
        with history_source("shell", os_user=getpass.getuser()):
            return super().handle(**options)
