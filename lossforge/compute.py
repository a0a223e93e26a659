"""Run one loss's kernel over prepared arrays and reduce it: the bridge from API to kernels.

Numba is imported here lazily, on the first computation, not at ``import lossforge``.
"""
from __future__ import annotations

import math

import numpy as np

from . import buffers
from .inputs import (NUMERIC_KINDS, as_array, check_grad_out, check_weights_broadcast,
                     float_dtypes, for_kernel, scalar_weight, weights_view)
from .reduction import LossState, Reduction, finalize, finalize_sums

__all__ = ["run", "run_small", "run_small_cuda", "prepare", "denominator", "DEVICES",
           "SCALAR_REDUCTIONS"]

_VALUES, _GRAD = 1, 2  # the templates' mode bits
_REUSED_GRAD = 4  # mode bit: the gradient's memory was written before (template_elementwise.py)


def denominator(state: LossState, reduction: Reduction) -> float:
    """The reduction's denominator (1 for NONE and SUM)."""
    return {Reduction.MEAN: state.weight_sum,
            Reduction.SUM_OVER_BATCH_SIZE: float(state.element_count),
            Reduction.SUM_BY_NONZERO_WEIGHTS: state.nonzero_count}.get(reduction, 1.0)


def run(spec, prepared, params: tuple[float, ...], reduction: Reduction, with_grad: bool = False,
        device: str = "cpu", grad_out: np.ndarray | None = None, grad_factor: float = 1.0):
    """``(value, grad or None, LossState)`` of ``spec`` over ``prepared`` inputs, in one pass.

    ``value`` is the weighted losses (shape ``loss_shape``) for ``Reduction.NONE``, else a numpy
    scalar of the output dtype; ``grad`` is shaped like the predictions: ``grad_out`` if given
    (see `LossSpec.value_and_grad`; a device array for ``device="cuda"``). ``grad_factor``
    (CPU only) multiplies the gradient, folded into the scale the kernel or the reduction's
    denominator applies anyway: an objective's task weight costs no pass of its own over the
    gradient. ``device="cuda"`` runs the loss's CUDA kernels (see `lossforge.kernels.cuda`).
    """
    if device != "cpu":
        if grad_factor != 1.0:
            raise ValueError("compute.run: grad_factor is for device='cpu'")
        return _cuda(device).run(spec, prepared, params, reduction, with_grad,
                                 grad_out=grad_out)
    y, p, weights, loss_shape, grad_shape, out_dtype, kd = prepared
    n = math.prod(loss_shape)
    none = reduction is Reduction.NONE
    values = buffers.empty((n,), kd)[0] if none else _unused(kd, 1)
    # an elementwise kernel writes every gradient entry; a row-wise formula may write only some
    cleared = spec.kind != "elementwise" and not spec.grad_fills_rows
    reused_grad = False  # whether the gradient's memory was written before (its pages exist)
    if with_grad and grad_out is not None:
        grad = check_grad_out(grad_out, grad_shape, kd, out_dtype, (y, p, weights))
        grad = grad.reshape(p.shape)  # a view: grad_out is C-contiguous
        reused_grad = True
        if cleared:
            grad[...] = 0
    elif with_grad and cleared:
        grad = np.zeros(p.shape, dtype=kd)
    elif with_grad:
        grad, reused_grad = buffers.empty(p.shape, kd)
    else:
        grad = _unused(kd, p.ndim)
    sums = (0.0, 0.0, 0.0)
    scaled = False  # whether the kernel applied the reduction's denominator to the gradient
    if n:
        kernels = _kernels()
        fast_logs = spec.fast_logs and kd == np.float32
        mode = (_VALUES if none else 0) | (_GRAD if with_grad else 0)
        flags = mode | (_REUSED_GRAD if reused_grad else 0)
        if weights.ndim == 0:
            w = scalar_weight(weights, kd)
            if with_grad:
                w, scaled = _fold_denominator(w, reduction, n, grad_factor)
        else:
            w = weights_view(weights, loss_shape, kd)
        parallel = max(n, p.size) >= kernels.PARALLEL_THRESHOLD  # a row-wise loss's rows count
        sums = _sums(spec, kernels, params, fast_logs, parallel, mode,
                     (y, p, w, params, n, values, grad, flags))
    state = LossState(*sums, n)
    value = (values.reshape(loss_shape).astype(out_dtype, copy=False) if none
             else out_dtype.type(finalize(state, reduction)))
    if not with_grad:
        return value, None, state
    denom = denominator(state, reduction)
    if scaled:
        pass
    elif denom == 0:  # div_no_nan's gradient
        grad[...] = 0
    elif denom != 1 or grad_factor != 1.0:
        grad *= (1.0 / denom) * grad_factor  # in place: the gradient may be as large as the inputs
    if grad_out is not None:
        return value, grad_out, state
    return value, grad.reshape(grad_shape).astype(out_dtype, copy=False), state


