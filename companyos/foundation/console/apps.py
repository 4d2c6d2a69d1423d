from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConsoleConfig(AppConfig):
    """The staff console's own data: change history and the staff roles."""

    name = "companyos.foundation.console"
    label = "console"
    verbose_name = "History and roles"
    description = "Who changed what, when and from where"

    def ready(self) -> None:
        from companyos.foundation.console import roles

        # Models added after the roles migration (later migrations of any app)
        # get their permissions into the groups on every migrate.
        post_migrate.connect(roles.sync_roles_after_migrate, dispatch_uid="console.sync_roles")
