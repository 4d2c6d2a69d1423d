from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The HTTP API edge (``/api/v1/``): the state behind the websocket's events, docs/api.md."""

    name = "companyos.api"
    label = "api"
    verbose_name = "HTTP API"
