"""Vectorised driver loops of one elementwise loss, compiled around that loss's formulas.

A template, like ``template.py`` (which drives row-wise losses): `lossforge.kernels` copies
it per loss, replacing the formula slot with ``VALUE(y, p, params)``/``GRAD(y, p, params)``,
the loss and its derivative at one (label, prediction) pair of the kernel's dtype. For float32
kernels these call the formula's float32 variant (`lossforge.registry.float32_variant`), so
LLVM can run the loops below in AVX lanes; float64 kernels call the formula as written.

Why the loops look the way they do (each point measured; see ../shared/reference/numba-cuda.md):

* elements are visited in blocks of `BLOCK` through slice views indexed from 0: with offsets
  into the whole array numba keeps a negative-index check and LLVM emits gathers (4-5x slower);
* a block's losses are summed in the loop that computes them, compiled with strict IEEE
  semantics (the formula is inlined into it, so NaN and inf propagate exactly) except for the
  sums' adds, made through `vmath.reassoc_add`: the one instruction LLVM needs reassociable to
  vectorise a float sum (``fastmath={"reassoc"}`` would flag the formula's operations too).
  For memory-bound formulas this beat writing the losses to an L1 buffer and summing that in
  a second loop by 1.5-2.2x (16M float32 elements, 2 threads), as the sum then overlaps the
  reads. A formula that calls ``math`` (`SUM_IN_LOOP` is False) keeps the buffer: in float32
  it is compute-bound, and its loop alone runs in 16 float32 lanes, where the float64 sum in
  it made LLVM choose 8 (20-35% slower); in float64 (libm calls) either form ran as fast.
  `SUM_IN_LOOP` is a constant of the generated module, so numba compiles only the form it
  selects (deciding per dtype while typing compiled both: +40% compile time, cold cache);
* the formula runs in the kernel's dtype (float32 lanes for float32 inputs); the sums are
  float64;
* the gradient is a second loop over the block, read again from L1 cache, for a formula
  without ``math`` (memory-bound: the loop's stores would cost the value-only loop's bits,
  summed in another order, and measured no faster). Otherwise (`FUSED`) one loop gives the
  loss and its gradient: the loss's ``fused_grad`` (sigmoid cross-entropy shares its exp, BCE
  its logs, focal its exp, log1p and pow), else ``VALUE`` and ``GRAD`` in turn, so the
  gradient's stores overlap the polynomials' work (log_loss, poisson, kl_divergence at 16M
  float32: value+gradient 8-16% faster). That loop writes the losses to the block buffer,
  summed by `_sum` as the value-only loop of a formula calling ``math`` is, so the value has
  that loop's bits (a ``fused_grad`` without ``math`` may differ in the sum's last bits: another
  order);
* a compute-bound formula's loop (`_fill`) runs in sub-loops of `SUB_BLOCK` elements, each
  first asking for the inputs' cache lines `PREFETCH_DISTANCE` elements on
  (`prefetch.prefetch_lines`): such a loop reads too slowly for the hardware's prefetchers to
  run ahead of it, so memory and computation took turns. On the Intel VM (16M float32, 2
  threads, against the hints it replaced, one line per page of the next block, themselves
  1.14-1.44x faster than none): value 1.21-1.42x faster (poisson 6.5 -> 4.6 ms, sigmoid
  cross-entropy 6.6 -> 4.7, log_cosh 7.0 -> 5.0, kl 7.4 -> 5.8, log_loss 7.8 -> 6.2, BCE
  7.6 -> 6.3), value and gradient 1.08-1.25x. Sub-loops of 32-128 elements with 512-1024
  elements' distance measured alike; 256 and more elements per sub-loop, or 2048 and more
  ahead, were slower (a standalone kernel). Inputs under `PREFETCH_MIN` elements get no hints.
  A memory-bound formula's loop (MSE) gained nothing from the same hints;
* every function with a loop calls `vmath.prefer_512_bit_vectors`: LLVM caps Intel's AVX-512
  cores at 256-bit lanes unless told otherwise, and the float32 polynomials run up to 1.8x
  faster in 512 (see there);
* a large gradient of a memory-bound formula, written into memory written before (the
  caller's ``grad_out`` or a recycled buffer, `lossforge.buffers`: mode bit `REUSED_GRAD`),
  goes out by non-temporal stores (`stream.py`): a plain store first reads the line it
  writes, so the pass moved 16 bytes per float32 element where 12 suffice (MSE into a
  reused ``grad_out``, 16M float32: 1.14x faster; absolute difference 1.26x). Fresh arrays
  and compute-bound formulas keep plain stores (`_grad_stream_buffer`). Streaming the
  per-element losses too measured slower (MSE, ``reduction="none"``: 6.4-7.1 -> 7.1-7.3 ms);
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

from lossforge.kernels.prefetch import prefetch_lines
from lossforge.kernels.runs import next_run, run_length, run_start
from lossforge.kernels.stream import store_fence, stream_copy, streams
from lossforge.kernels.vmath import prefer_512_bit_vectors, reassoc_add

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


def VALUE_GRAD(y, p, params):
    """``(VALUE, GRAD)`` in one loop: the loss's ``fused_grad``, or the two formulas in turn."""


