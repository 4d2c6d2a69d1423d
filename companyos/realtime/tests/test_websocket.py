"""The /ws/events/ endpoint over the real Redis channel layer: auth, scoping, every frame, every error."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from channels.routing import get_default_application
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from agents.tests.factories import AgentTaskFactory
from analytics.models import Event
from companyos.foundation.events import declared_topics, topic_group
from companyos.foundation.ids import uuid7
from companyos.realtime.tests.support import run
from core.models import ApiToken, OrganizationMember
from core.services import api_token_create, api_token_revoke
from core.tests.factories import OrganizationFactory, OrganizationMemberFactory, UserFactory
from development.models import Deployment
from development.tests.factories import DeploymentFactory

pytestmark = pytest.mark.django_db(transaction=True)

# Fixed, not random: parametrize ids must match across xdist workers.
UUID4 = "8a4e1f1c-3b7e-4d2a-9c1e-2f6d5b4a3c21"
ALL = sorted(declared_topics())


@pytest.fixture(autouse=True)
def _no_positions(settings):
    """Position frames would interleave with the frames these tests expect; the repair tests turn them on."""
    settings.EVENTS_POSITION_SECONDS = 0


@pytest.fixture(autouse=True)
def _asgi_application():
    """Load the real ASGI application (its start-up key check reads the database).

    The one settings.ASGI_APPLICATION names: the edge's tests do not import
    the configuration layer above them.
    """
    return get_default_application()


def connect(path: str = "/ws/events/", headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    return WebsocketCommunicator(get_default_application(), path, headers=headers or [])


def bearer(raw: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {raw}".encode())]


async def subscribed(token: str, topics: list[str], count: int) -> list[WebsocketCommunicator]:
    """``count`` connections of ``token``, each subscribed to ``topics`` of acme."""
    connections = []
    for _ in range(count):
        ws = connect(headers=bearer(token))
        await ws.connect()
        await send(ws, {"action": "subscribe", "organization": "acme", "topics": topics})
        connections.append(ws)
    return connections


async def send(ws: WebsocketCommunicator, frame: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json_to(frame)
    return await ws.receive_json_from(timeout=5)


@pytest.fixture
def alice():
    """A member of ``acme`` with a token; ``acme`` and ``globex`` (not hers)."""
    acme = OrganizationFactory(slug="acme")
    globex = OrganizationFactory(slug="globex")
    user = UserFactory()
    OrganizationMemberFactory(organization=acme, user=user)
    _, raw = api_token_create(user=user, name="test")
    return {"user": user, "acme": acme, "globex": globex, "token": raw}


def make_deployment_ready(organization) -> Event:
    deployment = DeploymentFactory(organization=organization, state=Deployment.State.BUILDING, ready_at=None)
    deployment.state = Deployment.State.READY
    deployment.ready_at = timezone.now()
    deployment.save()
    return Event.objects.filter(subject_id=deployment.pk).latest("id")


async def closed_with(ws: WebsocketCommunicator) -> int | None:
    output = await ws.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    return output.get("code")


# --- Authentication ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["header", "query"])
def test_token_authenticates(alice, where):
    async def scenario():
        if where == "header":
            ws = connect(headers=bearer(alice["token"]))
        else:
            ws = connect(f"/ws/events/?token={alice['token']}")
        connected, _ = await ws.connect()
        assert connected
        assert await send(ws, {"action": "ping"}) == {"type": "pong"}
        await ws.disconnect()

    run(scenario)


def test_token_use_is_recorded_at_most_once_a_minute(alice):
    async def scenario():
        for _ in range(2):
            ws = connect(headers=bearer(alice["token"]))
            assert (await ws.connect())[0]
            await ws.disconnect()

    run(scenario)
    token = ApiToken.objects.get(user=alice["user"])
    first = token.last_used_at
    assert first is not None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - dt.timedelta(minutes=2))
    run(scenario)
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first - dt.timedelta(minutes=2)


def test_session_authenticates_a_browser_on_an_allowed_origin(alice):
    client = Client()
    client.force_login(alice["user"])
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"

    async def scenario():
        ws = connect(headers=[(b"cookie", cookie.encode()), (b"origin", b"http://localhost")])
        assert (await ws.connect())[0]
        reply = await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["deployment"]})
        assert reply == {"type": "subscribed", "organization": str(alice["acme"].pk), "topics": ["deployment"]}
        await ws.disconnect()

        # The same cookie from a foreign page: refused at the handshake.
        ws = connect(headers=[(b"cookie", cookie.encode()), (b"origin", b"https://evil.example")])
        connected, _ = await ws.connect()
        assert not connected

    run(scenario)


def _expired(alice):
    ApiToken.objects.filter(user=alice["user"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    return alice["token"]


def _revoked(alice):
    api_token_revoke(token=ApiToken.objects.get(user=alice["user"]))
    return alice["token"]


def _inactive_user(alice):
    alice["user"].is_active = False
    alice["user"].save(update_fields=["is_active"])
    return alice["token"]


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param(lambda alice: None, id="none"),
        pytest.param(lambda alice: "cos_not-a-real-token", id="bad"),
        pytest.param(lambda alice: "garbage", id="malformed"),
        pytest.param(_expired, id="expired"),
        pytest.param(_revoked, id="revoked"),
        pytest.param(_inactive_user, id="inactive-user"),
    ],
)
def test_unauthenticated_connections_are_closed_with_4401(alice, credentials):
    raw = credentials(alice)

    async def scenario():
        ws = connect(headers=bearer(raw) if raw else [])
        connected, _ = await ws.connect()
        assert connected  # accepted, so that the client sees the close code
        assert await closed_with(ws) == 4401

    run(scenario)


def test_a_bad_token_is_not_rescued_by_a_session(alice):
    client = Client()
    client.force_login(alice["user"])
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario():
        ws = connect(headers=[(b"cookie", cookie), *bearer("cos_wrong")])
        await ws.connect()
        assert await closed_with(ws) == 4401

    run(scenario)


def test_revoking_a_token_closes_its_open_connections(alice):
    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        assert await send(ws, {"action": "ping"}) == {"type": "pong"}
        await database_sync_to_async(_revoked)(alice)
        assert await closed_with(ws) == 4401

    run(scenario)


# --- Protocol ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_request"),
        (json.dumps({"action": "dance"}), "unknown_action"),
        (json.dumps({"topics": ["deployment"]}), "unknown_action"),
        (json.dumps({"action": "subscribe", "topics": ["deployment"]}), "invalid_request"),
        (json.dumps({"action": "subscribe", "organization": "acme", "topics": "deployment"}), "invalid_request"),
        (json.dumps({"action": "subscribe", "organization": "acme", "topics": []}), "invalid_request"),
        (json.dumps({"action": "subscribe", "organization": "acme", "topics": ["weather"]}), "unknown_topic"),
        (json.dumps({"action": "subscribe", "organization": "globex", "topics": ["deployment"]}), "forbidden"),
        (json.dumps({"action": "subscribe", "organization": "no-such-org", "topics": ["*"]}), "forbidden"),
        (json.dumps({"action": "subscribe", "organization": UUID4, "topics": ["*"]}), "forbidden"),
        (json.dumps({"action": "subscribe", "organization": "acme", "topics": ["*"], "since": "x"}), "invalid_since"),
        (
            json.dumps({"action": "subscribe", "organization": "acme", "topics": ["*"], "since": UUID4}),
            "invalid_since",
        ),
        (json.dumps({"action": "subscribe", "organization": "acme", "topics": ["*"], "since": 7}), "invalid_since"),
        (json.dumps({"action": "unsubscribe", "organization": "acme", "topics": ["deployment"]}), "not_found"),
        (json.dumps({"action": "ping", "pad": "x" * 70_000}), "frame_too_large"),
        (b"\x00binary", "invalid_json"),
        # Wrong JSON types, NUL characters, nesting deeper than the parser's recursion limit.
        (json.dumps({"action": ["subscribe"]}), "unknown_action"),
        (json.dumps({"action": {"a": 1}}), "unknown_action"),
        (json.dumps({"action": "subscribe", "organization": {"slug": "acme"}, "topics": ["*"]}), "invalid_request"),
        (json.dumps({"action": "subscribe", "organization": "acme\u0000", "topics": ["*"]}), "invalid_request"),
        (json.dumps({"action": "subscribe", "organization": "ac\ud800me", "topics": ["*"]}), "invalid_request"),
        (json.dumps({"action": "subscribe", "organization": "a" * 500, "topics": ["*"]}), "invalid_request"),
        (json.dumps({"action": "subscribe", "organization": "acme", "topics": [["deployment"]]}), "invalid_request"),
        (json.dumps({"action": "subscribe", "organization": "acme", "topics": ["de\u0000ployment"]}), "unknown_topic"),
        (
            json.dumps({"action": "subscribe", "organization": "acme", "topics": ["*"], "since": {"id": 1}}),
            "invalid_since",
        ),
        (
            json.dumps({"action": "subscribe", "organization": "acme", "topics": ["*"], "since": "\u0000"}),
            "invalid_since",
        ),
        (json.dumps({"action": "unsubscribe", "organization": 7, "topics": ["*"]}), "invalid_request"),
        ("[" * 30_000 + "]" * 30_000, "invalid_json"),
        ('{"action":"ping","x":' + "[" * 30_000 + "]" * 30_000 + "}", "invalid_json"),
    ],
)
def test_bad_input_answers_an_error_and_keeps_the_connection(alice, frame, code):
    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        if isinstance(frame, bytes):
            await ws.send_to(bytes_data=frame)
        else:
            await ws.send_to(text_data=frame)
        error = await ws.receive_json_from(timeout=5)
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["message"]
        assert await send(ws, {"action": "ping"}) == {"type": "pong"}  # still open, still working
        await ws.disconnect()

    run(scenario)


def test_subscribe_by_uuid_or_slug_all_topics_then_unsubscribe(alice):
    acme_id = str(alice["acme"].pk)

    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        reply = await send(ws, {"action": "subscribe", "organization": acme_id, "topics": ["*"]})
        assert reply == {"type": "subscribed", "organization": acme_id, "topics": ALL}
        reply = await send(ws, {"action": "unsubscribe", "organization": "acme", "topics": ["deployment"]})
        assert reply == {"type": "unsubscribed", "organization": acme_id, "topics": ["deployment"]}

        # Unsubscribed from deployments: a deployment event does not come.
        await database_sync_to_async(make_deployment_ready)(alice["acme"])
        assert await ws.receive_nothing(timeout=0.5)

        reply = await send(ws, {"action": "unsubscribe", "organization": acme_id, "topics": ["*"]})
        assert reply["type"] == "unsubscribed"
        reply = await send(ws, {"action": "unsubscribe", "organization": acme_id, "topics": ["*"]})
        assert reply["code"] == "not_found"  # nothing left to unsubscribe from
        await ws.disconnect()

    run(scenario)


def test_events_reach_subscribers_of_their_topic_and_organization_only(alice):
    bob = UserFactory()
    OrganizationMemberFactory(organization=alice["globex"], user=bob)
    _, bob_token = api_token_create(user=bob, name="bob")

    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["deployment"]})
        other_topic = connect(headers=bearer(alice["token"]))
        await other_topic.connect()
        await send(other_topic, {"action": "subscribe", "organization": "acme", "topics": ["agent.task"]})
        other_org = connect(headers=bearer(bob_token))
        await other_org.connect()
        await send(other_org, {"action": "subscribe", "organization": "globex", "topics": ["*"]})

        event = await database_sync_to_async(make_deployment_ready)(alice["acme"])
        frames = [await ws.receive_json_from(timeout=5) for _ in range(2)]
        assert [f["event"]["type"] for f in frames] == ["deployment.created", "deployment.ready"]
        ready = frames[1]
        assert ready["type"] == "event"
        assert "replay" not in ready
        assert ready["event"]["id"] == str(event.id)
        assert ready["event"]["organization"] == str(alice["acme"].pk)
        assert ready["event"]["subject"] == {"type": "development.deployment", "id": str(event.subject_id)}
        assert ready["event"]["data"]["state"] == "ready"
        assert ready["event"]["occurred_at"].endswith("Z")
        assert await ws.receive_nothing(timeout=0.3)
        assert await other_topic.receive_nothing(timeout=0.1)
        assert await other_org.receive_nothing(timeout=0.1)
        for conn in (ws, other_topic, other_org):
            await conn.disconnect()

    run(scenario)


def test_removed_member_stops_receiving_at_once(alice):
    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["*"]})
        await database_sync_to_async(
            lambda: OrganizationMember.objects.filter(user=alice["user"], organization=alice["acme"]).delete()
        )()
        notice = await ws.receive_json_from(timeout=5)
        assert notice == {
            "type": "unsubscribed",
            "organization": str(alice["acme"].pk),
            "topics": ALL,
            "reason": "forbidden",
        }
        await database_sync_to_async(make_deployment_ready)(alice["acme"])
        assert await ws.receive_nothing(timeout=0.5)
        reply = await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["*"]})
        assert reply["code"] == "forbidden"
        await ws.disconnect()

    run(scenario)


def test_memberships_are_rechecked_while_events_flow(alice, settings):
    """The control message may be lost (at-most-once layer); the periodic re-check still cuts."""
    settings.EVENTS_MEMBERSHIP_RECHECK_SECONDS = 0

    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["deployment"]})
        # Deactivating the user sends no control message: only the re-check notices.
        await database_sync_to_async(_inactive_user)(alice)
        await database_sync_to_async(make_deployment_ready)(alice["acme"])
        notice = await ws.receive_json_from(timeout=5)
        assert notice["type"] == "unsubscribed"
        assert notice["reason"] == "forbidden"
        assert await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()

    run(scenario)


def test_the_membership_recheck_cuts_only_the_users_who_lost_it(alice, settings):
    """One query checks every connected user of the organization; the others keep receiving."""
    settings.EVENTS_MEMBERSHIP_RECHECK_SECONDS = 0
    carol = UserFactory()
    OrganizationMemberFactory(organization=alice["acme"], user=carol)
    _, carol_token = api_token_create(user=carol, name="carol")

    async def scenario():
        alice_ws, carol_ws = connect(headers=bearer(alice["token"])), connect(headers=bearer(carol_token))
        for ws in (alice_ws, carol_ws):
            await ws.connect()
            await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["deployment"]})
        await database_sync_to_async(_inactive_user)(alice)
        event = await database_sync_to_async(make_deployment_ready)(alice["acme"])
        notice = await alice_ws.receive_json_from(timeout=5)
        assert (notice["type"], notice["reason"]) == ("unsubscribed", "forbidden")
        assert await alice_ws.receive_nothing(timeout=0.5)
        received = [(await carol_ws.receive_json_from(timeout=5))["event"]["id"] for _ in range(2)]
        assert received[-1] == str(event.id)
        for ws in (alice_ws, carol_ws):
            await ws.disconnect()

    run(scenario)


def test_a_process_joins_each_group_once_for_its_connections_and_leaves_it_with_the_last(alice):
    from companyos.realtime.feed import current_feed

    acme = alice["acme"]
    group = f"{django_settings.REDIS_KEY_PREFIX}:asgi__group__{topic_group(acme.pk, 'deployment')}"
    redis_client = redis.Redis.from_url(django_settings.REDIS_URL)

    async def received_once(connections, event) -> bool:
        for ws in connections:
            frames = [await ws.receive_json_from(timeout=5) for _ in range(2)]  # deployment.created, then it
            assert frames[-1]["event"]["id"] == str(event.id)
            assert await ws.receive_nothing(timeout=0.1)
        return True

    async def scenario():
        connections = await subscribed(alice["token"], ["deployment"], 5)
        feed = current_feed()
        assert set(feed.relays) == {(str(acme.pk), "deployment")}
        assert redis_client.pubsub_numsub(group)[0][1] == 1
        assert await received_once(connections, await database_sync_to_async(make_deployment_ready)(acme))
        for ws in connections[:4]:
            await ws.disconnect()
        assert set(feed.relays) == {(str(acme.pk), "deployment")}
        assert await received_once(connections[4:], await database_sync_to_async(make_deployment_ready)(acme))
        await connections[4].disconnect()  # returns once the consumer has ended, its leaving done
        assert feed.relays == {}
        assert redis_client.pubsub_numsub(group)[0][1] == 0

    run(scenario)


# --- Replay --------------------------------------------------------------------------


def deployment_event_ids(organization, *, exclude: list[str]) -> list[str]:
    events = Event.objects.filter(organization=organization, event_type__startswith="deployment.").exclude(
        id__in=exclude
    )
    return [str(pk) for pk in events.order_by("id").values_list("id", flat=True)]


def test_replay_after_reconnecting_gives_exactly_the_missed_events_in_order_then_live(alice):
    acme = alice["acme"]

    async def receive_events(ws, count):
        return [await ws.receive_json_from(timeout=5) for _ in range(count)]

    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["deployment"]})
        await database_sync_to_async(make_deployment_ready)(acme)
        seen = await receive_events(ws, 2)
        await ws.disconnect()

        # While away: 3 deployments (6 events), and a task (another topic).
        for _ in range(3):
            await database_sync_to_async(make_deployment_ready)(acme)
        await database_sync_to_async(AgentTaskFactory)(organization=acme)
        missed = await database_sync_to_async(deployment_event_ids)(acme, exclude=[f["event"]["id"] for f in seen])
        assert len(missed) == 6

        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        since = seen[-1]["event"]["id"]
        reply = await send(
            ws, {"action": "subscribe", "organization": "acme", "topics": ["deployment"], "since": since}
        )
        assert reply["type"] == "subscribed"
        # The overlap window re-sends what came just before `since`; clients drop ids they have.
        have = {f["event"]["id"] for f in seen}
        replayed = []
        while len(replayed) < len(missed):
            frame = await ws.receive_json_from(timeout=5)
            assert frame["replay"] is True
            if frame["event"]["id"] not in have:
                replayed.append(frame["event"]["id"])
        assert replayed == missed

        live = await database_sync_to_async(make_deployment_ready)(acme)
        frames = await receive_events(ws, 2)
        assert [("replay" in f) for f in frames] == [False, False]
        assert frames[-1]["event"]["id"] == str(live.id)
        assert await ws.receive_nothing(timeout=0.3)
        await ws.disconnect()

    run(scenario)


def test_replay_of_a_long_absence_is_truncated_with_an_error(alice, settings):
    settings.EVENTS_REPLAY_LIMIT = 3
    since = str(uuid7())
    for _ in range(2):
        make_deployment_ready(alice["acme"])

    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["*"], "since": since})
        frames = [await ws.receive_json_from(timeout=5) for _ in range(4)]
        assert [f["type"] for f in frames] == ["event", "event", "event", "error"]
        assert frames[-1]["code"] == "replay_truncated"
        assert await send(ws, {"action": "ping"}) == {"type": "pong"}
        await ws.disconnect()

    run(scenario)


def test_too_many_subscriptions_and_replays_are_refused(alice, settings):
    settings.EVENTS_MAX_SUBSCRIPTIONS = 2
    settings.EVENTS_REPLAYS_PER_MINUTE = 2
    since = str(uuid7())

    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        reply = await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["*"]})
        assert reply["code"] == "too_many_subscriptions"
        subscribe = {"action": "subscribe", "organization": "acme", "topics": ["deployment"], "since": since}
        for _ in range(2):
            assert (await send(ws, subscribe))["type"] == "subscribed"
        assert (await send(ws, subscribe))["code"] == "replay_rate_limited"
        assert await send(ws, {"action": "ping"}) == {"type": "pong"}
        await ws.disconnect()

    run(scenario)


@pytest.mark.usefixtures("rate_limit_window")
def test_two_connections_of_one_token_share_its_subscription_and_replay_limits(alice, settings):
    settings.EVENTS_MAX_SUBSCRIPTIONS_PER_TOKEN = 3
    settings.EVENTS_REPLAYS_PER_MINUTE_PER_TOKEN = 2
    since = str(uuid7())

    async def scenario():
        first, second = connect(headers=bearer(alice["token"])), connect(headers=bearer(alice["token"]))
        assert (await first.connect())[0] and (await second.connect())[0]
        subscribe = {"action": "subscribe", "organization": "acme", "since": since}
        reply = await send(first, {**subscribe, "topics": ["deployment", "pull_request"]})
        assert reply["type"] == "subscribed"
        assert (await send(second, {**subscribe, "topics": ["agent.task"]}))["type"] == "subscribed"
        # Each connection is far under its own limits; together they hold the token's 3.
        reply = await send(second, {"action": "subscribe", "organization": "acme", "topics": ["social.post"]})
        assert reply["code"] == "too_many_subscriptions"
        assert "across all connections" in reply["message"]
        # Subscribing again to what a connection holds costs nothing.
        reply = await send(first, {"action": "subscribe", "organization": "acme", "topics": ["deployment"]})
        assert reply["type"] == "subscribed"
        # An unsubscribe (on the other connection) frees a place.
        await send(first, {"action": "unsubscribe", "organization": "acme", "topics": ["pull_request"]})
        # Two replays were taken, one by each connection: a third is refused, and holds no subscription.
        reply = await send(second, {**subscribe, "topics": ["social.post"]})
        assert reply["code"] == "replay_rate_limited"
        assert 1 <= reply["retry_after"] <= 60
        reply = await send(second, {"action": "subscribe", "organization": "acme", "topics": ["social.post"]})
        assert reply["type"] == "subscribed"
        # Closing a connection frees its subscriptions for the other.
        await first.disconnect()
        reply = await send(second, {"action": "subscribe", "organization": "acme", "topics": ["deployment"]})
        assert reply["type"] == "subscribed"
        assert await send(second, {"action": "ping"}) == {"type": "pong"}
        await second.disconnect()

    run(scenario)


def test_connections_per_token_and_per_browser_user_are_limited_across_connections(alice, settings):
    settings.EVENTS_MAX_CONNECTIONS_PER_TOKEN = 2
    client = Client()
    client.force_login(alice["user"])
    session = [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()), (b"origin", b"http://localhost")]

    async def scenario():
        for headers in (bearer(alice["token"]), session):
            first, second, third = (connect(headers=headers) for _ in range(3))
            assert (await first.connect())[0] and (await second.connect())[0]
            assert (await third.connect())[0]  # accepted, so that the client sees the close code
            output = await third.receive_output(timeout=5)
            assert output["type"] == "websocket.close" and output["code"] == 4429
            assert "Too many connections" in output["reason"]
            await first.disconnect()
            again = connect(headers=headers)
            assert (await again.connect())[0]
            assert await send(again, {"action": "ping"}) == {"type": "pong"}
            await again.disconnect()
            await second.disconnect()

    run(scenario)


def test_counts_of_a_process_that_died_expire_and_live_connections_keep_theirs(alice, settings):
    from companyos.realtime.limits import TokenLimits

    settings.EVENTS_MAX_CONNECTIONS_PER_TOKEN = 1
    settings.EVENTS_SESSION_TTL_SECONDS = 1.0
    token_id = str(ApiToken.objects.get(user=alice["user"]).pk)

    async def scenario():
        # A server process counted a connection, then died without leaving.
        assert await TokenLimits({"api_token_id": token_id}, "died.process!channel").take_connection()
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        assert await closed_with(ws) == 4429
        await asyncio.sleep(1.2)  # no heartbeat refreshed it: it expired
        live = connect(headers=bearer(alice["token"]))
        assert (await live.connect())[0]
        await asyncio.sleep(2.0)  # twice the lifetime: the live connection's heartbeat keeps its place
        assert await send(live, {"action": "ping"}) == {"type": "pong"}
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        assert await closed_with(ws) == 4429
        await live.disconnect()

    run(scenario)


def test_a_token_expiring_while_connected_closes_the_connection_at_expiry(alice):
    expires_at = timezone.now() + dt.timedelta(seconds=1.5)
    ApiToken.objects.filter(user=alice["user"]).update(expires_at=expires_at)

    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        assert (await ws.connect())[0]
        await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["deployment"]})
        assert await send(ws, {"action": "ping"}) == {"type": "pong"}
        output = await ws.receive_output(timeout=5)
        closed_at = timezone.now()
        assert output == {"type": "websocket.close", "code": 4401}
        assert expires_at <= closed_at < expires_at + dt.timedelta(seconds=1)

    run(scenario)


def test_tokens_in_query_strings_are_redacted_from_server_logs(caplog):
    import logging

    with caplog.at_level(logging.INFO):
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/ws/events/?a=1&token=cos_secret123&b=2"
        )
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/x?token=cos_secret456", "1.1", 200
        )
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        '127.0.0.1:5000 - "WebSocket /ws/events/?a=1&token=[redacted]&b=2" [accepted]',
        '127.0.0.1:5000 - "GET /x?token=[redacted] HTTP/1.1" 200',
    ]
    # uvicorn's access formatter unpacks the five arguments: they keep their shape.
    assert len(caplog.records[1].args) == 5


# --- Gap repair and positions ----------------------------------------------------------


def lost_event(organization, *, milliseconds_ago: int = 0) -> Event:
    """A committed deployment event whose live message never left (as when Redis is down).

    ``milliseconds_ago`` stamps its id earlier: a transaction that committed late.
    """
    event_id = uuid7()
    if milliseconds_ago:
        shifted = ((event_id.int >> 80) - milliseconds_ago) << 80 | (event_id.int & ((1 << 80) - 1))
        event_id = type(event_id)(int=shifted)
    return Event.objects.create(
        id=event_id, organization=organization, event_type="deployment.ready", category="development", payload={}
    )


async def frames_for(ws, seconds: float) -> list[dict]:
    """Every frame received within ``seconds``."""
    frames = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        # Not receive_json_from's timeout: on expiry it cancels the application.
        if not await ws.receive_nothing(timeout=min(left, 0.05), interval=0.01):
            frames.append(await ws.receive_json_from())
    return frames


def test_events_the_channel_layer_lost_are_repaired_once_in_order_then_positioned(alice, settings):
    settings.EVENTS_POSITION_SECONDS = 0.2
    acme = alice["acme"]

    async def scenario():
        ws = connect(headers=bearer(alice["token"]))
        await ws.connect()
        await send(ws, {"action": "subscribe", "organization": "acme", "topics": ["deployment"]})
        live = await database_sync_to_async(make_deployment_ready)(acme)
        lost = [await database_sync_to_async(lost_event)(acme) for _ in range(3)]
        # Committed late: its id is older than the live event's, which the client already has.
        late = await database_sync_to_async(lost_event)(acme, milliseconds_ago=1000)
        other_org = await database_sync_to_async(lost_event)(alice["globex"])
        newest = max(str(event.id) for event in [*lost, late])
        frames = await frames_for(ws, 1.5)
        events = [f["event"]["id"] for f in frames if f["type"] == "event"]
        positions = [f for f in frames if f["type"] == "position"]
        assert len(events) == len(set(events))  # nothing twice
        assert set(events) == {str(e.id) for e in [live, *lost, late]} | set(events[:1])  # deployment.created first
        batch = []  # each interval's repairs come in id order
        for frame in frames:
            if frame["type"] == "position":
                assert batch == sorted(batch)
                batch = []
            elif frame.get("replay"):
                batch.append(frame["event"]["id"])
        assert str(live.id) in events
        assert str(other_org.id) not in events
        assert positions[-1] == {
            "type": "position",
            "organization": str(acme.pk),
            "topics": ["deployment"],
            "last_id": newest,
        }
        # Later intervals hand out nothing again.
        assert {f["type"] for f in await frames_for(ws, 0.6)} == {"position"}
        await ws.disconnect()

    run(scenario)


def test_connections_of_one_organization_share_one_read_per_interval(alice, settings):
    from companyos.realtime.feed import current_feed

    settings.EVENTS_POSITION_SECONDS = 0.2

    async def scenario():
        connections = await subscribed(alice["token"], ["*"], 20)
        feed = current_feed()
        before = feed.reads
        await asyncio.sleep(1.0)
        reads = feed.reads - before
        for ws in connections:
            await ws.disconnect()
        return reads

    reads = run(scenario)
    assert 3 <= reads <= 7  # one per 0.2 s interval, not one per connection
