"""WSGI entry point (HTTP only; the ASGI application also serves websockets)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.config.settings")
application = get_wsgi_application()
