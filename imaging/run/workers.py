"""Execute independent per-field tasks: serially, over local processes, or on a Dask cluster.

The runner knows nothing about images: it calls a picklable top-level ``function`` on
each task and hands every result to ``on_result`` in this process, as soon as it arrives
(the caller stores it, so an interruption loses only the tasks in flight). The first task
that raises stops the run: tasks not yet finished are cancelled and the exception is
re-raised here.

Schedulers:

``None``
    ``workers`` spawned local processes (one task each at a time), or this process when
    ``workers`` is 1.
``"local"``
    a Dask ``LocalCluster`` of ``workers`` single-threaded worker processes.
any other string
    the address of a running Dask scheduler (``tcp://host:8786``); its workers need the
    same software and read access to the input files (local paths or fsspec URLs).

With Dask, a task whose worker dies is run again on another worker; each task's result
reaches ``on_result`` once.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable
from typing import TypeVar

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


def _run_serial(function, tasks, notify) -> None:
    for task in tasks:
        notify(function(task))


def _run_processes(function, tasks, notify, workers: int) -> None:
    context = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context, initializer=_limit_threads)
    try:
        futures = [pool.submit(function, task) for task in tasks]
        for future in cf.as_completed(futures):
            notify(future.result())
    except BaseException:
        # Ctrl-C reaches the workers too, but SIGTERM/SIGHUP from a scheduler only reach this
        # process: end the workers' tasks in flight rather than wait for them. The futures are
        # not cancelled first: the executor then fails every unfinished one as the pool breaks,
        # and a cancelled one makes Python 3.11's executor thread raise and the exit hang
        # (seen here: a SIGTERM while workers were still starting).
        for worker in multiprocessing.active_children():
            worker.terminate()
        pool.shutdown(wait=False)
        raise
    pool.shutdown(wait=True)


def dask_client(scheduler: str, workers: int):
    """A Dask client: a new LocalCluster (``'local'``) or a connection to ``scheduler``."""
    from distributed import Client, LocalCluster

    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )
        return Client(cluster)
    return Client(scheduler)


def _run_dask(function, tasks, notify, *, client, key) -> None:
    from distributed import as_completed

    futures = [client.submit(function, task, key=key(task) if key else None, pure=False) for task in tasks]
    try:
        for future in as_completed(futures):
            notify(future.result())
    except BaseException:
        client.cancel(futures)
        raise


def run_tasks(
    function: Callable[[Task], Result],
    tasks: Iterable[Task],
    *,
    workers: int = 1,
    on_result: Callable[[Result], None] | None = None,
    scheduler: str | None = None,
    client=None,
    key: Callable[[Task], str] | None = None,
) -> None:
    """Apply ``function`` to every task; each result goes to ``on_result`` as it completes.

    Parameters
    ----------
    function : callable
        Top-level (picklable) function of one task.
    tasks : iterable
    workers : int
        Local processes (or LocalCluster workers).
    on_result : callable, optional
        Called in this process with each result.
    scheduler : None, 'local' or a Dask scheduler address
        See the module docstring.
    client : distributed.Client, optional
        Use this client instead of creating one from ``scheduler``.
    key : callable, optional
        Dask task key of a task (shown on the Dask dashboard).
    """
    tasks = list(tasks)
    notify = on_result or (lambda result: None)
    if not tasks:
        return
    if client is not None or scheduler is not None:
        if client is not None:
            _run_dask(function, tasks, notify, client=client, key=key)
            return
        with dask_client(scheduler, workers) as own:
            try:
                _run_dask(function, tasks, notify, client=own, key=key)
            finally:
                if scheduler == "local":
                    own.cluster.close()
        return
    if workers <= 1 or len(tasks) <= 1:
        _run_serial(function, tasks, notify)
    else:
        _run_processes(function, tasks, notify, workers)


def collect(
    function: Callable[[Task], Result],
    tasks: Iterable[Task],
    *,
    workers: int = 1,
    on_result: Callable[[Result], None] | None = None,
    scheduler: str | None = None,
) -> list[Result]:
    """:func:`run_tasks`, returning the results (in completion order)."""
    results: list[Result] = []

    def keep(result: Result) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    run_tasks(function, tasks, workers=workers, on_result=keep, scheduler=scheduler)
    return results
