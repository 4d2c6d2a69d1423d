from django.apps import AppConfig


class DesignConfig(AppConfig):
    name = "design"
    verbose_name = "Design"
    description = "Figma files and design components"
