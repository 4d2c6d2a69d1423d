from django.apps import AppConfig
from django.db.models.signals import post_save


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"
    description = "AI agents, their task queue and collaborations"

    def ready(self) -> None:
        # Real-time events from state changes, whichever code path saves.
        from agents import events

        post_save.connect(
            events.task_saved, sender="agents.AgentTask", dispatch_uid="agents.events.task_saved"
        )
