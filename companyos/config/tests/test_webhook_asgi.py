"""The webhook intake's handler: async all the way, with the answers' security rules of every page."""

import asyncio
import importlib
import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.core.signals import request_finished, request_started

from companyos.config import webhook_asgi


@pytest.fixture
def asgi(db):
    """The ASGI entry point (importing it checks the encryption keys against the database)."""
    return importlib.import_module("companyos.config.asgi")


def test_its_chain_runs_on_the_event_loop():
    handler = webhook_asgi.WebhookHandler()

    assert asyncio.iscoroutinefunction(handler._middleware_chain)
    for path in settings.WEBHOOK_MIDDLEWARE:
        name = path.rpartition(".")[2]
        assert issubclass(getattr(webhook_asgi, name), webhook_asgi.HooksOnTheLoop), path
    # The same order as the site's chain, for the middleware they share.
    shared = [
        name.removeprefix("OnTheLoop") for name in (path.rpartition(".")[2] for path in settings.WEBHOOK_MIDDLEWARE)
    ]
    site = [path.rpartition(".")[2] for path in settings.MIDDLEWARE]
    assert [name for name in site if name in shared] == shared


async def request(
    asgi, method: str, path: str, host: str = "testserver", *, then_hang_up: bool = False
) -> tuple[int, dict[bytes, bytes]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host.encode())],
        "client": ("192.0.2.9", 4000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(asgi.application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    if then_hang_up:
        await communicator.send_input({"type": "http.disconnect"})
    start = await communicator.receive_output(timeout=10)
    await communicator.receive_output(timeout=10)
    await communicator.wait(timeout=10)
    return start["status"], {name.lower(): value for name, value in start["headers"]}


def test_deliveries_go_to_it_and_everything_else_to_the_sites_handler(asgi, monkeypatch):
    served = []

    async def webhook_handler(scope, receive, send):
        served.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    monkeypatch.setattr(asgi, "webhook_asgi_app", webhook_handler)

    assert asyncio.run(request(asgi, "POST", "/webhooks/some-token/"))[0] == 204
    assert asyncio.run(request(asgi, "GET", "/admin/login/"))[0] != 204
    assert served == ["/webhooks/some-token/"]


def test_its_answers_carry_the_security_headers_of_every_page(asgi, settings):
    settings.ALLOWED_HOSTS = ["testserver"]

    status, headers = asyncio.run(request(asgi, "GET", "/webhooks/some-token/"))

    assert status == 405  # before any database work: POST only
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert b"content-security-policy" in headers


def test_its_synchronous_parts_run_on_the_event_loop_not_in_a_thread_per_request(asgi, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    threads = []

    def receiver(**kwargs):
        threads.append(threading.current_thread())

    for signal in (request_started, request_finished):
        signal.connect(receiver, dispatch_uid="test-thread")
    try:
        assert asyncio.run(request(asgi, "GET", "/webhooks/some-token/"))[0] == 405
    finally:
        for signal in (request_started, request_finished):
            signal.disconnect(dispatch_uid="test-thread")

    assert threads == [threading.current_thread()] * 2  # asyncio.run's loop runs in this thread


def test_a_host_not_allowed_is_refused_before_the_view(asgi, settings):
    settings.ALLOWED_HOSTS = ["testserver"]

    status, _ = asyncio.run(request(asgi, "POST", "/webhooks/some-token/", host="evil.example"))

    assert status == 400


def test_a_sender_hanging_up_does_not_cancel_its_delivery(asgi, settings):
    settings.ALLOWED_HOSTS = ["testserver"]

    status, _ = asyncio.run(request(asgi, "POST", "/webhooks/some-token/", then_hang_up=True))

    assert status == 404, "answered after the lookup: the view ran to its end"
