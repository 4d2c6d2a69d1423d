"""A process's events: live fan-out, gap repair and positions, shared by its connections.

Live events: the process, not each connection, is the channel-layer member of
each (organization, topic) group its connections watch, with one channel per
group. One task per group receives each event once (deserialised once) and
hands it to every watching connection's send buffer in one pass: no message
queue, task or dispatch per connection and event, which is what fan-out to
many connections costs. The memberships of the connections' users are checked
there too, one query per organization every ``EVENTS_MEMBERSHIP_RECHECK_SECONDS``
while events flow (the control message that cuts a removed member may be lost).

The channel layer delivers at most once: when Redis restarts or fails over,
the messages in flight are lost, and nothing tells the consumer. Every event
is also a committed ``analytics.Event`` row, so each server process reads, every
``EVENTS_POSITION_SECONDS``, the rows of the organizations its connections
watch, and hands them to those connections, which send the ones they did not
send yet (they remember the ids they sent). Then every subscription gets a
``position`` frame naming the newest event of its topics handed out: the client
already has everything up to it. However many connections watch an
organization, the process reads it once per interval.

Rows are read from a window that starts ``EVENTS_REPLAY_OVERLAP_SECONDS``
before the newest id read so far: ids are taken at INSERT, so a transaction
committing late lands behind ids already read. Rows are handed out one
interval after they were first read, so that the live message, which follows
the commit within milliseconds, is normally there first and the repair sends
nothing. Right after the channel layer comes back (a probe message sent to
this process every interval arrives again after failing), the read runs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from companyos.foundation.events import event_frame, events_from, topic_group
from companyos.foundation.ids import uuid7_floor
from companyos.realtime.selectors import members_among

logger = logging.getLogger(__name__)

# The probe message of the channel-layer check.
PROBE = "events.probe"


def id_milliseconds(event_id: str | uuid.UUID) -> int:
    """The millisecond a UUIDv7 was made at (its first 48 bits)."""
    return uuid.UUID(str(event_id)).int >> 80


def text_frame(text: str) -> dict[str, str]:
    """The ASGI message that sends ``text`` as a websocket text frame; one can go to every connection."""
    return {"type": "websocket.send", "text": text}


@dataclass(frozen=True)
class StoredEvent:
    """An event row as handed to connections: its id, topic and frame (serialised once per process)."""

    id: str
    topic: str
    frame: dict[str, str]


class Watcher(Protocol):
    """What the feed needs of a connection (``EventsConsumer``)."""

    user_id: uuid.UUID | None

    def watched_topics(self, organization_id: str) -> set[str]: ...

    def deliver(self, organization_id: str, topic: str, event_id: str, frame: dict[str, str]) -> None: ...

    def membership_lost(self, organization_id: str) -> None: ...

    def repair(self, organization_id: str, events: list[StoredEvent]) -> None: ...

    def position(self, organization_id: str, frame: dict[str, str]) -> None: ...


@dataclass
class Watch:
    """One organization watched by connections of this process."""

    watchers: set[Watcher] = field(default_factory=set)
    # The newest id read so far: the next read starts the overlap before it.
    cursor: uuid.UUID = field(default_factory=lambda: uuid7_floor(int(time.time() * 1000)))
    # Ids read within the window, so that each is handed out once.
    read: set[str] = field(default_factory=set)
    # Read at the last tick, handed out at the next one.
    pending: list[StoredEvent] = field(default_factory=list)
    # topic → newest id handed out
    newest: dict[str, str] = field(default_factory=dict)
    # Monotonic time the watchers' memberships were last checked (each was checked on subscribing).
    members_checked_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Relay:
    """This process's member of one group: its channel, and the task handing its events out."""

    channel: str
    task: asyncio.Task


