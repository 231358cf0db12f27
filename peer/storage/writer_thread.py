"""The store's one long-lived writer thread, fed by a queue.

Every acknowledged event waits for a commit, so the hand-off matters: a thread fed by
a queue costs a fraction of a ``trio.to_thread`` hand-off per commit (no thread cache,
limiter or context bookkeeping).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome

_T = TypeVar("_T")


class WriterThread:
    """The one thread that commits for a store: jobs in through a queue, results
    out through each job's ``deliver`` callback. Owned by the store; ``stop`` joins it."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], Any], Callable[[outcome.Outcome[Any]], None]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], _T], deliver: Callable[[outcome.Outcome[_T]], None]
               ) -> None:
        self._jobs.put((fn, deliver))

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, deliver = job
            result = outcome.capture(fn)
            del fn, job  # nothing of the job stays alive while the thread waits
            deliver(result)
            del deliver, result
