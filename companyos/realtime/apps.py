from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The websocket edge: consumers, their authentication, and the event-stream commands."""

    name = "companyos.realtime"
    label = "realtime"
    verbose_name = "Real-time events"

    def ready(self) -> None:
        from companyos.realtime import redaction

        redaction.install()