def _fold_denominator(w: np.ndarray, reduction: Reduction, n: int,
                      factor: float = 1.0) -> tuple[np.ndarray, bool]:
    """``([weight, (weight / denominator) * factor], True)`` when a scalar weight lets the
    reduction's denominator be known before the pass, so that the kernel writes the final
    gradient (one pass over it instead of two: value+gradient of MSE at 1M float32 elements
    went from 1.9x to 1.5x the value alone); else ``(w, False)``.

    The denominator is the one the pass finds (MEAN: ``weight * n``, which the serial pass
    computes as such and the parallel one as a sum over chunks of 2^16 elements, the same
    number but for float64 rounding of a float64 weight). Multiplying ``dL/dp`` by
    ``(1 / denominator) * weight`` is TF's order of the chain rule too; ``factor`` (an
    objective's task weight) comes last. A zero denominator (div_no_nan: the gradient is 0
    even where dL/dp is NaN) and a denominator of 1 with a factor of 1 are left to the caller.
    """
    wt = float(w[0])
    # the state's weight and non-zero sums are known for a scalar weight
    denom = denominator(LossState(0.0, wt * n, float(n) if wt != 0 else 0.0, n), reduction)
    if denom == 0 or (denom == 1 and factor == 1.0) or denom != denom:
        return w, False
    return np.array((w[0], ((1.0 / denom) * wt) * factor), dtype=w.dtype), True


_kernels_module = None
_empty: dict = {}


def _kernels():
    """`lossforge.kernels` (which imports numba), imported on the first computation."""
    global _kernels_module
    if _kernels_module is None:
        from . import kernels
        _kernels_module = kernels
    return _kernels_module


def _sums(spec, kernels, params: tuple[float, ...], fast_logs: bool, parallel: bool, mode: int,
          args) -> tuple:
    """``(sum L*W, sum W, count W != 0)`` of the call's kernel for ``mode`` over ``args`` (the
    kernel's arguments, the mode flags last); with ``fast_logs`` (`LossSpec.fast_logs`), from
    the module taking ``vmath.log_or_nan`` as ``log``, or from the full log's where that sum is
    not finite."""
    sums = _launch(kernels, _cpu_kernels(spec, kernels, params, fast_logs), parallel, mode, args)
    if fast_logs and not math.isfinite(sums[0]):
        # a log's argument was 0, subnormal, negative, inf or NaN somewhere (or the sum is inf
        # or NaN anyway): again with the full log, over what the first pass wrote
        flags = args[-1] | (_REUSED_GRAD if mode & _GRAD else 0)
        sums = _launch(kernels, _cpu_kernels(spec, kernels, params), parallel, mode,
                       args[:-1] + (flags,))
    return sums


def _launch(kernels, k, parallel: bool, mode: int, args) -> tuple:
    """``(sum L*W, sum W, count W != 0)`` from the kernel module ``k``'s kernel for ``mode``."""
    if parallel:
        with kernels.parallel_launch():  # (numba's workqueue layer is not thread-safe)
            return k.PARALLEL[mode](*args)
    return k.SERIAL[mode](*args)


