"""Vectorised driver loops of one elementwise loss, compiled around that loss's formulas.

A template, like ``template.py`` (which drives row-wise losses): `lossforge.kernels` copies
it per loss, replacing the formula slot with ``VALUE(y, p, params)``/``GRAD(y, p, params)``,
the loss and its derivative at one (label, prediction) pair of the kernel's dtype. For float32
kernels these call the formula's float32 variant (`lossforge.registry.float32_variant`), so
LLVM can run the loops below in AVX lanes; float64 kernels call the formula as written.

Why the loops look the way they do (each point measured; see ../shared/reference/numba-cuda.md):

* elements are visited in blocks of `BLOCK` through slice views indexed from 0: with offsets
  into the whole array numba keeps a negative-index check and LLVM emits gathers (4-5x slower);
* a block's weighted losses are written to a buffer by a loop with strict IEEE semantics (the
  formula is inlined into it, so NaN and inf propagate exactly), then summed by a separate
  loop with ``fastmath={"reassoc"}``, the one flag LLVM needs to vectorise a float sum. (One
  loop doing both would give the formula the sum's flags, or, with the formula left out of
  line, would not vectorise at all);
* the formula runs in the kernel's dtype (float32 lanes for float32 inputs); the sums are
  float64 (each block is summed from L1 cache, where the wider lanes cost little);
* scalar (stride-0) weights are read once per block, and the value-only, values-writing and
  gradient-writing paths are separate (constant flags), so no loop carries a store it does
  not need.

``w`` is a scalar weight as a 1-element array (or 2: the weight and the gradient's multiplier),
or else the ``(A, M, I)`` broadcast view of the weights (`lossforge.inputs.weights_view`);
the driver returns ``(sum L*W, sum W, count W != 0)`` over the flat elements and writes ``L*W``
to ``values`` (mode bit `VALUES`) and ``W dL/dp`` to ``grad`` (mode bit `GRAD`).
"""
import numpy as np
from numba import float32, float64, njit, prange, types  # noqa: F401 (float32, types: the slot)
from numba.extending import overload

from lossforge.kernels.runs import next_run, run_length, run_start

# --- formula slot: replaced per loss by lossforge.kernels ---
def VALUE(y, p, params):
    """The loss at one (label, prediction) pair (as written: the input itself)."""


def GRAD(y, p, params):
    """Its derivative in the prediction."""


@overload(VALUE, inline="always", jit_options={"error_model": "numpy"})
def _value(y, p, params):
    return lambda y, p, params: p


@overload(GRAD, inline="always", jit_options={"error_model": "numpy"})
def _grad(y, p, params):
    return lambda y, p, params: y * 0 + 1
# --- end of formula slot ---

VALUES = 1  # mode bit: write L * W to `values`
GRAD_BIT = 2  # mode bit: write W * dL/dp to `grad`
BLOCK = 4096  # elements per block: its buffer stays in L1 cache
CHUNK = 16 * BLOCK  # elements per parallel work item


@njit(error_model="numpy", fastmath={"reassoc"})
def _sum(a):
    """``sum(a)`` in float64, vectorised (lanes reassociated). Summing a block from L1 costs
    little next to reading it from memory, so float32 values keep a float64 sum."""
    s = 0.0
    for i in range(a.shape[0]):
        s += float64(a[i])
    return s


@njit(error_model="numpy", fastmath={"reassoc"})
def _count_nonzero(a):
    """``count(a != 0)`` (NaN counts), vectorised."""
    s = 0.0
    for i in range(a.shape[0]):
        s += 1.0 if a[i] != 0.0 else 0.0
    return s


@njit(inline="always", error_model="numpy")
def _block_scalar(yb, pb, wt, params, buf, gb, write_grad, gscale):
    """``sum L*wt`` over one block whose every weight is ``wt`` (weighted losses into ``buf``;
    ``gscale * dL/dp`` into ``gb``)."""
    n = pb.shape[0]
    for i in range(n):
        buf[i] = VALUE(yb[i], pb[i], params) * wt
    if write_grad:
        for i in range(n):
            gb[i] = gscale * GRAD(yb[i], pb[i], params)
    return _sum(buf[:n])


@njit(inline="always", error_model="numpy")
def _block_weights(yb, pb, wb, params, buf, gb, write_grad):
    """``(sum L*W, sum W, count W != 0)`` over one block with weights ``wb``."""
    n = pb.shape[0]
    for i in range(n):
        buf[i] = VALUE(yb[i], pb[i], params) * wb[i]
    if write_grad:
        for i in range(n):
            gb[i] = wb[i] * GRAD(yb[i], pb[i], params)
    return _sum(buf[:n]), _sum(wb), _count_nonzero(wb)


@njit(inline="always", error_model="numpy")
def _pass_scalar_weight(y, p, w, params, start, stop, values, grad, write_values, write_grad):
    """Partial sums over flat elements [start, stop) that all have the weight ``w[0]``.

    ``w[1]``, when given, multiplies the gradient instead of ``w[0]``: the weight over the
    reduction's denominator, which a scalar weight lets the caller know before the pass
    (`lossforge.compute.run`), saving it a second pass over the gradient.
    """
    scratch = np.empty(0 if write_values else min(BLOCK, stop - start), dtype=p.dtype)
    wt = w[0]
    gscale = w[1] if w.shape[0] > 1 else wt
    weighted = 0.0
    for lo in range(start, stop, BLOCK):
        hi = min(stop, lo + BLOCK)
        buf = values[lo:hi] if write_values else scratch
        gb = grad[lo:hi] if write_grad else grad
        weighted += _block_scalar(y[lo:hi], p[lo:hi], wt, params, buf, gb, write_grad, gscale)
    n = stop - start
    return weighted, float64(wt) * n, float64(n) if wt != 0 else 0.0


