"""Execute independent per-field tasks: serially, over local processes, or on a Dask cluster.

The runner knows nothing about images: it calls a picklable top-level ``function`` on
each task and hands every result to ``on_result`` in this process, as soon as it arrives
(the caller stores it, so an interruption loses only the tasks in flight). The first task
that raises stops the run: tasks not yet finished are cancelled and the exception is
re-raised here.

Schedulers:

``None``
    ``workers`` spawned local processes (one task each at a time, each on its own pipe),
    or this process when ``workers`` is 1.
``"local"``
    a Dask ``LocalCluster`` of ``workers`` single-threaded worker processes.
any other string
    the address of a running Dask scheduler (``tcp://host:8786``); its workers need the
    same software and read access to the input files (local paths or fsspec URLs).

With Dask, a task whose worker dies is run again on another worker; each task's result
reaches ``on_result`` once.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import platform
import traceback
from collections.abc import Callable, Iterable
from typing import TypeVar

log = logging.getLogger(__name__)

Task = TypeVar("Task")
Result = TypeVar("Result")


def _limit_threads() -> None:
    """Each worker process uses one thread for numeric libraries: workers are the parallelism."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"


# glibc's malloc gives large freed blocks back to the kernel: blocks over its mmap threshold
# are unmapped when freed, and the heap's free top is trimmed past 128 kB. Each field's
# full-size arrays are then faulted in again page by page: about 15,000 minor faults and 60 MB
# a 2048 px field, 0.09 of its 0.89 s on this project's virtual machines (6 us a fault; a few
# ms on bare metal). Kept instead, as a process that measures field after field wants: blocks
# up to 32 MiB (the ceiling of glibc's own moving threshold on 64-bit) from the heap, and the
# heap never trimmed, so the next field reuses the pages the last one freed. Peak memory stays
# that of the largest field (462 against 457 MB a worker at 2048 px); 64 MiB would put the
# float64 planes in the heap too and fragment it (571 MB).
HEAP_BLOCKS_UP_TO = 32 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
_NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (an int)


def keep_freed_memory() -> bool:
    """Keep this process's freed memory for its next field, where the C library is glibc
    (see ``HEAP_BLOCKS_UP_TO``); run by the processes that measure fields for ``imaging``
    (its command line and local workers). Dask workers keep Dask's own malloc settings.

    Returns
    -------
    bool
        Whether glibc took both settings (False elsewhere: macOS, musl, Windows).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # this process's C library
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCKS_UP_TO)) & bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))


def default_workers() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _run_serial(function, tasks, notify) -> None:
    for task in tasks:
        notify(function(task))


class WorkerDied(RuntimeError):
    """A worker process ended without returning its task's result (killed, out of memory)."""


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, attached as its ``__cause__``."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def _serve(function, connection) -> None:
    """A worker: run ``function`` on each task received until ``None``; send back
    ``(True, result)`` or ``(False, exception, traceback text)``."""
    _limit_threads()
    keep_freed_memory()
    try:
        while (task := connection.recv()) is not None:
            try:
                reply = (True, function(task))
            except Exception as exc:  # handed to the parent, which raises it
                reply = (False, exc, traceback.format_exc())
            try:
                connection.send(reply)
            except Exception as exc:  # a result or an exception that does not pickle
                connection.send((False, RuntimeError(f"a worker's reply could not be sent: {exc!r}"), ""))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass  # Ctrl-C reaches the whole process group; the parent stops the run


def _reply(connection, process):
    """The result a worker sent on ``connection``; raises the task's exception, or
    :class:`WorkerDied` when the worker ended without a reply."""
    try:
        reply = connection.recv()
    except (EOFError, OSError):
        process.join(1)
        raise WorkerDied(
            f"a worker process ended without a result (exit code {process.exitcode}): "
            "killed, or out of memory? Fewer --workers need less memory"
        ) from None
    if reply[0]:
        return reply[1]
    _, exc, text = reply
    if text:
        exc.__cause__ = _RemoteTraceback(text)
    raise exc


def _stop(processes) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


_NO_TASK = object()


def _run_processes(function, tasks, notify, workers: int) -> None:
    # Our own pool of processes, one pipe each, no threads: concurrent.futures'
    # ProcessPoolExecutor hangs at interpreter exit when a worker it shares a result pipe
    # with is terminated mid-write (its manager thread waits forever for the rest of the
    # message; seen here on 1 SIGTERM in 6), and a SIGTERM from a batch scheduler must end
    # the workers' tasks in flight, not wait for them.
    context = multiprocessing.get_context("spawn")
    pending = iter(tasks)
    workers_of: dict = {}  # this process's end of each worker's pipe -> the worker
    try:
        for _ in range(min(workers, len(tasks))):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_serve, args=(function, child_end))
            process.start()
            child_end.close()  # the worker holds it now: its end closes when it ends
            workers_of[parent_end] = process
            parent_end.send(next(pending))
        busy = set(workers_of)
        while busy:
            for connection in multiprocessing.connection.wait(list(busy)):
                result = _reply(connection, workers_of[connection])
                task = next(pending, _NO_TASK)
                if task is _NO_TASK:
                    busy.discard(connection)
                else:
                    connection.send(task)  # before storing this result: the worker keeps busy
                notify(result)
        for connection in workers_of:
            connection.send(None)
        for process in workers_of.values():
            process.join()
    except BaseException:
        # Ctrl-C reaches the workers too, but SIGTERM/SIGHUP from a scheduler only reach
        # this process: end the workers' tasks in flight rather than wait for them
        _stop(workers_of.values())
        raise
    finally:
        for connection in workers_of:
            connection.close()


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
