"""End to end: real ASGI server processes, real websocket clients, a change made by a third process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import websockets

from analytics.models import Event
from companyos.foundation.tests.support import uvicorn_server
from companyos.realtime.tests.support import acme_and_globex, child_env
from core.tests.factories import OrganizationFactory, OrganizationMemberFactory, UserFactory
from development.models import Deployment
from development.tests.factories import DeploymentFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[3]


@contextmanager
def asgi_server() -> Iterator[str]:
    """A uvicorn process serving companyos.config.asgi:application; yields its websocket URL."""
    with uvicorn_server(env=child_env()) as port:
        yield f"ws://127.0.0.1:{port}/ws/events/"


def manage(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


async def subscribed_client(url: str, token: str, organization: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    await ws.send(json.dumps({"action": "subscribe", "organization": organization, "topics": ["*"]}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply["type"] == "subscribed", reply
    return ws


async def drain(ws: websockets.ClientConnection, seconds: float) -> list[dict]:
    """Every frame but the periodic ``position`` frames received within ``seconds``."""
    frames = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            break
        if frame["type"] != "position":
            frames.append(frame)
    return frames


def test_two_servers_deliver_a_change_made_by_a_third_process_once_and_only_to_members():
    acme, _, alice_token, mallory_token = acme_and_globex()
    deployment = DeploymentFactory(organization=acme, state=Deployment.State.BUILDING, ready_at=None)

    with asgi_server() as url_1, asgi_server() as url_2:

        async def scenario():
            clients = [
                await subscribed_client(url_1, alice_token, "acme"),
                await subscribed_client(url_2, alice_token, "acme"),
            ]
            outsider = await subscribed_client(url_1, mallory_token, "globex")
            # A third process changes the deployment with a plain ORM save.
            save = (
                "from django.utils import timezone; from development.models import Deployment; "
                f"d = Deployment.objects.get(pk='{deployment.pk}'); "
                "d.state = 'ready'; d.ready_at = timezone.now(); d.save()"
            )
            await asyncio.to_thread(manage, "shell", "-c", save)
            received = [await drain(ws, 3) for ws in clients]
            nothing = await drain(outsider, 0.5)
            for ws in (*clients, outsider):
                await ws.close()
            return received, nothing

        received, nothing = asyncio.run(scenario())

    event = Event.objects.get(subject_id=deployment.pk, event_type="deployment.ready")
    created = Event.objects.get(subject_id=deployment.pk, event_type="deployment.created")
    for frames in received:
        # The gap repair may also hand out what committed just before the subscription
        # (docs/realtime.md: at least once); the change itself arrives exactly once.
        events = [(f["type"], f["event"]["type"], f["event"]["id"]) for f in frames]
        assert [e for e in events if e[2] != str(created.id)] == [("event", "deployment.ready", str(event.id))]
    assert nothing == []


def test_listen_events_prints_events_as_they_arrive():
    acme = OrganizationFactory(slug="acme")
    alice = UserFactory()
    OrganizationMemberFactory(organization=acme, user=alice)
    deployment = DeploymentFactory(organization=acme, state=Deployment.State.BUILDING, ready_at=None)

    with asgi_server() as url:
        listener = subprocess.Popen(
            [sys.executable, "manage.py", "listen_events", "--organization", "acme", "--topics", "deployment"]
            + ["--url", url, "--email", alice.email, "--json", "--count", "1"],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Wait until it has subscribed (it says so on stderr), then change the deployment.
            said = []
            while not any("Subscribed to deployment" in line for line in said):
                said.append(listener.stderr.readline())
                assert said[-1] and len(said) < 20, said
            deployment.state = Deployment.State.ERROR
            deployment.save()
            out, _ = listener.communicate(timeout=20)
        finally:
            listener.kill()
    frame = json.loads(out)
    assert frame["event"]["type"] == "deployment.error"
    assert frame["event"]["id"] == str(Event.objects.get(subject_id=deployment.pk, event_type="deployment.error").id)


def test_create_api_token_prints_a_working_token_once():
    alice = UserFactory(email="alice@example.com")
    result = manage("create_api_token", "alice@example.com", "--name", "ci", "--expires-in-days", "7")
    raw = result.stdout.strip()
    assert raw.startswith("cos_")
    assert "will not be shown again" in result.stderr
    token = alice.api_tokens.get()
    assert token.name == "ci"
    assert token.prefix == raw[:12]
    assert raw not in (token.token_hash, token.prefix)  # only a hash is stored
    assert token.expires_at is not None
