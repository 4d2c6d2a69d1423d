from django.apps import AppConfig


class DevelopmentConfig(AppConfig):
    name = "development"
    verbose_name = "Development"
    description = "Repositories, pull requests and deployments"
