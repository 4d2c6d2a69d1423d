"""ASGI entry point: HTTP through Django, websockets (``/ws/events/``) through Channels."""

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.config.settings")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from companyos.config import webhook_asgi  # noqa: E402
from companyos.foundation.checks import verify_encryption_keys  # noqa: E402
from companyos.realtime.auth import EventsAuthStack  # noqa: E402
from companyos.realtime.routing import websocket_urlpatterns  # noqa: E402


def _verify_encryption_keys() -> None:
    """Refuse to serve with a key that cannot decrypt the stored credentials.

    ASGI servers run no system checks. Some import the application inside
    their event loop (uvicorn --workers/--reload), where Django forbids
    synchronous database access: the check then runs in a thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        verify_encryption_keys()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(verify_encryption_keys).result()


_verify_encryption_keys()

webhook_asgi_app = webhook_asgi.WebhookHandler()


async def http_application(scope, receive, send) -> None:
    """Webhook deliveries to their own handler (webhook_asgi.py), everything else to Django's."""
    path = scope["path"].removeprefix(scope.get("root_path", ""))
    handler = webhook_asgi_app if path.startswith(webhook_asgi.PATH_PREFIX) else django_asgi_app
    await handler(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": EventsAuthStack(URLRouter(websocket_urlpatterns)),
    }
)
