from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    # Tokens are URL-safe base64 (integrations.models.new_endpoint_token): anything else is a 404.
    path("<slug:endpoint_token>/", views.webhook_receive, name="webhook_receive"),
]
