"""Redis behind Sentinel: how settings.py points every Redis use at the current master.

With ``REDIS_SENTINELS`` set, nothing connects to a fixed address: django-redis
(cache layers, sessions, locks, rate limits) and channels-redis ask the
sentinels for the master of a service name on each new connection, so after a
failover the next connection reaches the promoted replica. ``REDIS_URL`` then
only supplies the password and database number.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit


def parse_sentinels(entries: list[str]) -> list[tuple[str, int]]:
    """``["10.0.0.1:26379", "[::1]:26379"]`` as redis-py's ``(host, port)`` pairs."""
    sentinels = []
    for entry in entries:
        host, _, port = entry.rpartition(":")
        sentinels.append((host.strip("[]"), int(port)))
    return sentinels


def master_url(url: str, master: str) -> str:
    """``url`` with the service name in place of its host: django-redis's Sentinel location."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{credentials}@{master}" if credentials else master).geturl()


def channel_layer_host(shard: str, *, url: str, sentinels: list[tuple[str, int]], **options: Any) -> dict:
    """One entry of channels-redis's ``hosts``: a Redis URL, or with sentinels a master's service name."""
    if not sentinels:
        return {"address": shard, **options}
    parts = urlsplit(url)
    database = parts.path.lstrip("/")
    host: dict[str, Any] = {
        "master_name": shard,
        "sentinels": sentinels,
        # The sentinels answer at once or are down: do not wait on one.
        "sentinel_kwargs": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        "db": int(database) if database else 0,
        **options,
    }
    if parts.password:
        host["password"] = unquote(parts.password)
    return host
