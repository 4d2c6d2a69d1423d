"""End to end, as ``dev.py run`` starts it: uvicorn, one ``run_worker`` and one ``run_scheduler`` on default periods.

What a new user does next: an ``echo`` agent task is completed within 2 s, a
webhook delivery is applied within 5 s of its 202, and a post scheduled 3 s
ahead is published on the (local) platform while a websocket client watches.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta

import pytest
import websockets
from django.conf import settings
from django.db import connection
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateWorker

from agents import services as agent_services
from agents.models import AgentTask
from agents.tests.factories import AgentFactory
from companyos.foundation.tests.support import current_database_url, manage_py, uvicorn_server
from core.services import api_token_create
from core.tests.factories import OrganizationFactory, OrganizationMemberFactory, UserFactory
from integrations.models import Integration, WebhookDelivery
from integrations.tests.factories import IntegrationFactory, WebhookFactory
from integrations.tests.webhook_helpers import endpoint, github_payload
from integrations.webhooks.signatures import github_signature
from social.models import Platform, SocialPost
from social.tests.factories import SocialAccountFactory, SocialPostFactory
from social.tests.platform_server import platform_server

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def seconds_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def schedule_post(account) -> None:
    """Schedule a post 3 s ahead, from a thread of its own: its connection is closed here."""
    try:
        SocialPostFactory(
            account=account,
            content="Launch day",
            status=SocialPost.Status.SCHEDULED,
            scheduled_at=timezone.now() + timedelta(seconds=3),
        )
    finally:
        connection.close()


def test_a_fresh_run_completes_tasks_applies_deliveries_and_publishes_scheduled_posts():
    organization = OrganizationFactory(slug="acme")
    user = UserFactory()
    OrganizationMemberFactory(organization=organization, user=user)
    _, token = api_token_create(user=user, name="e2e")
    agent = AgentFactory(organization=organization)
    webhook = WebhookFactory(
        integration=IntegrationFactory(organization=organization, service=Integration.Service.GITHUB), events=[]
    )
    x = IntegrationFactory(organization=organization, service=Platform.TWITTER, credentials={"access_token": "t"})
    account = SocialAccountFactory(organization=organization, platform=Platform.TWITTER, integration=x)

    with platform_server() as platform, ExitStack() as processes:
        env = {
            "DATABASE_URL": current_database_url(),
            "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
            "CHANNEL_LAYER": settings.CHANNEL_LAYER,
            "SOCIAL_X_API_URL": platform.url,
        }
        port = processes.enter_context(uvicorn_server(env={**os.environ, **env}))
        worker = processes.enter_context(manage_py("run_worker", env=env))
        scheduler = processes.enter_context(manage_py("run_scheduler", env=env))
        seconds_until(ProcrastinateWorker.objects.exists, 60, "the worker starts")
        seconds_until(lambda: "starting: concurrency" in worker.output(), 60, "its agent Worker starts")

        task = agent_services.task_enqueue(agent=agent, task_type="echo", title="hello", input={"say": "hi"})
        took = seconds_until(
            lambda: AgentTask.objects.get(pk=task.pk).status == AgentTask.Status.COMPLETED, 2, "the echo task"
        )
        print(f"echo task completed in {took:.2f} s")

        body = github_payload("ping/payload.json")
        request = urllib.request.Request(  # noqa: S310 - our local server
            f"http://127.0.0.1:{port}{endpoint(webhook)}",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "ping",
                "X-GitHub-Delivery": "e2e-ping",
                "X-Hub-Signature-256": github_signature(webhook.secret, body),
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 202
        took = seconds_until(
            lambda: WebhookDelivery.objects.get(delivery_id="e2e-ping").status == WebhookDelivery.Status.PROCESSED,
            5,
            "the delivery",
        )
        print(f"delivery processed {took:.2f} s after its 202")

        async def watch_a_post_get_published() -> list[dict]:
            url = f"ws://127.0.0.1:{port}/ws/events/"
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                await ws.send(json.dumps({"action": "subscribe", "organization": "acme", "topics": ["social.post"]}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
                await asyncio.to_thread(schedule_post, account)
                frames = []
                # The default period of publish_due_posts is 10 s.
                while not any(f.get("event", {}).get("type") == "social.post.published" for f in frames):
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
                return frames

        frames = asyncio.run(watch_a_post_get_published())
        events = [frame["event"]["type"] for frame in frames if frame["type"] == "event"]
        assert events[-3:] == ["social.post.scheduled", "social.post.publishing", "social.post.published"]

    post = SocialPost.objects.get(account=account)
    (tweet,) = platform.posts
    assert (post.status, post.external_id, tweet["text"]) == (SocialPost.Status.PUBLISHED, tweet["id"], "Launch day")
    assert worker.returncode == 0 and scheduler.returncode == 0, worker.output() + scheduler.output()