@overload(VALUE_GRAD, inline="always", jit_options={"error_model": "numpy"})
def _value_grad(y, p, params):
    return lambda y, p, params: (p, y * 0 + 1)


SUM_IN_LOOP = True  # whether a block's losses are summed in the loop computing them
FUSED = False  # whether one loop gives the loss and its gradient (VALUE_GRAD)
# --- end of formula slot ---

VALUES = 1  # mode bit: write L * W to `values`
GRAD_BIT = 2  # mode bit: write W * dL/dp to `grad`
REUSED_GRAD = 4  # mode bit: `grad` is memory written before, not fresh pages (may be streamed)
BLOCK = 4096  # elements per block: in L1 cache when the gradient's loop (or the sum) reads it
CHUNK = 16 * BLOCK  # elements per parallel work item
SUB_BLOCK = 128  # elements per sub-loop of `_fill`, each after its prefetch hints
PREFETCH_DISTANCE = 768  # elements ahead that those hints ask for
PREFETCH_MIN = 1 << 16  # elements an input needs for the hints: at 1e4 elements, from cache,
# they cost 2-8% (with this gate, the sub-loops alone: 0-4%); at 1e5, nothing


@njit(error_model="numpy")
def _sum(a):
    """``sum(a)`` in float64, vectorised."""
    prefer_512_bit_vectors()
    s = 0.0
    for i in range(a.shape[0]):
        s = reassoc_add(s, float64(a[i]))
    return s


@njit(error_model="numpy")
def _count_nonzero(a):
    """``count(a != 0)`` (NaN counts), vectorised."""
    prefer_512_bit_vectors()
    s = 0.0
    for i in range(a.shape[0]):
        s = reassoc_add(s, 1.0 if a[i] != 0.0 else 0.0)
    return s


def _at(w, i):
    """Element ``i`` of a block's weights: ``w[i]``, or ``w`` itself, a scalar weight."""


@overload(_at)
def _at_impl(w, i):
    if isinstance(w, types.Array):
        return lambda w, i: w[i]
    return lambda w, i: w


def _part(w, lo, hi):
    """The weights of a block's elements [lo, hi): ``w[lo:hi]``, or the scalar ``w``."""


@overload(_part)
def _part_impl(w, lo, hi):
    if isinstance(w, types.Array):
        return lambda w, lo, hi: w[lo:hi]
    return lambda w, lo, hi: w


@njit(inline="always")
def _ahead(a, lo):
    """The input ``a`` from a block's start ``lo`` to its end, whose lines `_ask_ahead` asks
    for; nothing for an input of fewer than `PREFETCH_MIN` elements, which the cache holds."""
    return a[lo:] if a.shape[0] >= PREFETCH_MIN else a[:0]


@njit(inline="always")
def _ask_ahead(ya, pa, lo, hi):
    """Before a sub-loop over a block's elements [lo, hi) of a formula calling ``math``, ask
    for the inputs' lines `PREFETCH_DISTANCE` elements on (``ya``/``pa``: the inputs from the
    block's start to their end; see the module's docstring)."""
    if not SUM_IN_LOOP:
        prefetch_lines(ya, lo + PREFETCH_DISTANCE, hi + PREFETCH_DISTANCE)
        prefetch_lines(pa, lo + PREFETCH_DISTANCE, hi + PREFETCH_DISTANCE)


# `_fill` is a function of its own, not inlined into its callers: numba's inlining copies a
# function's IR at every call site, and four sites of its loops made a compute-bound loss's
# first compile 1.5x as long (cold cache); LLVM still inlines the compiled calls.

