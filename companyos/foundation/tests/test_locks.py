"""Distributed locks on the real Redis: ownership, expiry, fencing, many processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid

import pytest
from django.conf import settings

from companyos.foundation.locks import (
    DistributedLock,
    LockNotAcquired,
    LockNotOwned,
    StaleFencingToken,
    check_fencing_token,
    distributed_lock,
    release_if_owner,
)


@pytest.fixture
def name(raw):
    """A lock name of its own; its keys are removed afterwards."""
    lock_name = f"test:{uuid.uuid4().hex}"
    yield lock_name
    raw.delete(f"{settings.REDIS_KEY_PREFIX}:lock:{lock_name}", f"{settings.REDIS_KEY_PREFIX}:lock:{lock_name}:fence")


def test_lock_is_held_with_a_ttl_and_released(raw, name):
    with distributed_lock(name, timeout=5, blocking_timeout=1) as lock:
        assert raw.get(lock.key).decode() == lock.token
        assert 4000 < raw.pttl(lock.key) <= 5000
    assert not raw.exists(lock.key)


def test_fencing_tokens_grow_with_every_acquisition(name):
    tokens = []
    for _ in range(3):
        with distributed_lock(name, timeout=5, blocking_timeout=1) as lock:
            tokens.append(lock.fencing_token)
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 3


def test_a_held_lock_raises_lock_not_acquired_after_blocking_timeout(name):
    with distributed_lock(name, timeout=5, blocking_timeout=0):
        started = time.monotonic()
        with (
            pytest.raises(LockNotAcquired, match=f"lock '{name}' is held by another process; gave up after 0.2 s"),
            distributed_lock(name, timeout=5, blocking_timeout=0.2),
        ):
            pass
        assert 0.2 <= time.monotonic() - started < 1


def test_a_waiter_gets_the_lock_when_the_holder_releases(name):
    holder = distributed_lock(name, timeout=5, blocking_timeout=0)
    holder.acquire()
    threading.Timer(0.2, holder.release).start()
    started = time.monotonic()
    with distributed_lock(name, timeout=5, blocking_timeout=3) as waiter:
        assert 0.15 < time.monotonic() - started < 1
        assert waiter.fencing_token > holder.fencing_token


def test_a_non_holder_cannot_release(raw, name):
    with distributed_lock(name, timeout=5, blocking_timeout=0) as holder:
        intruder = DistributedLock(name, timeout=5, blocking_timeout=0)
        with pytest.raises(LockNotOwned):
            intruder.release()
        intruder.token = "a guessed token"
        with pytest.raises(LockNotOwned):
            intruder.release()
        assert not release_if_owner(raw, holder.key, "a guessed token")
        assert raw.get(holder.key).decode() == holder.token


def test_an_expired_holder_cannot_release_and_its_fencing_token_is_stale(raw, name):
    stale = distributed_lock(name, timeout=0.2, blocking_timeout=0)
    stale.acquire()
    time.sleep(0.3)
    with distributed_lock(name, timeout=5, blocking_timeout=0) as current:
        with pytest.raises(LockNotOwned, match="expired before it was released"):
            stale.release()
        assert raw.get(current.key).decode() == current.token
        with pytest.raises(StaleFencingToken, match=f"fencing token {stale.fencing_token} of lock '{name}' is stale"):
            check_fencing_token(name, stale.fencing_token)
        check_fencing_token(name, current.fencing_token)


def test_extend_resets_the_ttl_only_for_the_holder(raw, name):
    with distributed_lock(name, timeout=0.5, blocking_timeout=0) as lock:
        lock.extend(10)
        assert raw.pttl(lock.key) > 9000
        time.sleep(0.6)
        assert raw.get(lock.key).decode() == lock.token
    with pytest.raises(LockNotOwned):
        lock.extend()


def test_every_lock_needs_a_ttl(name):
    with pytest.raises(ValueError, match="positive timeout"):
        distributed_lock(name, timeout=0, blocking_timeout=1)


def test_decorator_takes_a_fresh_lock_per_call(raw, name):
    seen = []

    @distributed_lock(name, timeout=5, blocking_timeout=5)
    def critical():
        value = raw.get(f"{settings.REDIS_KEY_PREFIX}:lock:{name}")
        seen.append(value)
        time.sleep(0.05)

    threads = [threading.Thread(target=critical) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4
    assert None not in seen
    assert len(set(seen)) == 4  # each call held the lock with its own token


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.config.settings")
    import django

    django.setup()


def _increment_under_lock(name: str, counter_key: str, cycles: int, start) -> None:
    _setup_django()
    from django_redis import get_redis_connection

    conn = get_redis_connection("default")
    start.wait()
    for _ in range(cycles):
        # Generous bounds: on a loaded machine neither may run out during the test.
        with distributed_lock(name, timeout=30, blocking_timeout=120):
            # Read, increment, write: not atomic on purpose, only the lock keeps it right.
            value = int(conn.get(counter_key) or 0)
            conn.set(counter_key, value + 1)


@pytest.mark.slow
def test_eight_processes_incrementing_under_the_lock_lose_no_update(raw, name):
    ctx = multiprocessing.get_context("spawn")
    counter_key = f"{settings.REDIS_KEY_PREFIX}:{name}:counter"
    start = ctx.Barrier(8)
    processes = [ctx.Process(target=_increment_under_lock, args=(name, counter_key, 200, start)) for _ in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    try:
        assert [process.exitcode for process in processes] == [0] * 8
        assert int(raw.get(counter_key)) == 1600
    finally:
        raw.delete(counter_key)


def _hold_forever(name: str, timeout: float, acquired_at) -> None:
    _setup_django()
    with distributed_lock(name, timeout=timeout, blocking_timeout=5):
        # CLOCK_MONOTONIC is system-wide on Linux, so the parent can compare it.
        acquired_at.value = time.monotonic()
        time.sleep(3600)


@pytest.mark.slow
def test_a_killed_holder_blocks_others_only_until_its_timeout(name):
    ctx = multiprocessing.get_context("spawn")
    acquired_at = ctx.Value("d", 0.0)
    holder = ctx.Process(target=_hold_forever, args=(name, 2.0, acquired_at))
    holder.start()
    deadline = time.monotonic() + 60
    while not acquired_at.value:
        assert time.monotonic() < deadline, "the holder never got the lock"
        time.sleep(0.01)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    with distributed_lock(name, timeout=5, blocking_timeout=10):
        held_for = time.monotonic() - acquired_at.value
    # Free once the dead holder's 2 s TTL ran out, not before, and not much later.
    assert 1.95 < held_for < 3.5
