"""How fast the reconciler may ask: a per-minute budget of Vertex AI reads, and independent calls run at once.

Vertex AI's default quota for resource management (CRUD) requests is 600 per minute per project and region,
shared by everything in the project (registration, deploy preconditions, the console). The reconciler keeps to
half of it by default, so an audit never starves the event handlers.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

VERTEX_QUOTA_PER_MINUTE = 600
DEFAULT_VERTEX_READS_PER_MINUTE = VERTEX_QUOTA_PER_MINUTE // 2
WINDOW_SECONDS = 60.0


class RateLimit:
    """At most `per_minute` calls in any 60 seconds (the way a per-minute quota counts); `acquire` waits for a
    slot. None / 0 means no limit."""

    def __init__(self, per_minute: int | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_minute = per_minute or 0
        self.clock = clock
        self.sleep = sleep
        self.calls = 0
        self._starts: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self.clock()
                while self._starts and now - self._starts[0] >= WINDOW_SECONDS:
                    self._starts.popleft()
                if not self.per_minute or len(self._starts) < self.per_minute:
                    self._starts.append(now)
                    self.calls += 1
                    return
                wait = WINDOW_SECONDS - (now - self._starts[0])
            self.sleep(max(wait, 0.001))

    def paced(self, call: Callable[..., R]) -> Callable[..., R]:
        def run(*args, **kwargs) -> R:
            self.acquire()
            return call(*args, **kwargs)

        return run


@contextlib.contextmanager
def ordered_map(concurrency: int) -> Iterator[Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]]:
    """An ordered `map` running up to `concurrency` calls at once (plain `map` for 1). A failed call ends the
    map: no further calls start."""
    if concurrency <= 1:
        yield map
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="audit") as pool:
        try:
            yield pool.map
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_together(**calls: Callable[[], object]) -> dict[str, object]:
    """Run independent calls at once (listings of different APIs and collections); their results by name. The
    first failure is raised once every call has ended."""
    with ThreadPoolExecutor(max_workers=max(1, len(calls)), thread_name_prefix="audit-list") as pool:
        futures: dict[str, Future] = {name: pool.submit(call) for name, call in calls.items()}
        errors = [f.exception() for f in futures.values() if f.exception() is not None]
        if errors:
            raise errors[0]
        return {name: f.result() for name, f in futures.items()}
