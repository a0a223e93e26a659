"""Run one loss's kernel over prepared arrays and reduce it: the bridge from API to kernels.

Numba is imported here lazily, on the first computation, not at ``import lossforge``.
"""
from __future__ import annotations

import math

import numpy as np

from .inputs import scalar_weight, weights_view
from .reduction import LossState, Reduction, finalize

__all__ = ["run", "prepare", "denominator", "DEVICES"]

_VALUES, _GRAD = 1, 2  # the template's mode bits


def denominator(state: LossState, reduction: Reduction) -> float:
    """The reduction's denominator (1 for NONE and SUM)."""
    return {Reduction.MEAN: state.weight_sum,
            Reduction.SUM_OVER_BATCH_SIZE: float(state.element_count),
            Reduction.SUM_BY_NONZERO_WEIGHTS: state.nonzero_count}.get(reduction, 1.0)


def run(spec, prepared, params: tuple[float, ...], reduction: Reduction, with_grad: bool = False,
        device: str = "cpu"):
    """``(value, grad or None, LossState)`` of ``spec`` over ``prepared`` inputs, in one pass.

    ``value`` is the weighted losses (shape ``loss_shape``) for ``Reduction.NONE``, else a numpy
    scalar of the output dtype; ``grad`` is shaped like the predictions. ``device="cuda"`` runs
    the loss's CUDA kernels (see `lossforge.kernels.cuda`).
    """
    if device != "cpu":
        return _cuda(device).run(spec, prepared, params, reduction, with_grad)
    y, p, weights, loss_shape, grad_shape, out_dtype, kd = prepared
    n = math.prod(loss_shape)
    none = reduction is Reduction.NONE
    values = np.empty(n, dtype=kd) if none else _unused(kd, 1)
    # an elementwise kernel writes every gradient entry; a row-wise formula may write only some
    grad = ((np.empty if spec.kind == "elementwise" else np.zeros)(p.shape, dtype=kd)
            if with_grad else _unused(kd, p.ndim))
    sums = (0.0, 0.0, 0.0)
    if n:
        kernels = _kernels()
        k = spec.__dict__.get("_cpu_kernels") or _remember_kernels(spec, kernels)
        mode = (_VALUES if none else 0) | (_GRAD if with_grad else 0)
        w = (scalar_weight(weights, kd) if weights.ndim == 0 and spec.kind == "elementwise"
             else weights_view(weights, loss_shape, kd))
        if n >= kernels.PARALLEL_THRESHOLD:
            with kernels.parallel_launch():  # (numba's workqueue layer is not thread-safe)
                sums = k.PARALLEL[mode](y, p, w, params, n, values, grad, mode)
        else:
            sums = k.SERIAL[mode](y, p, w, params, n, values, grad, mode)
    state = LossState(*sums, n)
    value = (values.reshape(loss_shape).astype(out_dtype, copy=False) if none
             else out_dtype.type(finalize(state, reduction)))
    if not with_grad:
        return value, None, state
    denom = denominator(state, reduction)
    if denom == 0:  # div_no_nan's gradient
        grad[...] = 0
    elif denom != 1:
        grad *= 1.0 / denom  # in place: the gradient may be as large as the inputs
    return value, grad.reshape(grad_shape).astype(out_dtype, copy=False), state


_kernels_module = None
_empty: dict = {}


def _kernels():
    """`lossforge.kernels` (which imports numba), imported on the first computation."""
    global _kernels_module
    if _kernels_module is None:
        from . import kernels
        _kernels_module = kernels
    return _kernels_module


def _remember_kernels(spec, kernels):
    # kept on the spec: a dict lookup per call instead of fingerprinting
    module = spec.__dict__["_cpu_kernels"] = kernels.loss_kernels(spec)
    return module


def _unused(dtype: np.dtype, ndim: int) -> np.ndarray:
    """A shared empty array for an output a kernel does not write (its mode has no such bit)."""
    key = (dtype, ndim)
    array = _empty.get(key)
    if array is None:
        array = _empty[key] = np.empty((0,) * ndim, dtype=dtype)
    return array


# --- devices -------------------------------------------------------------------------------------

#: The values of ``device=``.
DEVICES = ("cpu", "cuda")


def prepare(spec, labels, predictions, weights, params: dict, device: str = "cpu"):
    """``(Prepared, kernel params)`` of a call: ``spec._prepare``, or for ``device="cuda"`` its
    variant that also takes device arrays (``__cuda_array_interface__``) without copying them."""
    if device != "cpu":
        return _cuda(device).prepare(spec, labels, predictions, weights, params)
    return spec._prepare(labels, predictions, weights, params)


def _cuda(device):
    """`lossforge.kernels.cuda`, imported on first use (it imports numba.cuda)."""
    if device != "cuda":
        from .errors import InvalidArgumentError
        raise InvalidArgumentError(f"`device` must be one of {DEVICES}; got {device!r}.")
    from .kernels import cuda  # raises InvalidArgumentError (what to install) without numba-cuda
    return cuda
