"""Driver loops of one loss, compiled around that loss's formulas.

This file is a template: `lossforge.kernels` copies it into a cache directory once per loss
(and per fingerprint of its formulas), replacing the formula slot with that loss's
``LOSS_AT``/``GRAD_AT``, and imports the copy. Each loss thus gets its own module of
``cache=True`` kernels (numba caches a function only when the formula it calls is a module
global, not an argument). As written, the slot holds the formula of ``compute_weighted_loss``.

``LOSS_AT(y, p, j, params)`` is the unweighted loss of flat output element ``j``,
``GRAD_AT(y, p, j, scale, grad, params)`` writes ``scale * dloss_j/dp`` into ``grad``, and
``LOSS_GRAD_AT(..., write_grad)`` returns the loss and, if ``write_grad``, writes the gradient
too (through the loss's ``fused_grad`` formula, which shares a row's work between the two, if
it has one); ``w`` is the ``(A, M, I)`` broadcast view of the weights built by
``lossforge.inputs.weights_view``, or a scalar weight as a 1-element array (2: the weight and
the gradient's scale, see `_pass_scalar_weight`); ``n`` is the number of loss elements.
``error_model="numpy"``: a division by zero in a formula gives inf/NaN as in TF (numba's
default would raise ZeroDivisionError from the kernel). One pass computes the partial state
and, as ``mode`` asks, the weighted values (``VALUES``) and the weighted gradient (``GRAD``).
"""
import numpy as np
from numba import float64, njit, prange

from lossforge.kernels.prefetch import AHEAD, PREFETCH_ROWS, prefetch_row
from lossforge.kernels.runs import next_run, run_length, run_start

# --- formula slot: replaced per loss by lossforge.kernels ---
@njit(inline="always", error_model="numpy")
def LOSS_AT(y, p, j, params):
    return float64(p[j])


@njit(inline="always", error_model="numpy")
def GRAD_AT(y, p, j, scale, grad, params):
    grad[j] = scale


@njit(inline="always", error_model="numpy")
def LOSS_GRAD_AT(y, p, j, scale, grad, params, write_grad):
    v = LOSS_AT(y, p, j, params)
    if write_grad:
        GRAD_AT(y, p, j, scale, grad, params)
    return v


PREFETCH = False  # whether to prefetch the predictions' rows ahead (a row that calls math)
# --- end of formula slot ---

VALUES = 1  # mode bit: write L * W to `values`
GRAD = 2    # mode bit: write W * dL/dp to `grad`
CHUNK = 16384  # input elements per parallel work item; partial sums stay in float64


