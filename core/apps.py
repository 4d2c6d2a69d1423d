from django.apps import AppConfig
from django.db.models.signals import post_delete


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"
    description = "People and organizations"

    def ready(self) -> None:
        # Removing a membership cuts that user's live events of the organization.
        from core import events

        post_delete.connect(
            events.membership_deleted, sender="core.OrganizationMember", dispatch_uid="core.events.membership_deleted"
        )
