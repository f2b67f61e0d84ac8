"""The ingest I/O pool: order, errors, real concurrency; and its setting."""

from __future__ import annotations

import threading
import time

import pytest

from covidct_core.errors import ConfigError
from covidct_ingest.io_pool import IoPool
from covidct_ingest.main import read_ingest_settings


def test_results_keep_input_order() -> None:
    pool = IoPool(8)
    assert pool.map(lambda n: n * n, list(range(50))) == [n * n for n in range(50)]


def test_calls_overlap() -> None:
    """Four calls that each wait for the other three finish only if they run at once."""
    barrier = threading.Barrier(4, timeout=10)
    assert IoPool(4).map(lambda n: (barrier.wait(), n)[1], [0, 1, 2, 3]) == [0, 1, 2, 3]


def test_first_error_in_input_order_is_raised_after_all_calls() -> None:
    finished: list[int] = []

    def work(n: int) -> int:
        if n in (3, 7):
            raise ValueError(f"bad {n}")
        time.sleep(0.05 if n > 3 else 0.0)  # still running when item 3 has failed
        finished.append(n)
        return n

    with pytest.raises(ValueError, match="bad 3"):
        IoPool(4).map(work, list(range(10)))
    assert sorted(finished) == [0, 1, 2, 4, 5, 6, 8, 9]


def test_one_thread_runs_in_the_caller() -> None:
    caller = threading.get_ident()
    assert IoPool(1).map(lambda _: threading.get_ident(), [1, 2]) == [caller, caller]


def test_io_threads_setting() -> None:
    assert read_ingest_settings({}).io_threads == 16
    assert read_ingest_settings({"COVIDCT_INGEST_IO_THREADS": "4"}).io_threads == 4
    with pytest.raises(ConfigError) as info:
        read_ingest_settings({"COVIDCT_INGEST_IO_THREADS": "0", "COVIDCT_INGEST_TRIGGER": "x"})
    assert len(info.value.problems) == 2
    assert any("COVIDCT_INGEST_IO_THREADS" in p for p in info.value.problems)
