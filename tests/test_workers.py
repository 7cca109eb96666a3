"""The local process pool of imaging.run.workers: results, a task's exception, a worker that dies."""

import os

import pytest

from imaging.errors import InputError
from imaging.run.workers import WorkerDied, collect


def square_or_fail(task: int) -> int:
    if task == 7:
        raise InputError(f"task {task}: refused")
    return task * task


def die_on_three(task: int) -> int:
    if task == 3:
        os._exit(9)  # as the kernel's OOM killer would end it
    return task


def test_every_task_runs_once_on_the_workers():
    results = collect(square_or_fail, range(7), workers=3)
    assert sorted(results) == [0, 1, 4, 9, 16, 25, 36]
    assert collect(square_or_fail, [5], workers=4) == [25]  # fewer tasks than workers


def test_a_tasks_exception_reaches_the_caller_with_its_type_and_the_workers_traceback():
    seen = []
    with pytest.raises(InputError, match="task 7: refused") as caught:
        collect(square_or_fail, range(12), workers=2, on_result=seen.append)
    assert "square_or_fail" in str(caught.value.__cause__)  # where in the worker it was raised
    assert 7 * 7 not in seen and len(seen) < 12


def test_a_worker_that_dies_is_one_error_naming_its_exit_code():
    with pytest.raises(WorkerDied, match="exit code 9"):
        collect(die_on_three, range(6), workers=2)
