"""Blocking object-store calls on a few threads.

Indexing and assembly issue one request per instance (a header range, an index entry, the
instance's bytes); against S3 each one is a network round trip, so a series of hundreds of
instances is dominated by latency unless the requests overlap. boto3 clients are thread-safe.
Results come back in input order, so everything built from them stays deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

from covidct_core.storage import ObjectStore

T = TypeVar("T")
R = TypeVar("R")


class IoPool:
    """``map`` over ``threads`` threads (in the calling thread when ``threads`` is 1)."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self._executor: ThreadPoolExecutor | None = None

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[function(item) for item in items]``; the first exception (in input order) is
        raised once every call has finished (none is left running behind the caller)."""
        if self.threads == 1 or len(items) < 2:
            return [function(item) for item in items]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="ingest-io")
        futures = [self._executor.submit(function, item) for item in items]
        wait(futures)
        return [future.result() for future in futures]

    def fetch(self, store: ObjectStore, keys: Sequence[str]) -> list[bytes]:
        """The bytes of every key, in order."""
        return self.map(store.get_bytes, keys)


SEQUENTIAL = IoPool(1)