def _cpu_kernels(spec, kernels, params: tuple[float, ...], fast_logs: bool = False):
    """The CPU kernel module of a call of ``spec`` with kernel ``params`` (``fast_logs``: the
    one taking ``vmath.log_or_nan`` as ``log``, `LossSpec.fast_logs`)."""
    k = spec.__dict__.get("_cpu_kernels_fast_logs" if fast_logs else "_cpu_kernels")
    return k or _remember_kernels(spec, kernels, params, fast_logs)


def _remember_kernels(spec, kernels, params: tuple[float, ...], fast_logs: bool = False):
    """The CPU kernel module of a call of ``spec`` with kernel ``params``, kept on the spec (a
    dict lookup per call instead of fingerprinting): in ``_cpu_kernels``, or where a `Param`
    specializes values, in ``_cpu_kernels_by_constants`` under the constants the call's
    ``params`` select (`LossSpec.constants`); ``fast_logs``: in those names + ``_fast_logs``."""
    suffix = "_fast_logs" if fast_logs else ""
    if not any(p.specialize for p in spec.params):
        module = spec.__dict__["_cpu_kernels" + suffix] = kernels.loss_kernels(
            spec, fast_logs=fast_logs)
        return module
    constants = spec.constants(params)
    modules = spec.__dict__.setdefault("_cpu_kernels_by_constants" + suffix, {})
    module = modules.get(constants)
    if module is None:
        module = modules[constants] = kernels.loss_kernels(spec, constants, fast_logs)
    return module


def _unused(dtype: np.dtype, ndim: int) -> np.ndarray:
    """A shared empty array for an output a kernel does not write (its mode has no such bit)."""
    key = (dtype, ndim)
    array = _empty.get(key)
    if array is None:
        array = _empty[key] = np.empty((0,) * ndim, dtype=dtype)
    return array


# --- the small-input fast path ----------------------------------------------------------------

#: The scalar reductions, as members and as TF's string values, -> the member, which
#: `run_small` finalizes with (``Reduction.NONE`` is not here: it returns the weighted losses).
SCALAR_REDUCTIONS: dict = {}
for _member in (Reduction.SUM, Reduction.MEAN, Reduction.SUM_OVER_BATCH_SIZE,
                Reduction.SUM_BY_NONZERO_WEIGHTS):
    SCALAR_REDUCTIONS[_member] = SCALAR_REDUCTIONS[_member.value] = _member
del _member

_ndarray = np.ndarray
_set_flags = np.ndarray.setflags
# (labels dtype, predictions dtype, whether only the logits decide) -> (output dtype, kernel
# dtype, whether the labels need a cast, whether the predictions do, the kernel's unused
# output array), or None for a dtype that `as_array` refuses. Values are immutable: threads
# may share and replace them freely.
_dtype_plans: dict = {}
# (kernel dtype, float weight) -> the weight as a read-only 1-element array; only non-zero,
# non-NaN floats, whose value determines their bytes (0.0 == -0.0; a NaN equals nothing), and
# only those whose conversion does not overflow (which warns on every call of the general path)
_float_weights: dict = {}
_PLANS_MAX = 256  # each cache is emptied when it reaches this size (bounded memory)


def _dtype_plan(key):
    y_dtype, p_dtype, logits = key
    if y_dtype.kind not in NUMERIC_KINDS or p_dtype.kind not in NUMERIC_KINDS:
        plan = None
    else:
        arrays = (np.empty(0, p_dtype),) if logits else (np.empty(0, y_dtype), np.empty(0, p_dtype))
        out, kd = float_dtypes(*arrays)
        plan = (out, kd, y_dtype != kd, p_dtype != kd, _unused(kd, 1))
    if len(_dtype_plans) >= _PLANS_MAX:
        _dtype_plans.clear()
    _dtype_plans[key] = plan
    return plan


