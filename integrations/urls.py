from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("<str:endpoint_token>/", views.webhook_receive, name="webhook_receive"),
]
