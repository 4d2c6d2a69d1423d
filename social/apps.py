from django.apps import AppConfig
from django.db.models.signals import post_save


class SocialConfig(AppConfig):
    name = "social"
    verbose_name = "Social"
    description = "Social accounts and posts"

    def ready(self) -> None:
        # Real-time events from state changes, whichever code path saves.
        from social import events

        post_save.connect(
            events.post_saved, sender="social.SocialPost", dispatch_uid="social.events.post_saved"
        )
