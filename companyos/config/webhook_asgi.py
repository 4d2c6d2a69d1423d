"""The webhook intake's own Django handler: its async view behind async middleware only.

Behind the site's full chain, synchronous middleware (static files, change
history, read-your-writes) would run each delivery in a thread of its own
and wait there for every database round trip. The intake's chain is
``WEBHOOK_MIDDLEWARE``: what shapes any answer (HTTPS redirect, allowed
hosts, security headers), with their hooks run on the event loop.
companyos/config/asgi.py sends ``/webhooks/`` here.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future

import csp.middleware
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.test.utils import override_settings

PATH_PREFIX = "/webhooks/"  # companyos/config/urls.py


class HooksOnTheLoop:
    """Runs a ``MiddlewareMixin``'s hooks on the event loop, for hooks that do no I/O.

    ``MiddlewareMixin`` runs each hook through ``sync_to_async`` under ASGI:
    two thread hops per middleware per request, for a few header lookups.
    """

    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class OnTheLoopSecurityMiddleware(HooksOnTheLoop, SecurityMiddleware):
    """Django's, hooks on the event loop."""


class OnTheLoopCSPMiddleware(HooksOnTheLoop, csp.middleware.CSPMiddleware):
    """django-csp's, hooks on the event loop."""


class OnTheLoopCommonMiddleware(HooksOnTheLoop, CommonMiddleware):
    """Django's, hooks on the event loop."""


class OnTheLoopXFrameOptionsMiddleware(HooksOnTheLoop, XFrameOptionsMiddleware):
    """Django's, hooks on the event loop."""


class OnTheLoop(Executor):
    """Runs what is submitted at once, in the submitting thread: the event loop's."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever awaits the result
            future.set_exception(exc)
        return future


class WebhookHandler(ASGIHandler):
    """Django's ASGI handler with ``WEBHOOK_MIDDLEWARE`` as its chain.

    What Django still runs as synchronous code here is the request signals'
    receivers (Django's own: reset the queries log and the URLconf, close
    unusable database and cache connections), a few microseconds each, and
    doing no I/O: this path opens no connection of Django's. Django would
    start a thread per request for them; they run on the event loop instead.
    A receiver that touched the database there would be refused by Django
    (SynchronousOnlyOperation), not block the loop.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE, once, here.
        with override_settings(MIDDLEWARE=settings.WEBHOOK_MIDDLEWARE):
            super().load_middleware(is_async=is_async)

    async def __call__(self, scope, receive, send) -> None:
        # The outermost context decides: Django's own per-request one then takes this executor.
        async with ThreadSensitiveContext(executor=OnTheLoop()):
            await super().__call__(scope, receive, send)
