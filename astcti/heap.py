"""The daemon's heap with glibc: keep large blocks out of it, give back what a burst freed.

A contact centre's astcti runs for months; its memory should be what its clients and calls
need, not the high-water mark of a moment (a login's scrypt, a link coming up with thousands of
extensions, whose subscription answers list every endpoint again and again).
"""

from __future__ import annotations

import ctypes
import gc

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: nothing to tune
    _libc = None


def bound() -> None:
    """Large blocks (scrypt's 16 MiB per login check) straight from mmap, so freeing them
    returns the memory; glibc's default raises its mmap threshold after the first free and
    then keeps such blocks resident in each thread's arena."""
    if _libc is not None:
        try:
            _libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: fixed at 1 MiB
        except AttributeError:
            pass


def trim() -> None:
    """After a burst of short-lived allocations: collect, and return the free heap pages."""
    gc.collect()
    if _libc is not None:
        try:
            _libc.malloc_trim(0)
        except AttributeError:
            pass
