"""The read-bandwidth floor: the least time any kernel can take to read its inputs once.

`read_floor` is a Numba ``prange`` sum (parallel, and the same loop serial: the floor is the
faster of the two) over up to four flat arrays (the inputs of one loss
call), in blocks of `BLOCK` elements accumulated in float32 lanes (``fastmath={"reassoc"}``
lets LLVM vectorise the block loop) and float64 across blocks. Its time over a loss's inputs
is that loss's floor in the same run, under the same machine load: a loss at 100% of the floor
reads its inputs as fast as a bare sum does.
"""
from __future__ import annotations

import numpy as np

BLOCK = 8192
_kernel = None


def _compile():
    global _kernel
    if _kernel is not None:
        return _kernel
    from numba import njit, prange

    @njit(fastmath={"reassoc"}, error_model="numpy", cache=True)
    def block_sum(x):
        # indexed from 0 through a slice view: no negative-index check, so LLVM vectorises it
        s = np.float32(0.0)
        for i in range(x.size):
            s += np.float32(x[i])
        return s

    def read4(a, b, c, d):
        n = max(a.size, b.size, c.size, d.size)
        blocks = max(1, (n + BLOCK - 1) // BLOCK)
        # every array is cut into `blocks` chunks: iteration k reads chunk k of each, as a
        # loss kernel reads block k of its labels and predictions together
        ca = (a.size + blocks - 1) // blocks
        cb = (b.size + blocks - 1) // blocks
        cc = (c.size + blocks - 1) // blocks
        cd = (d.size + blocks - 1) // blocks
        total = 0.0
        for k in prange(blocks):
            s = float(block_sum(a[k * ca:(k + 1) * ca]))
            s += float(block_sum(b[k * cb:(k + 1) * cb]))
            s += float(block_sum(c[k * cc:(k + 1) * cc]))
            s += float(block_sum(d[k * cd:(k + 1) * cd]))
            total += s
        return total

    # parallel for large inputs, serial for small ones (a parallel launch costs microseconds):
    # the floor is the faster of the two
    _kernel = (njit(parallel=True, error_model="numpy", cache=True)(read4),
               njit(error_model="numpy", cache=True)(read4))
    return _kernel


_EMPTY = np.zeros(0, dtype=np.float32)


def flat_views(arrays) -> tuple:
    """Up to four contiguous 1-d views of ``arrays`` (padded with empty float32 arrays).

    Float arrays are read as they are; integer arrays as int32 words (the same bytes), so
    every array costs its ``nbytes``.
    """
    views = []
    for a in arrays:
        a = np.ascontiguousarray(a).reshape(-1)
        if a.dtype.kind in "iub" and a.dtype.itemsize != 4:
            a = a.view(np.int32) if a.nbytes % 4 == 0 else a.astype(np.int32)
        views.append(a)
    if len(views) > 4:
        raise ValueError("read_floor reads at most four arrays")
    return tuple(views) + (_EMPTY,) * (4 - len(views))


def read_floor(views, parallel: bool = True) -> float:
    """Sum every element of the (up to four) ``views`` once; returns the sum."""
    return _compile()[0 if parallel else 1](*views)
