"""Keep freed memory in the process: every update's arrays reuse pages already mapped.

Each training update allocates the kernels' outputs afresh (states, gate activations, their
gradients: about 0.4–1.3 MB each for a JSB population of 10) and frees them an update
later. glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` (128 KB until it adapts)
with a fresh ``mmap`` and gives the top of the heap back above ``M_TRIM_THRESHOLD``; under
those defaults every call touched new pages: the GRU forward kernel at K = 10, T = 60, B = 4,
H = 46 took 617 page faults per call and 2.5 ms of CPU time where the same arithmetic on
mapped pages takes 1.0 ms (issue 22; glibc's dynamic threshold did not prevent it).

:func:`keep_freed_memory` raises both thresholds (blocks up to :data:`MMAP_THRESHOLD` come
from the heap, and up to :data:`TRIM_THRESHOLD` of free heap stays mapped), once per process,
where the C library is glibc; elsewhere it does nothing. Only where the memory comes from
changes, never what is computed. :mod:`rnnbench.nn.kernels.glue` calls it on import.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its dynamic threshold on 64-bit systems
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (module docstring), once;
    True where they are set."""
    global _done
    if _done is None:
        _done = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _done = bool(
                mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
    return _done
