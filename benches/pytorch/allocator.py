"""The allocator setting Strata's binaries make (strata_kernels::keep_freed_memory), for the
PyTorch side of the benchmarks, so that both sides run with the same malloc: blocks up to
32 MiB from the heap, and freed memory kept (glibc's mallopt M_MMAP_THRESHOLD and
M_TRIM_THRESHOLD). Without it glibc unmaps large freed blocks and the next step page-faults
them in again; PyTorch gains from the setting as Strata does.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory():
    """Returns whether glibc took the setting (False with another C library)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
