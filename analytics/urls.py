"""URLs of analytics pages; mounted under the admin by ``companyos.config.urls``."""

from django.contrib import admin
from django.urls import path

from analytics import views

app_name = "analytics"

urlpatterns = [
    path("", admin.site.admin_view(views.dashboard), name="dashboard"),
]
