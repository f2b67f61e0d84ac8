"""The allocator tuning takes effect, also for blocks allocated on other threads."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import os, threading
import numpy as np
from covidct_core.allocator import retain_freed_memory
if {tuned}:
    assert retain_freed_memory()

def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def churn():
    block = np.ones(200_000_000, np.uint8)  # 200 MB, touched, then freed
    del block

before = resident()
worker = threading.Thread(target=churn)
worker.start(); worker.join()
print(resident() - before)
"""


def kept_after_free(tuned: bool) -> int:
    code = SCRIPT.format(tuned=tuned)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_blocks_freed_on_other_threads_stay_for_reuse() -> None:
    """Untuned, a 200 MB block freed on a thread is unmapped (the next one faults in afresh);
    tuned, it stays in the process's heap for the next job."""
    assert kept_after_free(False) < 50_000_000
    assert kept_after_free(True) > 150_000_000
