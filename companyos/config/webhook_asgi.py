"""The webhook intake's own Django handler: its async view behind async middleware only.

Behind the site's full chain, synchronous middleware (static files, change
history, read-your-writes) would run each delivery in a thread of its own
and wait there for every database round trip. The intake's chain is
``WEBHOOK_MIDDLEWARE``: what shapes any answer (HTTPS redirect, allowed
hosts, security headers), with their hooks run on the event loop.
companyos/config/asgi.py sends ``/webhooks/`` here.
"""

from __future__ import annotations

import csp.middleware
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.signals import request_started
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.test.utils import override_settings
from django.urls import set_script_prefix

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


class WebhookHandler(ASGIHandler):
    """Django's ASGI handler with ``WEBHOOK_MIDDLEWARE`` as its chain, and no thread hop or task per request.

    Django's handler sends the request signals through ``sync_to_async`` and
    runs the view in a task of its own beside one that listens for the
    client hanging up, to cancel the view. The signals' receivers are
    Django's own (reset the queries log and the URLconf, close unusable
    database and cache connections), a few microseconds each and doing no
    I/O: this path opens no connection of Django's. They run here on the
    event loop, where a receiver that touched the database would be refused
    by Django (SynchronousOnlyOperation), not block the loop, and an async
    receiver would fail loudly (``Signal.send`` cannot await it). The view runs
    to its end: a sender that hangs up mid-delivery redelivers, and a
    delivery already stored is then answered as a duplicate.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE, once, here.
        with override_settings(MIDDLEWARE=settings.WEBHOOK_MIDDLEWARE):
            super().load_middleware(is_async=is_async)

    async def handle(self, scope, receive, send) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with body_file:
            set_script_prefix(get_script_prefix(scope))
            request_started.send(sender=self.__class__, scope=scope)
            request, response = self.create_request(scope, body_file)
            if request is not None:
                response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            finally:
                response.close()  # sends request_finished