@njit(error_model="numpy")
def _fill(yb, pb, w, gscale, params, out, gb, ya, pa):
    """``out[i] = L_i w_i`` over one block of a formula calling ``math`` or with a ``fused_grad``
    (``w``: a scalar or the block's weights), and unless ``gb`` is None ``gb[i] = gscale_i
    dL/dp_i`` in the same loop (`VALUE_GRAD`); in sub-loops of `SUB_BLOCK` elements (see
    `_ask_ahead`). numba prunes the branch a None ``gb`` does not take, so each mode compiles
    only its own loop."""
    prefer_512_bit_vectors()
    n = pb.shape[0]
    for c in range(0, n, SUB_BLOCK):
        e = min(n, c + SUB_BLOCK)
        _ask_ahead(ya, pa, c, e)
        yc = yb[c:e]
        pc = pb[c:e]
        oc = out[c:e]
        wc = _part(w, c, e)
        if gb is None:
            for i in range(e - c):
                oc[i] = VALUE(yc[i], pc[i], params) * _at(wc, i)
        else:
            gc = gb[c:e]
            sc = _part(gscale, c, e)
            for i in range(e - c):
                v, g = VALUE_GRAD(yc[i], pc[i], params)
                oc[i] = v * _at(wc, i)
                gc[i] = _at(sc, i) * g


@njit(inline="always", error_model="numpy")
def _block_scalar(yb, pb, wt, params, vb, gb, buf, write_values, write_grad, gscale, ya, pa):
    """``sum L*wt`` over one block whose every weight is ``wt`` (weighted losses into ``vb``,
    ``gscale * dL/dp`` into ``gb``, as the flags ask; ``buf``: a block-sized buffer, needed
    where a loop sums the buffer and ``write_values`` is off, see `_buffer`; ``ya``/``pa``: see
    `_ask_ahead`)."""
    n = pb.shape[0]
    if FUSED:
        if write_grad:
            out = vb if write_values else buf
            _fill(yb, pb, wt, gscale, params, out, gb, ya, pa)
            return _sum(out[:n])
    if SUM_IN_LOOP:
        s = 0.0
        for i in range(n):
            v = VALUE(yb[i], pb[i], params) * wt
            if write_values:
                vb[i] = v
            s = reassoc_add(s, float64(v))
    else:
        out = vb if write_values else buf
        _fill(yb, pb, wt, wt, params, out, None, ya, pa)
        s = _sum(out[:n])
    if write_grad:
        for i in range(n):
            gb[i] = gscale * GRAD(yb[i], pb[i], params)
    return s


@njit(inline="always", error_model="numpy")
def _block_weights(yb, pb, wb, params, vb, gb, buf, write_values, write_grad, ya, pa):
    """``(sum L*W, sum W, count W != 0)`` over one block with weights ``wb`` (a NaN weight
    counts as non-zero)."""
    n = pb.shape[0]
    if FUSED:
        if write_grad:
            out = vb if write_values else buf
            _fill(yb, pb, wb, wb, params, out, gb, ya, pa)
            return _sum(out[:n]), _sum(wb), _count_nonzero(wb)
    if SUM_IN_LOOP:
        s = 0.0
        weights = 0.0
        nonzero = 0.0
        for i in range(n):
            wi = wb[i]
            v = VALUE(yb[i], pb[i], params) * wi
            if write_values:
                vb[i] = v
            s = reassoc_add(s, float64(v))
            weights = reassoc_add(weights, float64(wi))
            nonzero = reassoc_add(nonzero, 1.0 if wi != 0.0 else 0.0)
    else:
        out = vb if write_values else buf
        _fill(yb, pb, wb, wb, params, out, None, ya, pa)
        s = _sum(out[:n])
        weights = _sum(wb)
        nonzero = _count_nonzero(wb)
    if write_grad:
        for i in range(n):
            gb[i] = wb[i] * GRAD(yb[i], pb[i], params)
    return s, weights, nonzero


@njit(inline="always")
def _buffer(p, start, stop, write_values, write_grad):
    """The block buffer of a pass over [start, stop): empty where no loop writes it."""
    summed_in_loop = SUM_IN_LOOP and not (FUSED and write_grad)
    size = 0 if write_values or summed_in_loop else min(BLOCK, stop - start)
    return np.empty(size, dtype=p.dtype)


