from django.contrib import admin
from django.urls import include, path

from companyos.foundation.health import healthz

urlpatterns = [
    # Before the admin, whose catch-all would read "dashboard" as a model name.
    path("admin/analytics/dashboard/", include("analytics.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("webhooks/", include("integrations.urls")),
    path("api/", include("companyos.api.urls")),
]
