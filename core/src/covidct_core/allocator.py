"""Keep freed heap memory in the process instead of handing it back to the kernel.

The stages allocate and free arrays of tens to hundreds of MB for every series (a 512x512x300
CT is 150 MB as int16, activations of a 3D network at 128^3 are ~130 MB each). glibc serves
blocks that large with fresh ``mmap`` calls and unmaps them on free, so every series, and every
sliding window, page-faults its working set in again: measured here, a third of the CPU time
of a forward pass went to the kernel. Raising glibc's mmap and trim thresholds lets such
blocks be reused from the heap: the resident size stays at the peak of the last job (which a
worker needs again for the next one) and the page faults go away.

The thresholds alone do not reach the worker's handler thread: glibc gives other threads
their own arenas, whose heaps are capped at 64 MB, so their large blocks still come from
``mmap`` (measured: a segmentation on the handler thread took 30 % more CPU than on the main
thread). One arena for the whole process (``M_ARENA_MAX`` = 1) serves every thread from the
main heap; the stages allocate few, large blocks, so the shared arena's lock costs nothing
measurable.

``retain_freed_memory`` is called once by the process entrypoints (workers, the CLI, the
benchmarks). It is a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# mallopt takes an int: the largest block served from the heap is 1 GiB, far above any one
# array the stages allocate; trimming starts only when 2 GiB lie free at the top of the heap.
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1


def retain_freed_memory() -> bool:
    """Tune glibc's allocator as described above; True when it took effect."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = (
        (M_ARENA_MAX, 1),
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    )
    return all([bool(mallopt(option, value)) for option, value in settings])
