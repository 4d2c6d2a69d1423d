"""``manage.py listen_events --organization <slug>``: print live events from the websocket endpoint.

A real websocket client: it connects to a running server (``--url``),
subscribes, prints each event as it arrives, and on a dropped connection
(or a 4008 close for reading too slowly) reconnects with ``since``. Gap-free:
while connected the server repairs what the channel layer lost, and the
client prints each id once (delivery is at least once: the replay overlaps a
little on purpose).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from collections import deque

import websockets
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.models import User
from core.services import api_token_create

TOKEN_ENV = "COMPANYOS_TOKEN"  # noqa: S105 -- the variable's name, not a secret
# Remember this many printed ids to drop replay overlaps (far more than an overlap holds).
SEEN_IDS = 10_000


class Command(BaseCommand):
    help = "Connect to /ws/events/ and print an organization's events as they arrive."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--organization", required=True, help="Organization slug or id.")
        parser.add_argument(
            "--topics", nargs="+", default=["*"], help="Topics (deployment, agent.task, ...); default all."
        )
        parser.add_argument("--url", default="ws://127.0.0.1:8000/ws/events/", help="The websocket endpoint.")
        parser.add_argument("--token", default=None, help=f"API token (default: ${TOKEN_ENV}).")
        parser.add_argument("--email", default=None, help="Without a token: create a one-hour token for this user.")
        parser.add_argument("--since", default=None, help="Replay the events after this event id first.")
        parser.add_argument("--json", action="store_true", help="Print each event's full JSON envelope.")
        parser.add_argument("--count", type=int, default=None, help="Exit after this many events.")

    def handle(self, *args, **options) -> None:
        token = options["token"] or os.environ.get(TOKEN_ENV) or self._short_lived_token(options["email"])
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self._listen(token, options))

    def _short_lived_token(self, email: str | None) -> str:
        if not email:
            raise CommandError(f"Pass --token, set ${TOKEN_ENV}, or pass --email to create a short-lived token.")
        try:
            user = User.objects.get_by_natural_key(email)
        except User.DoesNotExist:
            raise CommandError(f"No user with email {email!r}.") from None
        _, raw = api_token_create(user=user, name="listen_events", expires_at=timezone.now() + dt.timedelta(hours=1))
        return raw

    async def _listen(self, token: str, options) -> None:
        seen: deque[str] = deque(maxlen=SEEN_IDS)
        since = options["since"]
        printed = 0
        while True:
            try:
                async with websockets.connect(
                    options["url"], additional_headers={"Authorization": f"Bearer {token}"}
                ) as ws:
                    subscribe = {"action": "subscribe", "organization": options["organization"]}
                    subscribe["topics"] = options["topics"]
                    if since:
                        subscribe["since"] = since
                    await ws.send(json.dumps(subscribe))
                    async for text in ws:
                        frame = json.loads(text)
                        if frame["type"] == "error":
                            raise CommandError(f"{frame['code']}: {frame['message']}")
                        if frame["type"] == "subscribed":
                            self.stderr.write(f"Subscribed to {', '.join(frame['topics'])} of {frame['organization']}.")
                        if frame["type"] != "event" or frame["event"]["id"] in seen:
                            continue
                        seen.append(frame["event"]["id"])
                        since = frame["event"]["id"]
                        self.stdout.write(text if options["json"] else self._line(frame))
                        printed += 1
                        if options["count"] is not None and printed >= options["count"]:
                            return
            except websockets.ConnectionClosed as closed:
                if closed.rcvd is not None and closed.rcvd.code == 4401:
                    raise CommandError("Not authenticated: the token is wrong, expired or revoked.") from None
                self.stderr.write("Connection lost; reconnecting…")
            except OSError as error:
                self.stderr.write(f"Cannot connect ({error}); retrying…")
            await asyncio.sleep(1)

    @staticmethod
    def _line(frame) -> str:
        event = frame["event"]
        data = event["data"]
        summary = data.get("title") or data.get("project_name") or data.get("content", "")[:60]
        replay = " (replay)" if frame.get("replay") else ""
        return f"{event['occurred_at']}  {event['type']:<30} {event['subject']['id']}  {summary}{replay}"
