from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView

from companyos.foundation.health import healthz

urlpatterns = [
    # Before the admin, whose catch-all would read "dashboard" as a model name.
    path("admin/analytics/dashboard/", include("analytics.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # Browsers ask for it whatever the page links; the icon is a static file (looked up
    # when asked: the manifest of collected files may not exist when URLs load).
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("companyos/favicon.ico"), permanent=True)),
    path("webhooks/", include("integrations.urls")),
    path("api/", include("companyos.api.urls")),
]