class Feed:
    """The per-process (per event loop) reader; started with the first watcher, stopped with the last."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watches: dict[str, Watch] = {}
        # (organization id, topic) → this process's member of the group
        self.relays: dict[tuple[str, str], Relay] = {}
        # Joins and leaves one at a time, so that each compares with what is joined.
        self._following = asyncio.Lock()
        self.reads = 0  # database reads made, for the benchmark and the tests
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._probe_task: asyncio.Task | None = None
        self._failing = False

    async def watch(self, watcher: Watcher, organization_id: str) -> None:
        """Hand ``watcher`` the organization's events of the topics it watches; again after they change.

        It is handed nothing, positions included, before its groups are joined.
        """
        await self._follow(organization_id, joining=watcher)
        if not watcher.watched_topics(organization_id):
            await self._follow(organization_id)  # it left meanwhile
            return
        self.watches.setdefault(organization_id, Watch()).watchers.add(watcher)
        if settings.EVENTS_POSITION_SECONDS > 0 and (self._task is None or self._task.done()):
            self._task = self.loop.create_task(self._run())
            self._probe_task = self.loop.create_task(self._probe())

    async def unwatch(self, watcher: Watcher, organization_id: str) -> None:
        watch = self.watches.get(organization_id)
        if watch is not None:
            watch.watchers.discard(watcher)
            if not watch.watchers:
                del self.watches[organization_id]
        if not self.watches:
            for task in (self._task, self._probe_task):
                if task is not None:
                    task.cancel()
            self._task = self._probe_task = None
        try:
            await self._follow(organization_id)
        except Exception as error:  # Redis is away: joining what others still watch is retried by the next change
            logger.warning("Could not follow organization %s (%s: %s)", organization_id, type(error).__name__, error)

    # --- Live events -------------------------------------------------------------

    async def _follow(self, organization_id: str, joining: Watcher | None = None) -> None:
        """Be a member of the groups of the topics the organization's watchers watch, and of no other."""
        async with self._following:
            watch = self.watches.get(organization_id)
            watchers = {*(watch.watchers if watch else ()), *([joining] if joining else ())}
            wanted = set().union(*(watcher.watched_topics(organization_id) for watcher in watchers))
            joined = {topic for organization, topic in self.relays if organization == organization_id}
            for topic in sorted(joined - wanted):
                await self._leave(organization_id, topic, self.relays.pop((organization_id, topic)))
            for topic in sorted(wanted - joined):
                self.relays[organization_id, topic] = await self._join(organization_id, topic)

    async def _join(self, organization_id: str, topic: str) -> Relay:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        relay = Relay(channel, self.loop.create_task(self._relay(organization_id, topic, channel)))
        try:
            await layer.group_add(topic_group(organization_id, topic), channel)
        except BaseException:
            relay.task.cancel()
            raise
        return relay

    async def _leave(self, organization_id: str, topic: str, relay: Relay) -> None:
        relay.task.cancel()
        group = topic_group(organization_id, topic)
        try:
            await get_channel_layer().group_discard(group, relay.channel)
        except Exception as error:  # Redis is away: a pub/sub subscription went with its connection
            logger.warning("Could not leave group %s (%s: %s)", group, type(error).__name__, error)

    async def _relay(self, organization_id: str, topic: str, channel: str) -> None:
        """Hand each event of one group to the watchers of its topic, in the order the layer delivers them."""
        layer = get_channel_layer()
        failing = False
        while True:
            try:
                message = await layer.receive(channel)
            except Exception as error:  # Redis is away (the classic layer raises): the gap repair covers
                if not failing:
                    group = topic_group(organization_id, topic)
                    logger.warning("Live events of %s wait for Redis (%s: %s)", group, type(error).__name__, error)
                failing = True
                await asyncio.sleep(1)
                continue
            failing = False
            watch = self.watches.get(organization_id)
            if watch is None:
                continue
            if time.monotonic() - watch.members_checked_at > settings.EVENTS_MEMBERSHIP_RECHECK_SECONDS:
                await self._recheck_members(organization_id, watch)
            watchers = list(watch.watchers)
            for event_id, text in message["events"]:
                frame = text_frame(text)
                for watcher in watchers:
                    watcher.deliver(organization_id, topic, event_id, frame)

    async def _recheck_members(self, organization_id: str, watch: Watch) -> None:
        """Cut the watchers whose users are no longer active members: one query for all of them."""
        users = {watcher.user_id for watcher in watch.watchers if watcher.user_id is not None}
        try:
            members = await database_sync_to_async(members_among)(organization_id=organization_id, user_ids=users)
        except Exception as error:  # the database is away: events go on, the next interval checks again
            logger.warning("Memberships not re-checked (%s: %s)", type(error).__name__, error)
            members = users
        watch.members_checked_at = time.monotonic()
        for watcher in list(watch.watchers):
            # Only the users asked about: a watcher that joined meanwhile was checked when it subscribed.
            if watcher.user_id in users and watcher.user_id not in members:
                watcher.membership_lost(organization_id)

    # --- Gap repair and positions ------------------------------------------------

    def wake(self) -> None:
        """Read now (the channel layer has just come back)."""
        self._wake.set()

    async def _run(self) -> None:
        interval = settings.EVENTS_POSITION_SECONDS
        while self.watches:
            for organization_id in list(self.watches):
                try:
                    await self.tick(organization_id)
                except Exception as error:  # the database is down: the next tick catches up from the cursor
                    self._report(error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()

    async def tick(self, organization_id: str) -> None:
        """Hand out what was read last time, read the window again, then send the positions."""
        watch = self.watches.get(organization_id)
        if watch is None:
            return
        topics = set().union(*(watcher.watched_topics(organization_id) for watcher in watch.watchers))
        floor = uuid7_floor(id_milliseconds(watch.cursor) - int(settings.EVENTS_REPLAY_OVERLAP_SECONDS * 1000))
        rows = await database_sync_to_async(events_from)(
            organization_id=uuid.UUID(organization_id), topics=topics, floor=floor, limit=settings.EVENTS_REPLAY_LIMIT
        )
        self.reads += 1
        if self._failing:
            self._failing = False
            logger.info("Gap repair reads the database again.")
        if self.watches.get(organization_id) is not watch:
            return  # every watcher left while reading
        handed_out, watch.pending = watch.pending, []
        for row in rows:
            event_id = str(row.id)
            if event_id not in watch.read:
                watch.read.add(event_id)
                # A topic is the event type without its last word ("agent.task.started" → "agent.task").
                topic = row.event_type.rpartition(".")[0]
                watch.pending.append(StoredEvent(event_id, topic, text_frame(event_frame(row, replay=True))))
                watch.cursor = max(watch.cursor, row.id)
        floor_ms = id_milliseconds(floor)
        watch.read = {event_id for event_id in watch.read if id_milliseconds(event_id) >= floor_ms}
        for event in handed_out:
            if event.id > watch.newest.get(event.topic, ""):
                watch.newest[event.topic] = event.id
        positions: dict[frozenset[str], str] = {}
        for watcher in list(watch.watchers):
            if handed_out:
                watcher.repair(organization_id, handed_out)
            watched = frozenset(watcher.watched_topics(organization_id))
            if watched and watched not in positions:
                positions[watched] = self._position_frame(organization_id, watched, watch.newest)
            if watched:
                watcher.position(organization_id, positions[watched])

    @staticmethod
    def _position_frame(organization_id: str, topics: Iterable[str], newest: dict[str, str]) -> dict[str, str]:
        ids = [newest[topic] for topic in topics if topic in newest]
        frame = {"type": "position", "organization": organization_id, "topics": sorted(topics)}
        frame["last_id"] = max(ids) if ids else None
        return text_frame(json.dumps(frame, separators=(",", ":")))

    async def _probe(self) -> None:
        """Send this process a message through the channel layer every interval; wake the reader when it is back."""
        layer = get_channel_layer()
        interval = settings.EVENTS_POSITION_SECONDS
        channel = await layer.new_channel()
        lost = False
        while True:
            try:
                await asyncio.wait_for(layer.send(channel, {"type": PROBE}), interval)
                await asyncio.wait_for(layer.receive(channel), interval)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis is away: the reader goes on from the database alone
                lost = True
                await asyncio.sleep(min(interval, 0.5))
                continue
            if lost:
                lost = False
                logger.info("Channel layer back: repairing gaps now.")
                self.wake()
            await asyncio.sleep(interval)

    def _report(self, error: Exception) -> None:
        if not self._failing:
            self._failing = True
            logger.warning("Gap repair cannot read the database (%s: %s); retrying.", type(error).__name__, error)


_feed: Feed | None = None


def current_feed() -> Feed:
    """The feed of the running event loop (one per server process; tests run a loop each)."""
    global _feed
    loop = asyncio.get_running_loop()
    if _feed is None or _feed.loop is not loop:
        _feed = Feed(loop)
    return _feed
