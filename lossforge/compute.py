"""Run one loss's kernel over checked arrays and reduce it: the bridge from API to kernels.

The API modules (`losses`, `nn`, `compat`) check and convert inputs, then call
`weighted_loss`. Numba is imported here lazily, on the first computation, not at
``import lossforge``.
"""
from __future__ import annotations

import math

import numpy as np

from .inputs import weights_view
from .reduction import LossState, Reduction, finalize

__all__ = ["weighted_loss", "loss_state", "kernels_for"]


def kernels_for(formula: str):
    """The compiled kernel module of ``formula`` (imports numba on first use)."""
    from . import kernels
    return kernels.loss_kernels(formula)


def _parallel(n: int) -> bool:
    from . import kernels
    return n >= kernels.PARALLEL_THRESHOLD


def loss_state(formula: str, y: np.ndarray, p: np.ndarray, w3: np.ndarray,
               params: tuple[float, ...], n: int) -> LossState:
    """The additive partial state of ``formula`` over ``n`` loss elements (one fused pass)."""
    if n == 0:
        return LossState()
    k = kernels_for(formula)
    run = k.reduce_parallel if _parallel(n) else k.reduce_serial
    weighted, weights, nonzero = run(y, p, w3, params, n)
    return LossState(weighted, weights, nonzero, n)


def weighted_loss(formula: str, y: np.ndarray, p: np.ndarray, weights: np.ndarray,
                  loss_shape: tuple[int, ...], params: tuple[float, ...], reduction: Reduction,
                  out_dtype: np.dtype, kernel_dtype: np.dtype):
    """``formula`` over kernel-ready ``y``/``p``, weighted by ``weights`` and reduced.

    ``weights`` must already satisfy the broadcast rule against ``loss_shape``. Returns an
    array of ``loss_shape`` for ``Reduction.NONE``, else a numpy scalar of ``out_dtype``.
    """
    n = math.prod(loss_shape)
    w3 = weights_view(weights, loss_shape, kernel_dtype)
    params = tuple(float(v) for v in params)
    if reduction is Reduction.NONE:
        out = np.empty(n, dtype=kernel_dtype)
        if n:
            k = kernels_for(formula)
            run = k.values_parallel if _parallel(n) else k.values_serial
            run(y, p, w3, params, n, out)
        return out.reshape(loss_shape).astype(out_dtype, copy=False)
    state = loss_state(formula, y, p, w3, params, n)
    return out_dtype.type(finalize(state, reduction))
