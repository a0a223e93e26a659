"""The stacked CUDA kernel of one loss: K independent batches in one launch.

A template like ``template_cuda.py`` (see there for why the formulas are
``njit(inline="always")`` and why nothing is cached): `lossforge.kernels.cuda_stacked` copies
it into the kernel cache once per loss with that loss's formula slot. As written, the slot
holds the formula of ``compute_weighted_loss``.
"""
from numba import cuda, float64, njit

from lossforge.kernels.cuda import MAX_THREADS, block_tree_sum, device_view

# --- formula slot: replaced per loss by lossforge.kernels ---
@njit(inline="always")
def LOSS_AT(y, p, j, params):
    return float64(p[j])


@njit(inline="always")
def GRAD_AT(y, p, j, scale, grad, params):
    grad[j] = scale
# --- end of formula slot ---


@cuda.jit
def stacked_pass(y, p, w, middle, inner, params, segment, count, partials):
    """The partial states of ``count`` batches of ``segment`` flat loss elements each.

    Batch ``k`` owns flat elements ``[k * segment, (k + 1) * segment)`` of the concatenated
    inputs. The grid is 2-d: ``blockIdx.y`` walks the batches (a stride loop, so K may exceed
    the grid's y extent) and, within a batch, ``blockIdx.x`` and the threads walk its elements
    with a grid-stride loop, accumulating ``sum L*W``, ``sum W`` and ``count W != 0`` in
    float64 registers. Each block reduces its threads with a shared-memory tree and thread 0
    writes ``partials[k, blockIdx.x]``; `lossforge.kernels.cuda_stacked.stacked_finish` sums
    them per batch in block order (deterministic: no float atomics).

    ``w`` is the compact weights array and ``middle``/``inner`` the ``M``/``I`` of the
    ``(A, M, I)`` weights view, exactly as in ``template_cuda.loss_pass``. Requires
    ``blockDim.x`` a power of two <= ``MAX_THREADS``.
    """
    shared = cuda.shared.array((3, MAX_THREADS), float64)
    t = cuda.threadIdx.x
    yv = device_view(y)
    pv = device_view(p)
    scalar_weight = w.size == 1
    for k in range(cuda.blockIdx.y, count, cuda.gridDim.y):  # uniform in a block
        weighted = 0.0
        weights = 0.0
        nonzero = 0.0
        base = k * segment
        for e in range(cuda.blockIdx.x * cuda.blockDim.x + t, segment,
                       cuda.gridDim.x * cuda.blockDim.x):
            j = base + e
            if scalar_weight:
                wt = float64(w[0, 0, 0])
            else:
                ia = j // (middle * inner)
                rest = j - ia * middle * inner
                im = rest // inner
                ii = rest - im * inner
                wt = float64(w[ia if w.shape[0] > 1 else 0, im if w.shape[1] > 1 else 0,
                               ii if w.shape[2] > 1 else 0])
            weighted += LOSS_AT(yv, pv, j, params) * wt
            weights += wt
            nonzero += 1.0 if wt != 0.0 else 0.0
        shared[0, t] = weighted
        shared[1, t] = weights
        shared[2, t] = nonzero
        block_tree_sum(shared, t)
        if t == 0:
            partials[k, cuda.blockIdx.x, 0] = shared[0, 0]
            partials[k, cuda.blockIdx.x, 1] = shared[1, 0]
            partials[k, cuda.blockIdx.x, 2] = shared[2, 0]
        cuda.syncthreads()  # the next batch reuses `shared`
