"""ASGI entry point: HTTP through Django, websockets (``/ws/events/``) through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.settings")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from companyos.checks import verify_encryption_keys  # noqa: E402
from companyos.realtime.auth import EventsAuthStack  # noqa: E402
from companyos.realtime.routing import websocket_urlpatterns  # noqa: E402

# ASGI servers run no system checks: refuse to serve with a key that cannot
# decrypt the stored credentials.
verify_encryption_keys()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": EventsAuthStack(URLRouter(websocket_urlpatterns)),
    }
)
