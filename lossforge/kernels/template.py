"""Driver loops of one loss, compiled around that loss's formula.

This file is a template: `lossforge.kernels` copies it into a cache directory once per loss,
replacing the formula slot with that loss's formula, and imports the copy. Each loss thus
gets its own module of ``cache=True`` kernels (numba caches a function only when the
formula it calls is a module global, not an argument). As written, the slot holds
``weighted_input`` and this file is the kernel of ``compute_weighted_loss``.

``LOSS_AT(y, p, j, params)`` is the unweighted loss of flat output element ``j``; ``w`` is the
``(A, M, I)`` broadcast view of the weights built by ``lossforge.inputs.weights_view``; ``n``
is the number of loss elements.
"""
import numpy as np
from numba import float64, njit, prange

from lossforge.kernels import formulas as _formulas

# --- formula slot: replaced per loss by lossforge.kernels ---
LOSS_AT = _formulas.weighted_input
# --- end of formula slot ---

CHUNK = 16384  # elements per parallel work item; partial sums stay in float64


@njit(cache=True)
def _reduce_range(y, p, w, params, start, stop):
    """(sum L*W, sum W, count W != 0) over flat elements [start, stop)."""
    inner = w.shape[2]
    middle = w.shape[1]
    ia = start // (middle * inner)
    rest = start - ia * middle * inner
    im = rest // inner
    ii = rest - im * inner
    weighted = 0.0
    weights = 0.0
    nonzero = 0.0
    j = start
    while j < stop:
        # one run along the innermost weights axis: a tight loop without index bookkeeping
        run = min(inner - ii, stop - j)
        row = w[ia, im]
        for t in range(run):
            wt = float64(row[ii + t])
            weighted += LOSS_AT(y, p, j + t, params) * wt
            weights += wt
            nonzero += 1.0 if wt != 0.0 else 0.0
        j += run
        ii = 0
        im += 1
        if im == middle:
            im = 0
            ia += 1
    return weighted, weights, nonzero


@njit(cache=True)
def reduce_serial(y, p, w, params, n):
    return _reduce_range(y, p, w, params, 0, n)


@njit(cache=True, parallel=True)
def reduce_parallel(y, p, w, params, n):
    chunks = (n + CHUNK - 1) // CHUNK
    parts = np.zeros((chunks, 3))
    for c in prange(chunks):
        a, b, d = _reduce_range(y, p, w, params, c * CHUNK, min(n, (c + 1) * CHUNK))
        parts[c, 0] = a
        parts[c, 1] = b
        parts[c, 2] = d
    # summed in chunk order: the result does not depend on the thread count
    return parts[:, 0].sum(), parts[:, 1].sum(), parts[:, 2].sum()


@njit(cache=True)
def _values_range(y, p, w, params, start, stop, out):
    inner = w.shape[2]
    middle_inner = w.shape[1] * inner
    for j in range(start, stop):
        ia = j // middle_inner
        rest = j - ia * middle_inner
        im = rest // inner
        out[j] = LOSS_AT(y, p, j, params) * float64(w[ia, im, rest - im * inner])


@njit(cache=True)
def values_serial(y, p, w, params, n, out):
    _values_range(y, p, w, params, 0, n, out)


@njit(cache=True, parallel=True)
def values_parallel(y, p, w, params, n, out):
    chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(chunks):
        _values_range(y, p, w, params, c * CHUNK, min(n, (c + 1) * CHUNK), out)
