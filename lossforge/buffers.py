"""Recycled memory for the large arrays lossforge returns (gradients, per-element losses).

A fresh NumPy array of more than 32 MiB is fresh memory from the OS (glibc maps it anew on
every allocation, and unmaps it when freed), and the OS zeroes each of its pages when a
lossforge kernel first writes it. For a memory-bound loss that costs more than the pass
itself: MSE's value and gradient over 16M float32 elements took 12-13 ms into a fresh array
and 8-9 ms into a reused one (Intel Xeon VM, 2 threads). Smaller arrays come from glibc's
heap, whose memory is reused without faults.

So `empty` hands out, where it can, memory of an array lossforge returned before and that the
caller has since dropped: the pool keeps the buffer, and a buffer is free when nothing but
the pool refers to it (its reference count), that is when every array or view made from it
is gone. An array the caller still holds, or any view of it, is never handed out again. A
training loop that keeps the last step's gradient while computing the next one uses two
buffers in turn (`_PER_SIZE`).

The pool keeps at most ``LOSSFORGE_BUFFER_POOL_MB`` MiB (default 1024; 0 turns it off) of
memory the caller dropped, and `release` gives it back to the OS. Code that keeps a raw pointer
to a returned array's data (``a.ctypes.data``) without a reference to the array must not use
it after dropping the array: the memory may then hold a later result (as it could hold
anything after a plain NumPy array is freed).
"""
from __future__ import annotations

import math
import os
import sys
import threading

import numpy as np

__all__ = ["empty", "release", "MIN_BYTES"]

MIN_BYTES = 32 << 20  # smaller arrays are reused by glibc's heap already
_PER_SIZE = 2  # buffers per size: the result being computed and the caller's last one
# a free buffer's reference count as `_take` sees it: the pool's list's reference, plus what
# getrefcount's argument adds (measured, not assumed: it differs between Python versions)
_FREE = sys.getrefcount(np.empty(1)) + 1

_lock = threading.Lock()
_pool: dict[int, list[np.ndarray]] = {}  # size in bytes -> uint8 buffers


def _held_bytes() -> int:
    """The bytes of every pooled buffer, held or free."""
    return sum(b.nbytes for bs in _pool.values() for b in bs)


def _cap_bytes() -> int:
    """The most memory the pool may keep, from ``LOSSFORGE_BUFFER_POOL_MB``."""
    try:
        megabytes = float(os.environ.get("LOSSFORGE_BUFFER_POOL_MB", 1024))
    except ValueError:
        value = os.environ["LOSSFORGE_BUFFER_POOL_MB"]
        raise ValueError("LOSSFORGE_BUFFER_POOL_MB must be a number of MiB (0 turns the "
                         f"buffer pool off), not {value!r}") from None
    return int(megabytes * (1 << 20))


def empty(shape: tuple[int, ...], dtype) -> tuple[np.ndarray, bool]:
    """``(np.empty(shape, dtype), recycled)``: an array of at least `MIN_BYTES` comes from a
    buffer no one else refers to any more where there is one (``recycled`` is then True: its
    pages are in memory already), else from a new buffer the pool keeps for next time, or, past
    the pool's cap, from NumPy."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES:  # (first: a small call pays nothing more)
        return np.empty(shape, dtype), False
    cap = _cap_bytes()
    if nbytes > cap:
        return np.empty(shape, dtype), False
    with _lock:  # a free buffer is free until its view exists: take it and view it, locked
        buffer, recycled = _take(nbytes, cap)
        if buffer is None:
            return np.empty(shape, dtype), False
        return buffer.view(dtype).reshape(shape), recycled


def _take(nbytes: int, cap: int) -> tuple[np.ndarray | None, bool]:
    """A free buffer of ``nbytes`` and True, else a new one (kept, room allowing) and False."""
    buffers = _pool.setdefault(nbytes, [])
    for index in range(len(buffers)):
        if sys.getrefcount(buffers[index]) == _FREE:
            return buffers[index], True
    if len(buffers) >= _PER_SIZE:
        return None, False
    _evict_free_buffers(cap - nbytes)
    if _held_bytes() + nbytes > cap:
        return None, False
    buffers.append(np.empty(nbytes, np.uint8))
    return buffers[-1], False


def _evict_free_buffers(limit: int) -> None:
    """Drop free buffers, largest first, until the pool holds at most ``limit`` bytes."""
    held = _held_bytes()
    for size in sorted(_pool, reverse=True):
        buffers = _pool[size]
        for index in reversed(range(len(buffers))):
            if held <= limit:
                return
            if sys.getrefcount(buffers[index]) == _FREE:
                held -= size
                del buffers[index]


def release() -> int:
    """Give the memory of every free buffer back to the OS; returns the bytes released.

    >>> from lossforge import buffers
    >>> _ = buffers.release()
    >>> big, recycled = buffers.empty((1 << 23,), np.float32)  # 32 MiB: a new pooled buffer
    >>> recycled
    False
    >>> del big
    >>> again, recycled = buffers.empty((1 << 23,), np.float32)  # the same memory
    >>> recycled
    True
    >>> del again
    >>> buffers.release() >> 20
    32
    """
    with _lock:
        before = _held_bytes()
        _evict_free_buffers(0)
        return before - _held_bytes()
