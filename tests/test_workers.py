"""The local process pool of imaging.run.workers: results, a task's exception, a worker that dies."""

import os
import platform
import subprocess
import sys

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


FIELD_ROUNDS = """
import resource, sys
import numpy as np
from imaging.run.workers import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(4):  # four 'fields', each writing three 20 MB planes and freeing them
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    planes = [np.ones(20 * 2**20, np.uint8) for _ in range(3)]
    del planes
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, *faults)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's settings are glibc's")
def test_kept_memory_is_not_faulted_in_again_by_the_next_field():
    def rounds(mode: str) -> tuple[str, list[int]]:
        out = subprocess.run([sys.executable, "-c", FIELD_ROUNDS, mode], capture_output=True, text=True, check=True)
        kept, *faults = out.stdout.split()
        return kept, [int(f) for f in faults]

    kept, faults = rounds("keep")
    assert kept == "True"
    assert faults[0] > 500  # the first field maps its pages
    assert sum(faults[1:]) < 0.02 * faults[0]  # later fields reuse them
    _, control = rounds("default")  # glibc's default: freed planes go back and fault in again
    assert min(control[1:]) > 0.3 * control[0]
