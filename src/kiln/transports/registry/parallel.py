"""Running transfers side by side, stopping at the first failure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def run_all(work: Callable[[T], object], items: Sequence[T], max_workers: int, name: str) -> None:
    """Call ``work`` on every item in a thread pool; the first exception cancels what has not started and is
    raised once the running ones have finished (a partial transfer is never reported as success)."""
    if not items:
        return
    workers = max(1, min(max_workers, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        futures = [pool.submit(work, item) for item in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        for f in done:
            exc = f.exception()
            if exc is not None:
                raise exc