@njit(inline="always", error_model="numpy")
def _pass_weights(y, p, w, params, start, stop, values, grad, write_values, write_grad):
    """Partial sums over flat elements [start, stop) with the ``(A, M, I)`` weights view."""
    ia, im, ii = run_start(w, start)
    scratch = np.empty(0 if write_values else min(BLOCK, stop - start), dtype=p.dtype)
    weighted = 0.0
    weights = 0.0
    nonzero = 0.0
    j = start
    while j < stop:
        # one run along the innermost weights axis, in blocks
        run = run_length(w, ii, j, stop)
        row = w[ia, im]
        scalar = row.strides[0] == 0
        for b in range(0, run, BLOCK):
            e = min(run, b + BLOCK)
            lo = j + b
            hi = j + e
            buf = values[lo:hi] if write_values else scratch
            gb = grad[lo:hi] if write_grad else grad
            if scalar:  # a broadcast run (per-sample weights): one weight, read once
                wt = row[ii]
                weighted += _block_scalar(y[lo:hi], p[lo:hi], wt, params, buf, gb, write_grad, wt)
                weights += float64(wt) * (e - b)
                nonzero += float64(e - b) if wt != 0 else 0.0
            else:
                a, c, d = _block_weights(y[lo:hi], p[lo:hi], row[ii + b:ii + e], params, buf, gb,
                                         write_grad)
                weighted += a
                weights += c
                nonzero += d
        j += run
        ia, im, ii = next_run(w, ia, im)
    return weighted, weights, nonzero


# One compiled path per mode, each built on first use: a first call compiles only what it
# needs (the value-only path), and constant flags let LLVM drop the stores a mode does not make.
# ``w.ndim`` is a compile-time constant that numba prunes on, so a scalar weight (a 1-element
# array) compiles only the scalar loops and a weights view only the general ones.

@njit(cache=True, error_model="numpy")
def _range_reduce(y, p, w, params, start, stop, values, grad):
    if w.ndim == 1:  # a scalar weight as a 1-element array
        return _pass_scalar_weight(y, p, w, params, start, stop, values, grad, False, False)
    return _pass_weights(y, p, w, params, start, stop, values, grad, False, False)


@njit(cache=True, error_model="numpy")
def _range_values(y, p, w, params, start, stop, values, grad):
    if w.ndim == 1:  # a scalar weight as a 1-element array
        return _pass_scalar_weight(y, p, w, params, start, stop, values, grad, True, False)
    return _pass_weights(y, p, w, params, start, stop, values, grad, True, False)


@njit(cache=True, error_model="numpy")
def _range_grad(y, p, w, params, start, stop, values, grad):
    if w.ndim == 1:  # a scalar weight as a 1-element array
        return _pass_scalar_weight(y, p, w, params, start, stop, values, grad, False, True)
    return _pass_weights(y, p, w, params, start, stop, values, grad, False, True)


@njit(cache=True, error_model="numpy")
def _range_values_grad(y, p, w, params, start, stop, values, grad):
    if w.ndim == 1:  # a scalar weight as a 1-element array
        return _pass_scalar_weight(y, p, w, params, start, stop, values, grad, True, True)
    return _pass_weights(y, p, w, params, start, stop, values, grad, True, True)


@njit(inline="always", error_model="numpy")
def _chunked(pass_range, y, p, w, params, n, values, grad):
    chunks = (n + CHUNK - 1) // CHUNK
    parts = np.zeros((chunks, 3))
    for c in prange(chunks):
        a, b, d = pass_range(y, p, w, params, c * CHUNK, min(n, (c + 1) * CHUNK), values, grad)
        parts[c, 0] = a
        parts[c, 1] = b
        parts[c, 2] = d
    # summed in chunk order: the result does not depend on the thread count
    return parts[:, 0].sum(), parts[:, 1].sum(), parts[:, 2].sum()


@njit(cache=True, error_model="numpy")
def serial_reduce(y, p, w, params, n, values, grad, mode):
    return _range_reduce(y, p, w, params, 0, n, values, grad)


@njit(cache=True, error_model="numpy")
def serial_values(y, p, w, params, n, values, grad, mode):
    return _range_values(y, p, w, params, 0, n, values, grad)


@njit(cache=True, error_model="numpy")
def serial_grad(y, p, w, params, n, values, grad, mode):
    return _range_grad(y, p, w, params, 0, n, values, grad)


@njit(cache=True, error_model="numpy")
def serial_values_grad(y, p, w, params, n, values, grad, mode):
    return _range_values_grad(y, p, w, params, 0, n, values, grad)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_reduce(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_reduce, y, p, w, params, n, values, grad)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_values(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_values, y, p, w, params, n, values, grad)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_grad(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_grad, y, p, w, params, n, values, grad)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_values_grad(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_values_grad, y, p, w, params, n, values, grad)


#: The kernels by mode (0, VALUES, GRAD_BIT, VALUES | GRAD_BIT), serial and multi-threaded.
SERIAL = (serial_reduce, serial_values, serial_grad, serial_values_grad)
PARALLEL = (parallel_reduce, parallel_values, parallel_grad, parallel_values_grad)


def run_serial(y, p, w, params, n, values, grad, mode):
    """``(sum L*W, sum W, count W != 0)`` over ``n`` flat elements, writing as ``mode`` asks."""
    return SERIAL[mode](y, p, w, params, n, values, grad, mode)


def run_parallel(y, p, w, params, n, values, grad, mode):
    """`run_serial` on all threads, chunk by chunk (the result does not depend on their number)."""
    return PARALLEL[mode](y, p, w, params, n, values, grad, mode)
