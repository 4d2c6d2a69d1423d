"""The fixed-window limiter and the client address it keys on."""

import asyncio
import uuid

import pytest
from django.test import RequestFactory, override_settings

from companyos.foundation.network import address_in, client_address
from companyos.foundation.ratelimit import (
    WINDOW_SECONDS,
    Limit,
    SharedCounts,
    hit,
    hit_all,
    hit_each,
    too_many_requests,
)
from companyos.foundation.tests.test_health import caches_at
from dev import free_port


@pytest.mark.usefixtures("rate_limit_window")
def test_requests_past_the_limit_are_told_when_the_window_ends():
    key = uuid.uuid4().hex
    assert [hit("test", key, limit=3) for _ in range(3)] == [None, None, None]

    retry_after = hit("test", key, limit=3)
    assert 1 <= retry_after <= WINDOW_SECONDS
    assert hit("test", uuid.uuid4().hex, limit=3) is None, "another key has its own count"
    response = too_many_requests(retry_after)
    assert (response.status_code, response["Retry-After"]) == (429, str(retry_after))


def test_the_counter_expires_with_its_window(raw, settings):
    key = uuid.uuid4().hex
    hit("test", key, limit=5)

    [counter] = raw.keys(f"{settings.REDIS_KEY_PREFIX}:ratelimit:test:{key}:*")
    assert 0 < raw.ttl(counter) <= WINDOW_SECONDS + 5


@pytest.mark.usefixtures("rate_limit_window")
def test_several_limits_count_in_order_and_a_refused_request_stops_counting(raw, settings):
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    limits = (Limit("test", first, 2), Limit("test", second, 5))
    assert [hit_all(*limits) for _ in range(2)] == [None, None]

    assert 1 <= hit_all(*limits) <= WINDOW_SECONDS
    assert 1 <= hit_all(Limit("test", first, 5), Limit("test", second, 2)) <= WINDOW_SECONDS, "the second refuses"

    def count(key):
        [counter] = raw.keys(f"{settings.REDIS_KEY_PREFIX}:ratelimit:test:{key}:*")
        return (int(raw.get(counter)), raw.ttl(counter))

    assert count(first)[0] == 4
    assert count(second)[0] == 3, "the request the first limit refused was not counted against the second"
    assert 0 < count(second)[1] <= WINDOW_SECONDS + 5
    assert hit_all(Limit("test", first, 0)) is None


@pytest.mark.usefixtures("rate_limit_window")
def test_requests_counted_together_are_answered_as_each_alone():
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    refused_by_first = (Limit("test", first, 1), Limit("test", second, 5))
    answers = hit_each([refused_by_first, refused_by_first, (Limit("test", second, 2),), ()])

    assert answers[0] is None and 1 <= answers[1] <= WINDOW_SECONDS
    # The second request was refused before its second limit: the third is the second counted there.
    assert answers[2:] == [None, None]
    assert 1 <= hit_all(Limit("test", second, 2)) <= WINDOW_SECONDS


@pytest.mark.usefixtures("rate_limit_window")
def test_shared_counts_serve_the_requests_waiting_together_in_one_round_trip():
    key = uuid.uuid4().hex
    round_trips = []

    async def run(function, requests):
        round_trips.append(len(requests))
        return await asyncio.to_thread(function, requests)

    shared = SharedCounts(run)

    async def flood():
        return await asyncio.gather(*(shared.hit_all(Limit("test", key, 5)) for _ in range(10)))

    async def one_after_another():
        return [await shared.hit_all(Limit("test", key, 5)) for _ in range(2)]

    answers = asyncio.run(flood())

    assert answers[:5] == [None] * 5 and all(1 <= answer <= WINDOW_SECONDS for answer in answers[5:])
    assert round_trips == [10]
    assert all(asyncio.run(one_after_another())), "a new event loop starts afresh"
    assert round_trips == [10, 1, 1], "a lone request goes at once"


def test_shared_counts_raise_a_failure_to_every_request_waiting():
    async def run(function, requests):
        await asyncio.sleep(0)
        raise RuntimeError("no thread left")

    shared = SharedCounts(run)

    async def two():
        return await asyncio.gather(*(shared.hit_all(Limit("test", "k", 5)) for _ in range(2)), return_exceptions=True)

    assert [type(answer) for answer in asyncio.run(two())] == [RuntimeError, RuntimeError]


def test_a_limit_of_zero_is_unlimited_and_an_unreachable_redis_lets_requests_through():
    assert all(hit("test", "k", limit=0) is None for _ in range(100))
    with override_settings(CACHES=caches_at(f"redis://127.0.0.1:{free_port()}/0")):
        assert all(hit("test", uuid.uuid4().hex, limit=1) is None for _ in range(3))


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.1", "10.0.0.2"),  # no proxy trusted: what the client wrote proves nothing
        (1, "203.0.113.1", "203.0.113.1"),
        (1, "198.51.100.9, 203.0.113.1", "203.0.113.1"),  # the client's own claim is left of ours
        (2, "198.51.100.9, 203.0.113.1", "198.51.100.9"),
        (2, "203.0.113.1", "10.0.0.2"),  # fewer hops than proxies: fall back to the socket
    ],
)
def test_the_client_address_trusts_only_the_configured_proxies(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)

    assert client_address(request) == expected


def test_address_in_networks():
    assert address_in("10.1.2.3", ["10.0.0.0/8"])
    assert address_in("::1", ["127.0.0.1", "::1"])
    assert not address_in("192.0.2.1", ["10.0.0.0/8"])
    assert not address_in("not an address", ["0.0.0.0/0"])
