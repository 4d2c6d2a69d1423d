"""The ``/ws/events/`` consumer: the protocol of docs/realtime.md.

One connection subscribes to topics of the organizations its user belongs
to; each (organization, topic) is a channel-layer group that
``companyos.foundation.events`` publishes to, and that the server process
joins once for all its connections (``companyos.realtime.feed`` hands each
event to :meth:`EventsConsumer.deliver`). Frames are JSON text; bad input
answers an ``error`` frame and keeps the connection open.

Delivery is at least once, and every event is sent at most once per
connection: live messages, the ``since`` replay and the gap repair of
``companyos.realtime.feed`` all go through :meth:`EventsConsumer._send_event`,
which drops the ids this connection already sent.

Every session is bounded: frames wait in a send buffer of at most
``EVENTS_SEND_BUFFER_BYTES`` that one task per connection writes out; a client
that does not read fills it and is closed with 4008. Subscriptions and
replays are limited per connection, and per token across connections and
processes (``companyos.realtime.limits``, which also limits the token's open
connections: 4429), the token's expiry closes the connection (4401), and the
connection leaves its groups however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections import deque
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from companyos.foundation.events import (
    ALL_TOPICS,
    declared_topics,
    event_frame,
    events_to_replay,
    user_group,
)
from companyos.foundation.ids import uuid7_floor
from companyos.realtime.feed import StoredEvent, current_feed, id_milliseconds, text_frame
from companyos.realtime.limits import TokenLimits
from companyos.realtime.selectors import organization_of_member

logger = logging.getLogger(__name__)

# Close codes (4000-4999: application codes).
# Without valid credentials, or they were revoked or expired while connected.
CLOSE_UNAUTHENTICATED = 4401
# The client did not read: its send buffer overflowed. Reconnect and subscribe with `since`.
CLOSE_TOO_SLOW = 4008
# The token (or the user's browser sessions) already holds EVENTS_MAX_CONNECTIONS_PER_TOKEN connections.
CLOSE_TOO_MANY_CONNECTIONS = 4429
# The channel layer (Redis) is unreachable, so the connection could not join its user's group:
# the standard "Try Again Later". Reconnect with backoff and subscribe with `since`.
CLOSE_TRY_AGAIN_LATER = 1013

# A closing connection whose close frame cannot be written (the client reads
# nothing) is dropped after this long: its buffer is freed, its groups left already.
CLOSE_GRACE_SECONDS = 10.0
# An organization is an id or a slug: nothing else reaches the database.
ORGANIZATION = re.compile(r"[A-Za-z0-9_-]{1,100}")


class ProtocolError(Exception):
    """Bad client input: answered with an ``error`` frame; the connection stays open."""

    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class EventsConsumer(AsyncWebsocketConsumer):
    """Streams an authenticated user's organizations' events."""

    async def __call__(self, scope, receive, send) -> None:
        # Channels' consumer ends on a disconnect message or an exception; this
        # wrapper also ends it when the connection decides to stop (a close that
        # could not be written), and leaves the groups whichever way it ended.
        self.stopped = asyncio.Event()
        self.closing = False
        self.subscriptions: dict[str, set[str]] = {}
        self.user_id: uuid.UUID | None = None
        self.limits: TokenLimits | None = None
        self._tasks: set[asyncio.Task] = set()
        self._timers: list[asyncio.TimerHandle] = []
        serving = asyncio.ensure_future(super().__call__(scope, receive, send))
        stopping = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stopping, *self._tasks):
                task.cancel()
            for timer in self._timers:
                timer.cancel()
            if not serving.done():
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leave_all(), CLOSE_GRACE_SECONDS)
        if not serving.cancelled() and (error := serving.exception()) is not None:
            if not hasattr(self, "channel_name"):  # the layer could not make the connection's channel
                await receive()  # the client's websocket.connect
                await self._try_again_later(send, error)
                return
            raise error

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
            self.closing = True  # frames arriving before the close are ignored
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        limits = TokenLimits(self.scope, self.channel_name)
        self.limits = limits  # set first: however connect ends, leaving releases what was counted
        if not await limits.take_connection():
            self.closing = True
            await self.accept()
            holder = limits.holder.lower()
            reason = f"Too many connections: {holder} may hold {settings.EVENTS_MAX_CONNECTIONS_PER_TOKEN}."
            await self.close(code=CLOSE_TOO_MANY_CONNECTIONS, reason=reason[:120])
            return
        self.user_id = user.pk
        # organization id (str) → the smallest id the gap repair sends
        self.repair_floor: dict[str, str] = {}
        # organization id (str) → live events (id, frame) waiting for that organization's replay to be sent
        self.held: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self.held_chars = 0
        # Event ids sent, so that no path sends one twice, in two generations:
        # each id is remembered at least as long as the repair may hand it out again.
        self.sent_ids: set[str] = set()
        self.sent_ids_before: set[str] = set()
        self.sent_ids_seconds = settings.EVENTS_REPLAY_OVERLAP_SECONDS + 3 * settings.EVENTS_POSITION_SECONDS + 5
        self.sent_ids_until = time.monotonic() + self.sent_ids_seconds
        self.send_buffer_chars = settings.EVENTS_SEND_BUFFER_BYTES
        # Monotonic times of the replays of the last minute.
        self.replays: deque[float] = deque()
        # ASGI messages for the writer task, and the room it frees (the replay waits for it).
        self.outbox: deque[dict[str, Any]] = deque()
        self.outbox_chars = 0
        self.outbox_room = asyncio.Event()
        # What the writer awaits while the outbox is empty (a bare future: the cheapest wake-up).
        self.frame_queued: asyncio.Future | None = None
        try:
            await self.channel_layer.group_add(user_group(self.user_id), self.channel_name)
        except Exception as error:  # Redis is away (each layer raises errors of its own)
            self.closing = True
            await self._try_again_later(self.base_send, error)
            return
        await self.accept()
        self._start(self._write_outbox())
        self._start(self._heartbeat())
        expires_at = self.scope.get("api_token_expires_at")
        if expires_at is not None:
            delay = max((expires_at - timezone.now()).total_seconds(), 0.0)
            self._timers.append(asyncio.get_running_loop().call_later(delay, self._close, CLOSE_UNAUTHENTICATED))

    @staticmethod
    async def _try_again_later(send, error: BaseException) -> None:
        """Refuse a handshake the channel layer cannot serve with a close code the client can act on,
        not an HTTP 500 (accepted first: a refusal before accepting shows no code)."""
        logger.warning("websocket refused, the channel layer is unreachable: %s: %s", type(error).__name__, error)
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER, "reason": "Live events unavailable."})

    async def disconnect(self, code: int) -> None:
        await self._leave_all()

    # --- Client frames -----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        try:
            request = self._parse(text_data, bytes_data)
            action = request.get("action")
            handlers = {"subscribe": self._subscribe, "unsubscribe": self._unsubscribe, "ping": self._ping}
            handler = handlers.get(action) if isinstance(action, str) else None
            if handler is None:
                raise ProtocolError("unknown_action", "Unknown action: use subscribe, unsubscribe or ping.")
            await handler(request)
        except ProtocolError as error:
            frame = {"type": "error", "code": error.code, "message": error.message}
            if error.retry_after is not None:
                frame["retry_after"] = error.retry_after
            self._send_frame(frame)
        except Exception:  # a bug must not cost the client its connection, nor show it a traceback
            logger.exception("Websocket frame failed")
            self._send_frame({"type": "error", "code": "internal_error", "message": "The frame could not be handled."})

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        frame = text_data if text_data is not None else bytes_data or b""
        size = len(frame.encode(errors="replace")) if isinstance(frame, str) else len(frame)
        if size > settings.EVENTS_MAX_FRAME_BYTES:
            raise ProtocolError("frame_too_large", f"Frames are limited to {settings.EVENTS_MAX_FRAME_BYTES} bytes.")
        if text_data is None:
            raise ProtocolError("invalid_json", "Send JSON in text frames, not binary ones.")
        try:
            request = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
            raise ProtocolError("invalid_json", "The frame is not valid JSON.") from None
        if not isinstance(request, dict):
            raise ProtocolError("invalid_request", "A frame is a JSON object with an 'action'.")
        return request

    async def _ping(self, request: dict[str, Any]) -> None:
        self._send_frame({"type": "pong"})

    async def _subscribe(self, request: dict[str, Any]) -> None:
        organization = self._organization_argument(request)
        topics = self._topics_argument(request)
        since = self._since_argument(request)
        organization_uuid = await self._member_organization(organization)
        if organization_uuid is None:
            raise ProtocolError("forbidden", f"You are not a member of organization {organization!r}.")
        organization_id = str(organization_uuid)
        subscribed = self.subscriptions.get(organization_id, set())
        count = sum(len(each) for each in self.subscriptions.values()) + len(topics - subscribed)
        if count > settings.EVENTS_MAX_SUBSCRIPTIONS:
            raise ProtocolError(
                "too_many_subscriptions",
                f"A connection holds at most {settings.EVENTS_MAX_SUBSCRIPTIONS} (organization, topic) subscriptions.",
            )
        if since is not None:
            self._check_replay_rate()
        limits = self.limits
        if limits is None or self.closing:
            return  # closed while checking the membership
        # Across the token's connections: what this subscribe adds, then its replay.
        added = [limits.subscription_member(organization_id, topic) for topic in sorted(topics - subscribed)]
        if not await limits.take_subscriptions(added):
            raise ProtocolError(
                "too_many_subscriptions",
                f"{limits.holder} may hold at most {settings.EVENTS_MAX_SUBSCRIPTIONS_PER_TOKEN} "
                "(organization, topic) subscriptions across all connections.",
            )
        if since is not None:
            retry_after = await limits.take_replay()
            if retry_after is not None:
                await limits.release(added)
                raise ProtocolError(
                    "replay_rate_limited",
                    f"{limits.holder} may send at most {settings.EVENTS_REPLAYS_PER_MINUTE_PER_TOKEN} subscribes "
                    f"with 'since' a minute across all connections; try again in {retry_after} s.",
                    retry_after=retry_after,
                )
            self.replays.append(time.monotonic())
        if self.closing:
            # Closed while checking the limits; leaving may have run already.
            await limits.release(added)
            return
        self.subscriptions[organization_id] = subscribed | topics
        if since is not None:
            self.held[organization_id] = []  # live events go out after the replay
        # An event stamped just before the subscription may commit after it (and
        # reach the group): the repair covers the overlap before it too.
        overlap_ms = int(settings.EVENTS_REPLAY_OVERLAP_SECONDS * 1000)
        floor = str(uuid7_floor(int(time.time() * 1000) - overlap_ms))
        self.repair_floor[organization_id] = min(self.repair_floor.get(organization_id, floor), floor)
        try:
            await current_feed().watch(self, organization_id)
        except Exception:  # Redis is away: the groups cannot be joined; nothing of this subscribe stays
            self._release_held(organization_id)
            await self._let_go(organization_id, self._forget(organization_id, topics - subscribed))
            raise
        self._send_frame({"type": "subscribed", "organization": organization_id, "topics": sorted(topics)})
        if since is not None:
            await self._replay(organization_uuid, topics, since)

    def _check_replay_rate(self) -> None:
        """Refuse a replay over this connection's rate; the caller records it once every limit agreed."""
        now = time.monotonic()
        while self.replays and self.replays[0] < now - 60:
            self.replays.popleft()
        if len(self.replays) >= settings.EVENTS_REPLAYS_PER_MINUTE:
            retry_after = max(1, int(self.replays[0] + 60 - now + 0.999))
            raise ProtocolError(
                "replay_rate_limited",
                f"At most {settings.EVENTS_REPLAYS_PER_MINUTE} subscribes with 'since' a minute per connection; "
                f"try again in {retry_after} s.",
                retry_after=retry_after,
            )

    async def _replay(self, organization_id: uuid.UUID, topics: set[str], since: uuid.UUID) -> None:
        limit = settings.EVENTS_REPLAY_LIMIT
        events = await database_sync_to_async(events_to_replay)(
            organization_id=organization_id, topics=topics, since=since, limit=limit + 1
        )
        # The gap repair covers the replayed window too: what commits late in it still reaches the client.
        overlap_ms = int(settings.EVENTS_REPLAY_OVERLAP_SECONDS * 1000)
        window = str(uuid7_floor(id_milliseconds(since) - overlap_ms))
        self.repair_floor[str(organization_id)] = min(self.repair_floor[str(organization_id)], window)
        try:
            for event in events[:limit]:
                # The replay waits for room in the send buffer instead of overflowing it.
                while self.outbox_chars > self.send_buffer_chars // 2 and not self.closing:
                    self.outbox_room.clear()
                    await self.outbox_room.wait()
                if str(organization_id) not in self.subscriptions:
                    return  # the membership was lost meanwhile
                self._send_event(str(event.id), text_frame(event_frame(event, replay=True)))
        finally:
            for event_id, frame in self._release_held(str(organization_id)):
                self._send_event(event_id, frame)
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
        await self._let_go(organization_id, self._forget(organization_id, topics))
        self._send_frame({"type": "unsubscribed", "organization": organization_id, "topics": sorted(topics)})

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
        if not isinstance(organization, str) or not ORGANIZATION.fullmatch(organization):
            raise ProtocolError("invalid_request", "'organization' must be an organization's id or slug.")
        return organization

    @staticmethod
    def _topics_argument(request: dict[str, Any]) -> set[str]:
        topics = request.get("topics")
        if not isinstance(topics, list) or not topics or not all(isinstance(topic, str) for topic in topics):
            raise ProtocolError("invalid_request", "'topics' must be a non-empty list of topic names.")
        known = declared_topics()
        if ALL_TOPICS in topics:
            return set(known)
        unknown = sorted(set(topics) - set(known))
        if unknown:
            shown = [topic[:40] for topic in unknown[:5]]
            raise ProtocolError("unknown_topic", f"Unknown topics {shown}; known: {sorted(known)} or '*'.")
        return set(topics)

    @staticmethod
    def _since_argument(request: dict[str, Any]) -> uuid.UUID | None:
        since = request.get("since")
        if since is None:
            return None
        try:
            since_id = uuid.UUID(since) if isinstance(since, str) else None
        except ValueError:
            since_id = None
        if since_id is None or since_id.version != 7:
            raise ProtocolError("invalid_since", "'since' must be the id of an event you received.")
        return since_id

    # --- Channel-layer messages ------------------------------------------------

    async def events_control(self, message: dict[str, Any]) -> None:
        """A control message for this user's connections (``companyos.foundation.events.control_on_commit``)."""
        action = message.get("action")
        if action == "membership_revoked":
            self.membership_lost(message["organization"])
        elif action == "token_revoked" and self.scope.get("api_token_id") == message["token"]:
            self._close(CLOSE_UNAUTHENTICATED)

    # --- From the process's feed (companyos.realtime.feed) ---------------------------

    def watched_topics(self, organization_id: str) -> set[str]:
        return self.subscriptions.get(organization_id, set())

    def deliver(self, organization_id: str, topic: str, event_id: str, frame: dict[str, str]) -> None:
        """A live event (``companyos.foundation.events``) of one of this process's groups."""
        if topic not in self.subscriptions.get(organization_id, ()):
            return  # another connection's topic, or unsubscribed while the event was on its way
        held = self.held.get(organization_id)
        if held is None:
            self._send_event(event_id, frame)
        elif self._has_room(len(frame["text"])):
            held.append((event_id, frame))
            self.held_chars += len(frame["text"])

    def membership_lost(self, organization_id: str) -> None:
        """The user is no longer a member: stop at once, say so, then leave the groups."""
        topics = self._forget(organization_id, set(self.subscriptions.get(organization_id, ())))
        if topics:
            notice = {"type": "unsubscribed", "organization": organization_id, "topics": sorted(topics)}
            self._send_frame({**notice, "reason": "forbidden"})
            self._start(self._let_go(organization_id, topics))

    def repair(self, organization_id: str, events: list[StoredEvent]) -> None:
        topics = self.subscriptions.get(organization_id)
        floor = self.repair_floor.get(organization_id)
        if not topics or floor is None:
            return
        for event in events:
            if event.topic in topics and event.id >= floor:
                self._send_event(event.id, event.frame)

    def position(self, organization_id: str, frame: dict[str, str]) -> None:
        if organization_id in self.subscriptions:
            self._queue(frame)

    # --- Sending -----------------------------------------------------------------

    def _send_event(self, event_id: str, frame: dict[str, str]) -> None:
        """Send an event frame unless this connection already sent that id."""
        if event_id in self.sent_ids or event_id in self.sent_ids_before or self.closing:
            return
        now = time.monotonic()
        if now > self.sent_ids_until:
            self.sent_ids_before, self.sent_ids = self.sent_ids, set()
            self.sent_ids_until = now + self.sent_ids_seconds
        self.sent_ids.add(event_id)
        self._queue(frame)

    def _send_frame(self, frame: dict[str, Any]) -> None:
        self._queue(text_frame(json.dumps(frame, separators=(",", ":"))))

    def _queue(self, frame: dict[str, str]) -> None:
        """Queue a text frame; a full buffer means the client does not read: it is closed with 4008."""
        if not self._has_room(len(frame["text"])):
            return
        self.outbox.append(frame)
        self.outbox_chars += len(frame["text"])
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiting, self.frame_queued = self.frame_queued, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def _write_outbox(self) -> None:
        """The connection's writer: one frame at a time, as fast as the client reads (the server's send waits)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self.outbox:
                    self.frame_queued = loop.create_future()
                    await self.frame_queued
                    continue
                message = self.outbox.popleft()
                self.outbox_chars -= len(message.get("text", ""))
                self.outbox_room.set()
                await self.base_send(message)
                if message["type"] == "websocket.close":
                    return
        except OSError:  # the client went away (uvicorn's ClientDisconnected)
            self.stopped.set()

    def _has_room(self, chars: int) -> bool:
        """Whether ``chars`` more fit in the send buffer (held events count); when not, close with 4008."""
        if self.closing:
            return False
        if self.outbox_chars + self.held_chars + chars > self.send_buffer_chars:
            self._close(CLOSE_TOO_SLOW, drop_queued=True)
            return False
        return True

    def _close(self, code: int, *, drop_queued: bool = False) -> None:
        """Close after the queued frames (or instead of them); stop sending anything else at once."""
        if self.closing:
            return
        self.closing = True
        if drop_queued:
            self.outbox.clear()
            self.outbox_chars = 0
            self.held.clear()
            self.held_chars = 0
        self.outbox.append({"type": "websocket.close", "code": code})
        self._wake_writer()
        self._start(self._leave_all())
        self._timers.append(asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, self.stopped.set))

    async def _heartbeat(self) -> None:
        """Keep this connection's counts in the token's limits alive; a process that dies stops, and they expire."""
        while True:
            await asyncio.sleep(settings.EVENTS_SESSION_TTL_SECONDS / 3)
            limits = self.limits
            if limits is None:
                return
            await limits.refresh(limits.subscription_members(self.subscriptions))

    def _start(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- Helpers -----------------------------------------------------------------

    async def _member_organization(self, organization: str) -> uuid.UUID | None:
        return await database_sync_to_async(organization_of_member)(user_id=self.user_id, organization=organization)

    def _forget(self, organization_id: str, topics: set[str]) -> set[str]:
        """Stop sending ``topics`` of the organization at once; returns those it was subscribed to."""
        subscribed = self.subscriptions.get(organization_id, set())
        dropped = topics & subscribed
        subscribed -= dropped
        if not subscribed:
            self.subscriptions.pop(organization_id, None)
            self.repair_floor.pop(organization_id, None)
            self._release_held(organization_id)
        return dropped

    def _release_held(self, organization_id: str) -> list[tuple[str, dict[str, str]]]:
        held = self.held.pop(organization_id, [])
        self.held_chars -= sum(len(frame["text"]) for _, frame in held)
        return held

    async def _let_go(self, organization_id: str, topics: set[str]) -> None:
        """After ``_forget``: the feed leaves the groups no connection of this process watches; the counts go."""
        feed = current_feed()
        try:
            if organization_id in self.subscriptions:
                await feed.watch(self, organization_id)
            else:
                await feed.unwatch(self, organization_id)
        finally:
            if self.limits is not None and topics:
                await self.limits.release([self.limits.subscription_member(organization_id, t) for t in topics])

    async def _leave_all(self) -> None:
        """Leave every group; safe to call more than once, and when Redis is away."""
        subscriptions, self.subscriptions = self.subscriptions, {}
        user_id, self.user_id = self.user_id, None
        limits, self.limits = self.limits, None  # also stops the heartbeat's refreshes
        for organization_id in subscriptions:
            await current_feed().unwatch(self, organization_id)
        if user_id is not None:
            await self._discard(user_group(user_id))
        if limits is not None:
            await limits.release(limits.subscription_members(subscriptions), connection=True)

    async def _discard(self, group: str) -> None:
        try:
            await self.channel_layer.group_discard(group, self.channel_name)
        except Exception as error:  # Redis is away: a pub/sub subscription went with the connection
            logger.warning("Could not leave group %s (%s: %s)", group, type(error).__name__, error)
