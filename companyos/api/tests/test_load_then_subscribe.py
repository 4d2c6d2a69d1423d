"""The handshake of docs/api.md, end to end: list the deployments, subscribe with the page's
``event_position`` as ``since``, and while writes continue end with the database's state."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import urllib.request

import pytest
import websockets
from django.db import connection
from django.utils import timezone

from companyos.api.tests.conftest import member_with_token
from companyos.foundation.tests.support import child_env, uvicorn_server
from development.models import Deployment
from development.services import deployment_set_state
from development.tests.factories import DeploymentFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WRITES = 60


def queued_deployment(organization) -> Deployment:
    return DeploymentFactory(organization=organization, state=Deployment.State.QUEUED, started_at=None, ready_at=None)


def keep_writing(organization, done: threading.Event) -> None:
    """New deployments and finished ones, through the services, as webhooks would."""
    rng = random.Random(15)
    try:
        for _ in range(WRITES):
            queued = list(Deployment.objects.filter(organization=organization, state=Deployment.State.QUEUED)[:5])
            if queued and rng.random() < 0.6:
                state = rng.choice([Deployment.State.READY, Deployment.State.ERROR, Deployment.State.CANCELED])
                deployment_set_state(deployment=rng.choice(queued), state=state, at=timezone.now())
            else:
                queued_deployment(organization)
    finally:
        connection.close()
        done.set()


def get_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 - our server
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.load(answer)


async def load_then_follow(port: int, organization, token: str, writer_done: threading.Event) -> dict[str, str]:
    """What a client knows in the end: every deployment's state, from the pages and then the events."""
    state: dict[str, str] = {}
    seen: dict[str, str | None] = {}  # deployment id -> newest event id applied to it
    url, position = f"http://127.0.0.1:{port}/api/v1/orgs/{organization.slug}/deployments/?limit=7", None
    cursor = ""
    while True:
        page = await asyncio.to_thread(get_json, url + cursor, token)
        position = position or page["event_position"]  # the first page's: read before any of the state
        for item in page["items"]:
            state[item["id"]], seen[item["id"]] = item["state"], item["last_event_id"]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
        await asyncio.sleep(0.05)  # writes land between pages
    ws_url = f"ws://127.0.0.1:{port}/ws/events/"
    async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        subscribe = {"action": "subscribe", "organization": organization.slug, "topics": ["deployment"]}
        await ws.send(json.dumps(subscribe | {"since": position}))
        quiet_since = None
        while True:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                if writer_done.is_set():
                    quiet_since = quiet_since or asyncio.get_running_loop().time()
                    if asyncio.get_running_loop().time() - quiet_since > 3:
                        return state
                continue
            if frame.get("type") != "event":
                continue
            event = frame["event"]
            subject = event["subject"]["id"]
            # Ids grow with time: an event no newer than what the object showed is already in its state.
            if seen.get(subject) is not None and event["id"] <= seen[subject]:
                continue
            state[subject], seen[subject] = event["data"]["state"], event["id"]


def test_a_client_that_lists_then_subscribes_with_the_position_ends_with_the_databases_state(org_a):
    for _ in range(20):
        queued_deployment(org_a)
    token = member_with_token(org_a)
    with uvicorn_server(env=child_env(API_RATE_LIMIT_PER_MINUTE="0", LOG_LEVEL="WARNING")) as port:
        writer_done = threading.Event()
        writer = threading.Thread(target=keep_writing, args=(org_a, writer_done))
        writer.start()
        try:
            known = asyncio.run(load_then_follow(port, org_a, token.raw, writer_done))
        finally:
            writer.join()
    database = {
        str(pk): state for pk, state in Deployment.objects.filter(organization=org_a).values_list("id", "state")
    }
    assert len(database) > 20
    assert known == database
