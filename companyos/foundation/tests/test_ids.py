"""UUIDv7 ids: time order within a process, across its threads too, and the floor of a millisecond."""

import sys
import threading
import time
from collections import defaultdict

import pytest

from companyos.foundation.ids import uuid7, uuid7_floor

THREADS = 8
IDS_PER_THREAD = 20_000


@pytest.fixture
def frequent_thread_switches():
    """Switch threads every microsecond instead of every 5 ms, so a race in uuid7 shows within a test run."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_ids_are_version_7_and_carry_their_millisecond():
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000

    assert (value.version, value.variant) == (7, "specified in RFC 4122")
    assert before <= value.int >> 80 <= after + 1  # + 1: a full counter borrows the next millisecond


def test_threads_in_one_process_draw_from_one_strictly_increasing_sequence(frequent_thread_switches):
    start = threading.Barrier(THREADS)
    made: list[list] = [[] for _ in range(THREADS)]

    def generate(ids: list) -> None:
        start.wait()
        ids.extend(uuid7() for _ in range(IDS_PER_THREAD))

    threads = [threading.Thread(target=generate, args=(ids,)) for ids in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for ids in made:
        assert all(earlier < later for earlier, later in zip(ids, ids[1:], strict=False))
    everything = [value for ids in made for value in ids]
    assert len(set(everything)) == THREADS * IDS_PER_THREAD
    # Within a millisecond, the 12-bit counter orders the ids: no two share one.
    counters = defaultdict(set)
    for value in everything:
        counters[value.int >> 80].add((value.int >> 64) & 0x0FFF)
    assert sum(len(taken) for taken in counters.values()) == len(everything)


def test_the_floor_of_a_millisecond_sorts_before_its_ids_and_after_earlier_ones():
    value = uuid7()
    milliseconds = value.int >> 80

    assert uuid7_floor(milliseconds - 1) < uuid7_floor(milliseconds) <= value < uuid7_floor(milliseconds + 1)
    assert uuid7_floor(-5) == uuid7_floor(0)
