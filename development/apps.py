from django.apps import AppConfig
from django.db.models.signals import post_save


class DevelopmentConfig(AppConfig):
    name = "development"
    verbose_name = "Development"
    description = "Repositories, pull requests and deployments"

    def ready(self) -> None:
        # Real-time events from state changes, whichever code path saves.
        from development import events

        post_save.connect(
            events.deployment_saved, sender="development.Deployment", dispatch_uid="development.events.deployment_saved"
        )
        post_save.connect(
            events.pull_request_saved,
            sender="development.PullRequest",
            dispatch_uid="development.events.pull_request_saved",
        )