@njit(inline="always")
def _grad_stream_buffer(grad, write_grad, mode):
    """A block-sized buffer for the gradient where the pass writes it by non-temporal stores,
    else an empty one (the pass writes ``grad`` directly).

    It streams a large gradient (`stream.streams`) of a memory-bound formula (`SUM_IN_LOOP`,
    its gradient a loop of its own) into memory written before (mode bit `REUSED_GRAD`). A
    fresh array's pages are zeroed by the OS on first touch, in cache, where plain stores
    then hit; streaming into them measured 1.25x slower (MSE value+gradient, 16M float32). A
    compute-bound formula's loop hides its plain stores' reads: streaming measured 1.1-1.2x
    slower (log_loss, sigmoid cross-entropy into a reused array)."""
    stream = (SUM_IN_LOOP and not FUSED and write_grad and (mode & REUSED_GRAD) != 0
              and streams(grad))
    return np.empty(BLOCK if stream else 0, dtype=grad.dtype)


@njit(inline="always")
def _grad_block(grad, lo, hi, write_grad, stream_buf):
    """Where a block's loop writes the gradient's elements [lo, hi): the stream buffer, or
    ``grad[lo:hi]`` (``grad`` itself, a placeholder, where the mode does not write it)."""
    if not write_grad:
        return grad
    if stream_buf.shape[0] > 0:
        return stream_buf[:hi - lo]
    return grad[lo:hi]


@njit(inline="always")
def _flush_grad_block(grad, lo, hi, stream_buf):
    """Copy a streamed block of the gradient out of its buffer, by non-temporal stores."""
    if stream_buf.shape[0] > 0:
        stream_copy(grad[lo:hi], stream_buf[:hi - lo])


@njit(inline="always")
def _end_stream(stream_buf):
    """Order the pass's non-temporal stores, if it made any, before the threads join."""
    if stream_buf.shape[0] > 0:
        store_fence()


@njit(inline="always", error_model="numpy")
def _pass_scalar_weight(y, p, w, params, start, stop, values, grad, mode, write_values,
                        write_grad):
    """Partial sums over flat elements [start, stop) that all have the weight ``w[0]``.

    ``w[1]``, when given, multiplies the gradient instead of ``w[0]``: the weight over the
    reduction's denominator, which a scalar weight lets the caller know before the pass
    (`lossforge.compute.run`), saving it a second pass over the gradient.
    """
    buf = _buffer(p, start, stop, write_values, write_grad)
    grad_buf = _grad_stream_buffer(grad, write_grad, mode)
    wt = w[0]
    gscale = w[1] if w.shape[0] > 1 else wt
    weighted = 0.0
    for lo in range(start, stop, BLOCK):
        hi = min(stop, lo + BLOCK)
        vb = values[lo:hi] if write_values else values
        gb = _grad_block(grad, lo, hi, write_grad, grad_buf)
        weighted += _block_scalar(y[lo:hi], p[lo:hi], wt, params, vb, gb, buf, write_values,
                                  write_grad, gscale, _ahead(y, lo), _ahead(p, lo))
        _flush_grad_block(grad, lo, hi, grad_buf)
    _end_stream(grad_buf)
    n = stop - start
    return weighted, float64(wt) * n, float64(n) if wt != 0 else 0.0


@njit(inline="always", error_model="numpy")
def _pass_weights(y, p, w, params, start, stop, values, grad, mode, write_values, write_grad):
    """Partial sums over flat elements [start, stop) with the ``(A, M, I)`` weights view."""
    ia, im, ii = run_start(w, start)
    buf = _buffer(p, start, stop, write_values, write_grad)
    grad_buf = _grad_stream_buffer(grad, write_grad, mode)
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
            vb = values[lo:hi] if write_values else values
            gb = _grad_block(grad, lo, hi, write_grad, grad_buf)
            if scalar:  # a broadcast run (per-sample weights): one weight, read once
                wt = row[ii]
                weighted += _block_scalar(y[lo:hi], p[lo:hi], wt, params, vb, gb, buf,
                                          write_values, write_grad, wt, _ahead(y, lo),
                                          _ahead(p, lo))
                weights += float64(wt) * (e - b)
                nonzero += float64(e - b) if wt != 0 else 0.0
            else:
                a, c, d = _block_weights(y[lo:hi], p[lo:hi], row[ii + b:ii + e], params, vb, gb,
                                         buf, write_values, write_grad, _ahead(y, lo),
                                         _ahead(p, lo))
                weighted += a
                weights += c
                nonzero += d
            _flush_grad_block(grad, lo, hi, grad_buf)
        j += run
        ia, im, ii = next_run(w, ia, im)
    _end_stream(grad_buf)
    return weighted, weights, nonzero