def _float_weight(weights: float, kd: np.dtype) -> np.ndarray:
    w = scalar_weight(np.asarray(weights), kd)
    if weights == weights and weights != 0 and (math.isfinite(w[0]) or math.isinf(weights)):
        if len(_float_weights) >= _PLANS_MAX:
            _float_weights.clear()
        _float_weights[(kd, weights)] = w
    return w


def run_small(spec, labels, predictions, weights, reduction: Reduction, params: tuple):
    """``(value, (weighted_sum, weight_sum, nonzero_count), element_count)`` of an elementwise
    ``spec`` whose ``prepare`` is `registry.prepare_elementwise` (the caller checks that),
    reduced by the `SCALAR_REDUCTIONS` member ``reduction``, with the checked kernel ``params``; or
    None when the call is not a small one on two ndarrays: the general path (`prepare`,
    `run`) computes it.

    The same conversions, kernel and finalisation as the general path, hence the same bits;
    what a small call is spared is generality: dtype resolution (cached per dtype pair),
    named tuples, the `LossState` and conversions of arrays that need none. Anything unusual
    (other array types, dtypes `as_array` refuses, different shapes, empty inputs or inputs
    for the parallel kernels) returns None before any work, so the general path raises its
    own errors in its own order; bad ``weights`` raise here, with the general path's
    messages, as the general path also checks them after the inputs.
    """
    if type(labels) is not _ndarray or type(predictions) is not _ndarray or \
            spec.kind != "elementwise":
        return None
    shape = labels.shape
    if shape != predictions.shape:
        return None
    key = (labels.dtype, predictions.dtype, spec.inputs[1] == "logits")
    plan = _dtype_plans.get(key, False)
    if plan is False:
        plan = _dtype_plan(key)
    n = labels.size
    kernels = _kernels_module  # None until the general path's first computation imports it
    if plan is None or n == 0 or kernels is None or n >= kernels.PARALLEL_THRESHOLD:
        return None
    out, kd, cast_y, cast_p, unused = plan
    if cast_y:
        y = for_kernel(labels, kd, (n,))
    else:
        y = labels.ravel()  # a view when C-contiguous, else the C-order copy for_kernel makes
        _set_flags(y, False)
    if cast_p:
        p = for_kernel(predictions, kd, (n,))
    else:
        p = predictions.ravel()
        _set_flags(p, False)
    if type(weights) is float:
        w = _float_weights.get((kd, weights))
        if w is None:
            w = _float_weight(weights, kd)
    else:
        w = as_array(weights, "weights")
        check_weights_broadcast(w, shape)
        w = scalar_weight(w, kd) if w.ndim == 0 else weights_view(w, shape, kd)
    if spec.fast_logs and kd == np.float32:  # (see _sums)
        sums = _sums(spec, kernels, params, True, False, 0, (y, p, w, params, n, unused, unused, 0))
    else:
        k = spec.__dict__.get("_cpu_kernels") or _remember_kernels(spec, kernels, params)
        sums = k.SERIAL[0](y, p, w, params, n, unused, unused, 0)
    weighted_sum, weight_sum, nonzero_count = sums
    return out.type(finalize_sums(weighted_sum, weight_sum, nonzero_count, n, reduction)), sums, n


def run_small_cuda(spec, labels, predictions, weights, reduction: Reduction, params: dict,
                   with_grad: bool = False, grad_out=None, state: bool = False):
    """`lossforge.kernels.cuda_small.run_small`: ``(value, grad, LossState)`` of a repeated call
    on device arrays (``grad`` with ``with_grad``, the state with ``state``, else None), or
    None (the general path computes it)."""
    global _cuda_small
    if _cuda_small is None:
        from .kernels import cuda_small
        _cuda_small = cuda_small
    return _cuda_small.run_small(spec, labels, predictions, weights, reduction, params, with_grad,
                                 grad_out, state)


_cuda_small = None


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
