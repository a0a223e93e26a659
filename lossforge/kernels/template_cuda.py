"""The CUDA kernel of one loss, compiled around that loss's formulas.

This file is a template, like ``template.py``: `lossforge.kernels.cuda` copies it into the
kernel cache directory once per loss (and per fingerprint of its formulas), replacing the
formula slot with the slot that ``template.py`` gets (`lossforge.kernels._slot`: the same
``LOSS_AT``/``GRAD_AT``/``LOSS_GRAD_AT`` bound to the same registered formulas), and imports
the copy. As written, the slot holds the formula of ``compute_weighted_loss``.

Why ``LOSS_AT``/``GRAD_AT`` and the formulas are ``numba.njit(inline="always")`` functions,
not ``cuda.jit(device=True)`` ones: numba inlines them into the kernel's IR before typing, so
the kernel calls no separate device function. A call to a device function (or to a plain
``njit`` one) makes numba-cuda look up the current GPU while compiling, which fails on
machines without a GPU; inlined code compiles to PTX anywhere (``lossforge gpu-check``),
runs under the simulator, and is the same code the CPU kernels inline.

No ``cache=True``: numba-cuda caches compiled kernels per GPU, which no development or CI
machine has, so that path could not be tested; kernels compile lazily, per signature, on the
first call of each process.
"""
from numba import cuda, float64, int32, njit

from lossforge.kernels.cuda import (  # SIMULATOR: for the slot (`lossforge.kernels._slot`)
    GRAD, MAX_THREADS, SCALED, SIMULATOR, VALUES, block_tree_sum, device_view)

# --- formula slot: replaced per loss by lossforge.kernels ---
@njit(inline="always")
def LOSS_AT(y, p, j, params):
    return float64(p[j])


@njit(inline="always")
def GRAD_AT(y, p, j, scale, grad, params):
    grad[j] = scale


@njit(inline="always")
def LOSS_GRAD_AT(y, p, j, scale, grad, params, write_grad):
    v = LOSS_AT(y, p, j, params)
    if write_grad:
        GRAD_AT(y, p, j, scale, grad, params)
    return v


LANES = 1  # threads sharing a loss element: 32 (a warp) for row formulas that share rows
# --- end of formula slot ---


@cuda.jit
def loss_pass(y, p, w, middle, inner, params, n, values, grad, mode, grad_scale, partials, done,
              totals):
    """One pass over the ``n`` loss elements: the partial state, and values/gradient per `mode`.

    Each group of ``LANES`` threads walks a grid-stride loop over flat loss elements ``j``
    (elementwise losses: one element, one thread; row-wise ones: one row or fibre, read by the
    row formula, whole in one thread or shared by a warp: `lossforge.kernels.warp`), its first
    lane accumulating ``sum L*W``, ``sum W`` and ``count W != 0`` in float64 registers, like
    ``template.py``'s loop. The block then sums its threads' partials with a shared-memory
    tree and thread 0 writes them to ``partials[blockIdx]``. The last block to finish (an int32
    ticket taken from ``done[0]`` after a ``threadfence``, as in CUDA's threadFenceReduction
    sample) sums the block partials in block order into ``totals`` and sets ``done[0]`` back
    to 0 for the next launch: one launch instead of a second, one-block pass (each launch
    costs tens of microseconds on the host). Block order is fixed, so a result does not depend on
    scheduling (no float atomics): for one launch configuration it is bit-for-bit
    reproducible. ``partials`` needs at least ``gridDim.x`` rows (a buffer sized for the
    largest grid is reused across launches).

    ``w`` is the compact ``(A', M', I')`` weights array: each dim is the full size of the
    ``(A, M, I)`` broadcast view of `lossforge.inputs.weights_view` or 1 (a broadcast dim), so
    element ``j`` reads ``w[j // (M*I), (j // I) % M, j % I]`` with broadcast dims pinned to 0.
    ``middle``/``inner`` are ``M``/``I``. Scalar weights skip the index arithmetic.

    ``mode & VALUES`` writes ``values[j] = L*W`` (``Reduction.NONE``); ``mode & GRAD`` has
    ``GRAD_AT`` write ``W * dL/dp`` into ``grad`` (the reduction's denominator is applied
    afterwards, once the state is known), or with ``mode & SCALED`` ``grad_scale * dL/dp``: a
    scalar weight with the denominator folded in, known before the pass (as the CPU kernels'
    second weight, `lossforge.compute._fold_denominator`), which spares a second pass over the
    gradient. Requires ``blockDim.x`` a power of two <= ``MAX_THREADS`` and >= ``LANES``.
    """
    shared = cuda.shared.array((3, MAX_THREADS), float64)
    t = cuda.threadIdx.x
    # the identity on a GPU; under the simulator the NumPy array behind the fake device array,
    # so that the (CPU-compiled) formulas can read it
    yv = device_view(y)
    pv = device_view(p)
    gv = device_view(grad)
    weighted = 0.0
    weights = 0.0
    nonzero = 0.0
    scalar_weight = w.size == 1
    lead = t % LANES == 0  # (the whole warp goes round the loop: the lanes' exchanges need it)
    for j in range((cuda.blockIdx.x * cuda.blockDim.x + t) // LANES, n,
                   cuda.gridDim.x * cuda.blockDim.x // LANES):
        if scalar_weight:
            wt = float64(w[0, 0, 0])
        else:
            ia = j // (middle * inner)
            rest = j - ia * middle * inner
            im = rest // inner
            ii = rest - im * inner
            wt = float64(w[ia if w.shape[0] > 1 else 0, im if w.shape[1] > 1 else 0,
                           ii if w.shape[2] > 1 else 0])
        v = LOSS_GRAD_AT(yv, pv, j, grad_scale if mode & SCALED else wt, gv, params,
                         (mode & GRAD) != 0) * wt
        if lead:
            weighted += v
            weights += wt
            nonzero += 1.0 if wt != 0.0 else 0.0
            if mode & VALUES:
                values[j] = v
    shared[0, t] = weighted
    shared[1, t] = weights
    shared[2, t] = nonzero
    block_tree_sum(shared, t)
    last = cuda.shared.array(1, int32)
    if t == 0:
        b = cuda.blockIdx.x
        partials[b, 0] = shared[0, 0]
        partials[b, 1] = shared[1, 0]
        partials[b, 2] = shared[2, 0]
        cuda.threadfence()  # the partials are visible to every block before the ticket is
        ticket = cuda.atomic.add(done, 0, 1)
        last[0] = 1 if ticket == cuda.gridDim.x - 1 else 0
    cuda.syncthreads()
    if last[0] == 1:  # the same in every thread of the block: the syncthreads below are safe
        weighted = 0.0
        weights = 0.0
        nonzero = 0.0
        for i in range(t, cuda.gridDim.x, cuda.blockDim.x):
            weighted += partials[i, 0]
            weights += partials[i, 1]
            nonzero += partials[i, 2]
        shared[0, t] = weighted
        shared[1, t] = weights
        shared[2, t] = nonzero
        block_tree_sum(shared, t)
        if t == 0:
            totals[0] = shared[0, 0]
            totals[1] = shared[1, 0]
            totals[2] = shared[2, 0]
            done[0] = 0
