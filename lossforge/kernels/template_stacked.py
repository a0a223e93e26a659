"""Stacked driver loops of one loss: K independent batches in one parallel kernel.

A template like ``template.py`` (see there and `lossforge.kernels.generated_module`): copied
into the kernel cache once per loss with that loss's formula slot, as
``stacked_<loss>_<fingerprint>.py``. As written, the slot holds ``compute_weighted_loss``.

The K batches are concatenated along their first axis before the loss's ``prepare`` (see
`lossforge.stacked`), so batch ``k`` owns the flat loss elements ``[k * segment,
(k + 1) * segment)``. `run_stacked` computes the partial state ``(sum L*W, sum W,
count W != 0)`` of each batch: one ``prange`` over K x chunks, then a ``prange`` over K summing
each batch's chunks in chunk order. ``chunk`` is the chunking of a single call on one batch
(one chunk below ``PARALLEL_THRESHOLD`` input elements, else ``template.chunk_rows``), so each
batch's state is summed in the same order as a separate call's. Values and gradients are not
written: stacked evaluation reduces only.
"""
import numpy as np
from numba import float64, njit, prange

from lossforge.kernels.runs import next_run, run_length, run_start

# --- formula slot: replaced per loss by lossforge.kernels ---
@njit(inline="always", error_model="numpy")
def LOSS_AT(y, p, j, params):
    return float64(p[j])


@njit(inline="always", error_model="numpy")
def GRAD_AT(y, p, j, scale, grad, params):
    grad[j] = scale
# --- end of formula slot ---


@njit(inline="always", error_model="numpy")
def _range_sums(y, p, w, params, start, stop):
    """(sum L*W, sum W, count W != 0) over flat loss elements [start, stop); ``w`` is the
    ``(A, M, I)`` broadcast weights view of `lossforge.inputs.weights_view`."""
    ia, im, ii = run_start(w, start)
    weighted = 0.0
    weights = 0.0
    nonzero = 0.0
    j = start
    while j < stop:
        run = run_length(w, ii, j, stop)
        row = w[ia, im]
        for t in range(run):
            wt = float64(row[ii + t])
            weighted += LOSS_AT(y, p, j + t, params) * wt
            weights += wt
            nonzero += 1.0 if wt != 0.0 else 0.0
        j += run
        ia, im, ii = next_run(w, ia, im)
    return weighted, weights, nonzero


@njit(inline="always", error_model="numpy")
def _stacked(y, p, w, params, segment, count, chunk, out, parts, per):
    for t in prange(count * per):
        k = t // per
        start = k * segment + (t - k * per) * chunk
        stop = min(start + chunk, (k + 1) * segment)
        a, b, d = _range_sums(y, p, w, params, start, stop)
        parts[t, 0] = a
        parts[t, 1] = b
        parts[t, 2] = d
    for k in prange(count):
        a = 0.0
        b = 0.0
        d = 0.0
        for c in range(k * per, (k + 1) * per):  # chunk order, as a single call sums
            a += parts[c, 0]
            b += parts[c, 1]
            d += parts[c, 2]
        out[k, 0] = a
        out[k, 1] = b
        out[k, 2] = d


@njit(cache=True, parallel=True, error_model="numpy")
def run_stacked(y, p, w, params, segment, count, chunk, out):
    """Fill ``out[k] = (sum L*W, sum W, count W != 0)`` of batch ``k`` for ``k < count``;
    batch ``k`` is flat elements ``[k * segment, (k + 1) * segment)``, summed per ``chunk``."""
    per = (segment + chunk - 1) // chunk if segment > 0 else 0
    parts = np.zeros((count * per, 3))
    _stacked(y, p, w, params, segment, count, chunk, out, parts, per)


@njit(cache=True, error_model="numpy")
def run_stacked_serial(y, p, w, params, segment, count, chunk, out):
    """`run_stacked` in one thread (few elements in all: a thread launch costs more)."""
    per = (segment + chunk - 1) // chunk if segment > 0 else 0
    parts = np.zeros((count * per, 3))
    _stacked(y, p, w, params, segment, count, chunk, out, parts, per)