# One compiled path per mode, each built on first use: a first call compiles only what it
# needs (the value-only path), and constant flags let LLVM drop the stores a mode does not make.
# ``w.ndim`` is a compile-time constant that numba prunes on, so a scalar weight (a 1-element
# array) compiles only the scalar loops and a weights view only the general ones.

@njit(cache=True, error_model="numpy")
def _range_reduce(y, p, w, params, start, stop, values, grad, mode):
    prefer_512_bit_vectors()
    if w.ndim == 1:  # a scalar weight as a 1-element array
        return _pass_scalar_weight(y, p, w, params, start, stop, values, grad, mode, False, False)
    return _pass_weights(y, p, w, params, start, stop, values, grad, mode, False, False)


@njit(cache=True, error_model="numpy")
def _range_values(y, p, w, params, start, stop, values, grad, mode):
    prefer_512_bit_vectors()
    if w.ndim == 1:  # a scalar weight as a 1-element array
        return _pass_scalar_weight(y, p, w, params, start, stop, values, grad, mode, True, False)
    return _pass_weights(y, p, w, params, start, stop, values, grad, mode, True, False)


@njit(cache=True, error_model="numpy")
def _range_grad(y, p, w, params, start, stop, values, grad, mode):
    prefer_512_bit_vectors()
    if w.ndim == 1:  # a scalar weight as a 1-element array
        return _pass_scalar_weight(y, p, w, params, start, stop, values, grad, mode, False, True)
    return _pass_weights(y, p, w, params, start, stop, values, grad, mode, False, True)


@njit(cache=True, error_model="numpy")
def _range_values_grad(y, p, w, params, start, stop, values, grad, mode):
    prefer_512_bit_vectors()
    if w.ndim == 1:  # a scalar weight as a 1-element array
        return _pass_scalar_weight(y, p, w, params, start, stop, values, grad, mode, True, True)
    return _pass_weights(y, p, w, params, start, stop, values, grad, mode, True, True)


@njit(inline="always", error_model="numpy")
def _chunked(pass_range, y, p, w, params, n, values, grad, mode):
    chunks = (n + CHUNK - 1) // CHUNK
    parts = np.zeros((chunks, 3))
    for c in prange(chunks):
        a, b, d = pass_range(y, p, w, params, c * CHUNK, min(n, (c + 1) * CHUNK), values, grad,
                             mode)
        parts[c, 0] = a
        parts[c, 1] = b
        parts[c, 2] = d
    # summed in chunk order: the result does not depend on the thread count
    return parts[:, 0].sum(), parts[:, 1].sum(), parts[:, 2].sum()


@njit(cache=True, error_model="numpy")
def serial_reduce(y, p, w, params, n, values, grad, mode):
    return _range_reduce(y, p, w, params, 0, n, values, grad, mode)


@njit(cache=True, error_model="numpy")
def serial_values(y, p, w, params, n, values, grad, mode):
    return _range_values(y, p, w, params, 0, n, values, grad, mode)


@njit(cache=True, error_model="numpy")
def serial_grad(y, p, w, params, n, values, grad, mode):
    return _range_grad(y, p, w, params, 0, n, values, grad, mode)


@njit(cache=True, error_model="numpy")
def serial_values_grad(y, p, w, params, n, values, grad, mode):
    return _range_values_grad(y, p, w, params, 0, n, values, grad, mode)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_reduce(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_reduce, y, p, w, params, n, values, grad, mode)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_values(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_values, y, p, w, params, n, values, grad, mode)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_grad(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_grad, y, p, w, params, n, values, grad, mode)


@njit(cache=True, parallel=True, error_model="numpy")
def parallel_values_grad(y, p, w, params, n, values, grad, mode):
    return _chunked(_range_values_grad, y, p, w, params, n, values, grad, mode)


#: The kernels by mode (0, VALUES, GRAD_BIT, VALUES | GRAD_BIT), serial and multi-threaded.
SERIAL = (serial_reduce, serial_values, serial_grad, serial_values_grad)
PARALLEL = (parallel_reduce, parallel_values, parallel_grad, parallel_values_grad)
