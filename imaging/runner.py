"""Execute independent per-field tasks: serially or over local worker processes.

The runner knows nothing about images: it calls a picklable top-level ``function`` on
each task and hands every result to ``on_result`` as soon as it arrives, so the caller
can show progress. The first task that raises stops the run: tasks not yet started are
cancelled and the exception is re-raised in the caller (results already written by
finished tasks stay on disk and are reused by the next run).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from typing import Callable, Iterable, TypeVar

log = logging.getLogger(__name__)

Task = TypeVar("Task")
Result = TypeVar("Result")


def _limit_threads() -> None:
    """Each worker process uses one thread for numeric libraries: workers are the parallelism."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_tasks(function: Callable[[Task], Result], tasks: Iterable[Task], *, workers: int = 1,
              on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Apply ``function`` to every task; results in completion order.

    Parameters
    ----------
    function : callable
        Top-level (picklable) function of one task.
    tasks : iterable
    workers : int
        1 runs in this process; more uses a pool of that many spawned processes.
    on_result : callable, optional
        Called with each result as it completes.
    """
    tasks = list(tasks)
    results: list[Result] = []
    notify = on_result or (lambda result: None)
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            result = function(task)
            results.append(result)
            notify(result)
        return results
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context,
                                initializer=_limit_threads) as pool:
        futures = [pool.submit(function, task) for task in tasks]
        try:
            for future in cf.as_completed(futures):
                result = future.result()
                results.append(result)
                notify(result)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results
