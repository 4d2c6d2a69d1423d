"""The ``/ws/events/`` consumer: the protocol of ``shared/design/events.md``.

One connection subscribes to topics of the organizations its user belongs
to; each (organization, topic) is a channel-layer group that
``companyos.foundation.events.publish_on_commit`` sends to. Frames are JSON text;
errors answer an ``error`` frame and keep the connection open.

Replay (``since``) joins the groups *before* reading the stored events, and
this consumer handles one message at a time, so live events published
meanwhile wait in the channel's queue: they are sent after the replay,
skipping the ids the replay already sent. No gap, no duplicate.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from companyos.foundation.events import ALL_TOPICS, TOPICS, event_frame, topic_group, user_group
from companyos.realtime.selectors import events_to_replay, organization_of_member

# Close code for a connection without valid credentials (4000-4999: application codes).
CLOSE_UNAUTHENTICATED = 4401


class ProtocolError(Exception):
    """Bad client input: answered with an ``error`` frame; the connection stays open."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EventsConsumer(AsyncWebsocketConsumer):
    """Streams an authenticated user's organizations' events."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch first runs close_old_connections through
        # sync_to_async: one hop to the single sync thread per message. With a
        # thousand connections every event would queue a thousand hops there,
        # which capped fan-out. This consumer reaches the database only through
        # database_sync_to_async, which closes stale connections itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first: a handshake refused before accepting shows the client
            # an HTTP 403, not the close code.
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id: uuid.UUID = user.pk
        # organization id (str) → subscribed topics
        self.subscriptions: dict[str, set[str]] = {}
        # organization id (str) → monotonic time of the last membership check
        self.checked_at: dict[str, float] = {}
        # organization id (str) → (event ids the last replay sent, when to forget them)
        self.replayed: dict[str, tuple[set[str], float]] = {}
        await self.channel_layer.group_add(user_group(self.user_id), self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "user_id"):
            return
        for organization_id, topics in self.subscriptions.items():
            await self._leave(organization_id, topics)
        await self.channel_layer.group_discard(user_group(self.user_id), self.channel_name)

    # --- Client frames -----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            request = self._parse(text_data, bytes_data)
            action = request.get("action")
            handler = {"subscribe": self._subscribe, "unsubscribe": self._unsubscribe, "ping": self._ping}.get(action)
            if handler is None:
                raise ProtocolError("unknown_action", f"Unknown action {action!r}: use subscribe, unsubscribe or ping.")
            await handler(request)
        except ProtocolError as error:
            await self._send_json({"type": "error", "code": error.code, "message": error.message})

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        frame = text_data if text_data is not None else bytes_data or b""
        size = len(frame.encode()) if isinstance(frame, str) else len(frame)
        if size > settings.EVENTS_MAX_FRAME_BYTES:
            raise ProtocolError("frame_too_large", f"Frames are limited to {settings.EVENTS_MAX_FRAME_BYTES} bytes.")
        if text_data is None:
            raise ProtocolError("invalid_json", "Send JSON in text frames, not binary ones.")
        try:
            request = json.loads(text_data)
        except ValueError:
            raise ProtocolError("invalid_json", "The frame is not valid JSON.") from None
        if not isinstance(request, dict):
            raise ProtocolError("invalid_request", "A frame is a JSON object with an 'action'.")
        return request

    async def _ping(self, request: dict[str, Any]) -> None:
        await self._send_json({"type": "pong"})

    async def _subscribe(self, request: dict[str, Any]) -> None:
        organization = self._organization_argument(request)
        topics = self._topics_argument(request)
        since = self._since_argument(request)
        organization_uuid = await self._member_organization(organization)
        if organization_uuid is None:
            raise ProtocolError("forbidden", f"You are not a member of organization {organization!r}.")
        organization_id = str(organization_uuid)
        subscribed = self.subscriptions.setdefault(organization_id, set())
        for topic in sorted(topics - subscribed):
            await self.channel_layer.group_add(topic_group(organization_id, topic), self.channel_name)
        subscribed |= topics
        self.checked_at[organization_id] = time.monotonic()
        await self._send_json({"type": "subscribed", "organization": organization_id, "topics": sorted(topics)})
        if since is not None:
            await self._replay(organization_uuid, topics, since)

    async def _replay(self, organization_id: uuid.UUID, topics: set[str], since: uuid.UUID) -> None:
        limit = settings.EVENTS_REPLAY_LIMIT
        events = await database_sync_to_async(events_to_replay)(
            organization_id=organization_id, topics=topics, since=since, limit=limit + 1
        )
        sent = {str(event.id) for event in events[:limit]}
        # Live messages queued while replaying carry these ids too; they may
        # wait in the channel up to its expiry (a minute), so remember them as long.
        self.replayed[str(organization_id)] = (sent, time.monotonic() + 60)
        for event in events[:limit]:
            await self.send(text_data=event_frame(event, replay=True))
        if len(events) > limit:
            raise ProtocolError(
                "replay_truncated",
                f"More than {limit} events were missed; the first {limit} were sent. "
                "Reload the state, then subscribe again.",
            )

    async def _unsubscribe(self, request: dict[str, Any]) -> None:
        organization = self._organization_argument(request)
        topics = self._topics_argument(request)
        organization_id = await self._subscribed_organization(organization)
        if organization_id is None:
            raise ProtocolError("not_found", f"Not subscribed to organization {organization!r}.")
        await self._drop(organization_id, topics)
        await self._send_json({"type": "unsubscribed", "organization": organization_id, "topics": sorted(topics)})

    async def _subscribed_organization(self, organization: str) -> str | None:
        try:
            organization_id = str(uuid.UUID(organization))
        except ValueError:
            # A slug: resolve it the same way as on subscribe.
            found = await self._member_organization(organization)
            organization_id = str(found) if found else None
        return organization_id if organization_id in self.subscriptions else None

    @staticmethod
    def _organization_argument(request: dict[str, Any]) -> str:
        organization = request.get("organization")
        if not isinstance(organization, str) or not organization:
            raise ProtocolError("invalid_request", "'organization' must be an organization's id or slug.")
        return organization

    @staticmethod
    def _topics_argument(request: dict[str, Any]) -> set[str]:
        topics = request.get("topics")
        if not isinstance(topics, list) or not topics or not all(isinstance(topic, str) for topic in topics):
            raise ProtocolError("invalid_request", "'topics' must be a non-empty list of topic names.")
        if ALL_TOPICS in topics:
            return set(TOPICS)
        unknown = sorted(set(topics) - set(TOPICS))
        if unknown:
            raise ProtocolError("unknown_topic", f"Unknown topics {unknown}; known: {sorted(TOPICS)} or '*'.")
        return set(topics)

    @staticmethod
    def _since_argument(request: dict[str, Any]) -> uuid.UUID | None:
        since = request.get("since")
        if since is None:
            return None
        try:
            since_id = uuid.UUID(since)
        except (TypeError, ValueError, AttributeError):
            since_id = None
        if since_id is None or since_id.version != 7:
            raise ProtocolError("invalid_since", "'since' must be the id of an event you received.")
        return since_id

    # --- Channel-layer messages ------------------------------------------------

    async def events_deliver(self, message: dict[str, Any]) -> None:
        """A published event (``companyos.foundation.events.publish_on_commit``)."""
        organization_id = message["organization"]
        if organization_id not in self.subscriptions:
            return  # unsubscribed while the message was on its way
        since_check = time.monotonic() - self.checked_at.get(organization_id, 0.0)
        stale = since_check > settings.EVENTS_MEMBERSHIP_RECHECK_SECONDS
        if stale and not await self._still_member(organization_id):
            await self._revoke(organization_id)
            return
        replayed = self.replayed.get(organization_id)
        if replayed is not None:
            ids, forget_at = replayed
            if time.monotonic() > forget_at:
                del self.replayed[organization_id]
            elif message["id"] in ids:
                return
        await self.send(text_data=message["text"])

    async def events_control(self, message: dict[str, Any]) -> None:
        """A control message for this user's connections (``companyos.foundation.events.control_on_commit``)."""
        action = message.get("action")
        if action == "membership_revoked" and message["organization"] in self.subscriptions:
            await self._revoke(message["organization"])
        elif action == "token_revoked" and self.scope.get("api_token_id") == message["token"]:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    # --- Helpers -----------------------------------------------------------------

    async def _member_organization(self, organization: str) -> uuid.UUID | None:
        return await database_sync_to_async(organization_of_member)(user_id=self.user_id, organization=organization)

    async def _still_member(self, organization_id: str) -> bool:
        found = await self._member_organization(organization_id)
        self.checked_at[organization_id] = time.monotonic()
        return found is not None

    async def _revoke(self, organization_id: str) -> None:
        topics = set(self.subscriptions[organization_id])
        await self._drop(organization_id, topics)
        await self._send_json(
            {"type": "unsubscribed", "organization": organization_id, "topics": sorted(topics), "reason": "forbidden"}
        )

    async def _drop(self, organization_id: str, topics: set[str]) -> None:
        subscribed = self.subscriptions[organization_id]
        await self._leave(organization_id, topics & subscribed)
        subscribed -= topics
        if not subscribed:
            del self.subscriptions[organization_id]
            self.checked_at.pop(organization_id, None)
            self.replayed.pop(organization_id, None)

    async def _leave(self, organization_id: str, topics: set[str]) -> None:
        for topic in topics:
            await self.channel_layer.group_discard(topic_group(organization_id, topic), self.channel_name)

    async def _send_json(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))
