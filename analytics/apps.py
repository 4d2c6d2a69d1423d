from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics"
    description = "Events and metrics"
    console_links = [("Analytics dashboard", "analytics:dashboard")]