@njit(inline="always")
def chunk_rows(size, n):
    """Loss elements per parallel work item: ~CHUNK input elements' worth. A row-wise loss
    reads ``size / n`` inputs per loss element (a row of 1000 logits), so a chunk of CHUNK loss
    elements would be one chunk for 16384 rows: one thread doing all the work."""
    return max(1, CHUNK // max(1, size // max(1, n)))


@njit(inline="always")
def _prefetch_ahead(y, p, j, n):
    """Ask for the predictions' row of loss element ``j + AHEAD`` where `PREFETCH` says so and
    the labels are not rows too, on a host where that pays (`prefetch.PREFETCH_ROWS`): sparse
    softmax at 16384 x 1000 float32 measured 10% faster with it on an AMD EPYC (25-30% slower
    on an Intel Xeon); softmax (a row of labels beside each row of logits) measured 3-4% slower,
    as did a prefetch of the labels' rows."""
    if PREFETCH and PREFETCH_ROWS and y.size < n * 2:
        prefetch_row(p, j + AHEAD, n)


@njit(inline="always", error_model="numpy")
def _pass_range(y, p, w, params, start, stop, n, values, grad, mode, write):
    """(sum L*W, sum W, count W != 0) over flat elements [start, stop) of ``n``, writing as
    `mode` asks if ``write`` (a constant: numba compiles only the loop it selects)."""
    ia, im, ii = run_start(w, start)
    write_values = (mode & VALUES) != 0
    write_grad = (mode & GRAD) != 0
    weighted = 0.0
    weights = 0.0
    nonzero = 0.0
    j = start
    while j < stop:
        # one run along the innermost weights axis: a tight loop without index bookkeeping;
        # the value-only loop is separate so its body has no stores (LLVM does not unswitch it)
        run = run_length(w, ii, j, stop)
        row = w[ia, im]
        if write:
            for t in range(run):
                _prefetch_ahead(y, p, j + t, n)
                wt = float64(row[ii + t])
                v = LOSS_GRAD_AT(y, p, j + t, wt, grad, params, write_grad) * wt
                weighted += v
                weights += wt
                nonzero += 1.0 if wt != 0.0 else 0.0
                if write_values:
                    values[j + t] = v
        else:
            for t in range(run):
                _prefetch_ahead(y, p, j + t, n)
                wt = float64(row[ii + t])
                weighted += LOSS_AT(y, p, j + t, params) * wt
                weights += wt
                nonzero += 1.0 if wt != 0.0 else 0.0
        j += run
        ia, im, ii = next_run(w, ia, im)
    return weighted, weights, nonzero


@njit(inline="always", error_model="numpy")
def _pass_scalar_weight(y, p, w, params, start, stop, n, values, grad, mode, write):
    """`_pass_range` where every loss element has the weight ``w[0]``; ``w[1]``, when given,
    scales the gradient instead: the weight over the reduction's denominator (see
    `lossforge.compute.run`), so that the kernel writes the final gradient and no second pass
    over it rescales it (softmax at 16384 x 1000 float32: a pass as long as the value's)."""
    write_values = (mode & VALUES) != 0
    write_grad = (mode & GRAD) != 0
    wt = float64(w[0])
    gscale = float64(w[1]) if w.shape[0] > 1 else wt
    weighted = 0.0
    if write:
        for j in range(start, stop):
            _prefetch_ahead(y, p, j, n)
            v = LOSS_GRAD_AT(y, p, j, gscale, grad, params, write_grad) * wt
            weighted += v
            if write_values:
                values[j] = v
    else:
        for j in range(start, stop):
            _prefetch_ahead(y, p, j, n)
            weighted += LOSS_AT(y, p, j, params) * wt
    count = stop - start
    return weighted, wt * count, float64(count) if wt != 0.0 else 0.0


# A scalar weight (a 1-element or 2-element array) and a weights view compile apart: numba
# prunes on ``w.ndim``, a constant, in a function it compiles alone (not in an inlined one).

@njit(cache=True, error_model="numpy")
def _range_reduce(y, p, w, params, start, stop, n, values, grad, mode):
    if w.ndim == 1:
        return _pass_scalar_weight(y, p, w, params, start, stop, n, values, grad, mode, False)
    return _pass_range(y, p, w, params, start, stop, n, values, grad, mode, False)


@njit(cache=True, error_model="numpy")
def _range_write(y, p, w, params, start, stop, n, values, grad, mode):
    if w.ndim == 1:
        return _pass_scalar_weight(y, p, w, params, start, stop, n, values, grad, mode, True)
    return _pass_range(y, p, w, params, start, stop, n, values, grad, mode, True)


@njit(inline="always", error_model="numpy")
def _chunked(pass_range, y, p, w, params, n, values, grad, mode):
    rows = chunk_rows(p.size, n)
    chunks = (n + rows - 1) // rows
    parts = np.zeros((chunks, 3))
    for c in prange(chunks):
        a, b, d = pass_range(y, p, w, params, c * rows, min(n, (c + 1) * rows), n, values,
                             grad, mode)
        parts[c, 0] = a
        parts[c, 1] = b
        parts[c, 2] = d
    # summed in chunk order: the result does not depend on the thread count
    return parts[:, 0].sum(), parts[:, 1].sum(), parts[:, 2].sum()


# The value-only kernels and the writing ones (values, gradient or both, as `mode` asks) are
# compiled apart, each on first use: a first call of a loss compiles only the loop it needs
# (cold cache, float64: softmax's first call took 6.7 s when one kernel held both, now 2.6 s,
# and its first value-and-gradient call 5.0 s; sparse softmax's 3.7 s, now 1.4 + 2.0 s).

@njit(cache=True, error_model="numpy")
def serial_reduce(y, p, w, params, n, values, grad, mode):
    return _range_reduce(y, p, w, params, 0, n, n, values, grad, mode)


@njit(cache=True, error_model="numpy")
def serial_write(y, p, w, params, n, values, grad, mode):
    return _range_write(y, p, w, params, 0, n, n, values, grad, mode)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_reduce(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_reduce, y, p, w, params, n, values, grad, mode)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_write(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_write, y, p, w, params, n, values, grad, mode)


#: The kernels by mode (0, VALUES, GRAD, VALUES | GRAD), as ``template_elementwise.py`` has them.
SERIAL = (serial_reduce, serial_write, serial_write, serial_write)
PARALLEL = (parallel_reduce, parallel_write, parallel_write, parallel_write)
