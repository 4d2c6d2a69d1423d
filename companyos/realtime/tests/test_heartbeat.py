"""The websocket heartbeat: every way the project starts uvicorn sets it, and a dead peer is let go within it.

uvicorn pings each websocket every ``--ws-ping-interval`` seconds and closes
it when no pong arrives within ``--ws-ping-timeout``; the consumer then
leaves its groups and frees its places in the token's limits.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from pathlib import Path

import pytest
import redis
import yaml
from django.conf import settings

import dev
from companyos.foundation.events import topic_group, user_group
from companyos.foundation.tests.support import uvicorn_server
from companyos.realtime.tests.support import child_env
from core.models import ApiToken
from core.services import api_token_create
from core.tests.factories import OrganizationFactory, OrganizationMemberFactory, UserFactory

ROOT = Path(__file__).resolve().parents[3]
INTERVAL = float(dev.WS_HEARTBEAT_ARGS[dev.WS_HEARTBEAT_ARGS.index("--ws-ping-interval") + 1])
TIMEOUT = float(dev.WS_HEARTBEAT_ARGS[dev.WS_HEARTBEAT_ARGS.index("--ws-ping-timeout") + 1])


def test_every_way_the_project_starts_uvicorn_sets_the_heartbeat():
    flags = " ".join(dev.WS_HEARTBEAT_ARGS)
    assert INTERVAL + TIMEOUT < 40  # shorter than uvicorn's defaults (20 s + 20 s)
    assert flags in " ".join(dev.uvicorn_command("--port", "8000"))
    dockerfile_cmd = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    assert flags in " ".join(json.loads(dockerfile_cmd.removeprefix("CMD ")))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert flags in " ".join(compose["services"]["web"]["command"])


class RawClient:
    """A websocket client on a bare socket: it reads every frame and answers none of the server's pings."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /ws/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buffer += data

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def send_text(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        assert len(payload) < 126
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (the server's frames are unmasked and unfragmented here)."""
        first, second = self._take(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._take(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._take(8))[0]
        return first & 0x0F, self._take(size)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_peer_that_never_answers_pings_is_closed_within_the_heartbeat_and_leaves_redis():
    organization = OrganizationFactory(slug="silent")
    user = UserFactory()
    OrganizationMemberFactory(organization=organization, user=user)
    _, raw = api_token_create(user=user, name="heartbeat")
    token_id = ApiToken.objects.get(user=user).pk
    prefix = settings.REDIS_KEY_PREFIX
    groups = [f"{prefix}:asgi__group__{topic_group(organization.pk, 'deployment')}"]
    groups.append(f"{prefix}:asgi__group__{user_group(user.pk)}")
    connections_key = f"{prefix}:ws-limits:token:{token_id}:connections"
    store = redis.Redis.from_url(settings.REDIS_URL)

    def subscribed() -> list[int]:
        return [count for _, count in store.pubsub_numsub(*groups)]

    # The pub/sub layer: a group's members are Redis subscriptions anyone can count.
    with uvicorn_server(env={**child_env(), "CHANNEL_LAYER": "pubsub"}, args=["--lifespan", "off"]) as port:
        client = RawClient(port, raw)
        opened = time.monotonic()
        client.send_text(json.dumps({"action": "subscribe", "organization": "silent", "topics": ["deployment"]}))
        opcode, payload = client.frame()
        assert opcode == 0x1 and json.loads(payload)["type"] == "subscribed"
        assert subscribed() == [1, 1]
        assert store.zcard(connections_key) == 1
        client.sock.settimeout(INTERVAL + TIMEOUT + 10)
        pings, close_code = [], None
        try:
            while True:
                opcode, payload = client.frame()
                if opcode == 0x9:
                    pings.append(time.monotonic() - opened)
                elif opcode == 0x8:
                    close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        except EOFError:
            closed_after = time.monotonic() - opened
        finally:
            client.sock.close()
        # Redis forgets the connection as soon as the server does.
        deadline = time.monotonic() + 5
        while (subscribed() != [0, 0] or store.zcard(connections_key)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left_in_redis = subscribed(), store.zcard(connections_key)

    print(f"\npings at {[round(at, 1) for at in pings]} s; closed ({close_code}) after {closed_after:.1f} s")
    assert pings and pings[0] == pytest.approx(INTERVAL, abs=1.5)
    assert close_code == 1011  # "keepalive ping timeout"
    assert INTERVAL + TIMEOUT - 1 <= closed_after <= INTERVAL + TIMEOUT + 2
    assert left_in_redis == ([0, 0], 0)
