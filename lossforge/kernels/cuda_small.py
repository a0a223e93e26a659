"""The fast path of repeated ``device="cuda"`` calls on device arrays: a launch plan per layout.

A training or evaluation loop calls a loss with device arrays of the same shapes, dtypes and
options step after step. The general path (`lossforge.kernels.cuda.prepare` and ``run``)
re-derives everything each time: stand-ins for the loss's ``prepare``, device-array views,
the weights' layout, the kernel's ~70 arguments. Its result depends only on what a `Plan`
is keyed by (a device array's values are never read on the host), so the first call of a
layout runs the general path and keeps:

* the kernel's driver handle and launch size,
* its packed arguments, in which only the two input pointers change from call to call,
* the small device buffers those arguments point at (held by the plan, so they stay alive).

A later call with the same key writes the two pointers (and a new gradient array's) into a
copy of the packed arguments, launches, reads the three sums back and finalises them as the
general path does: the same kernel on the same arguments, hence the same bits (tested on the
GPU against the general path). Plans live in the thread's and context's ``_Scratch`` (the
launcher's buffer is per thread), at most `MAX_PLANS` of them.

Served: reduced values, and value+gradient (into ``grad_out`` or a new array), of two device
arrays (numba device arrays or objects with ``__cuda_array_interface__`` on the legacy default
stream), a Python float weight (non-zero, not NaN) and parameters given as Python scalars;
objectives' value-only terms too (`lossforge.objective`). Everything else takes the general
path, and so does any layout whose general path launches more than ``loss_pass``: a cast of
an input on the device, a gradient cleared first (a row formula that does not fill its rows)
or scaled or cast after the pass.
"""
from __future__ import annotations

import math

import numpy as np

from ..reduction import LossState, finalize_sums
from .cuda_launch import pack, pointer

__all__ = ["run_small", "MAX_PLANS"]

MAX_PLANS = 256  # per thread and context; the dict is emptied when full (bounded memory)
_DEFAULT_STREAMS = (None, 1)  # CUDA Array Interface: no stream given, or the legacy default
_dtypes: dict = {}  # typestr -> np.dtype


class Plan:
    """What a call of one layout needs to launch again: see the module docstring."""

    __slots__ = ("handle", "blocks", "threads", "slots", "count", "y_slot", "p_slot", "grad_slot",
                 "grad_layout", "grad_shape", "kernel_dtype", "keep", "n", "out_dtype",
                 "reduction")

    def __init__(self, handle, blocks, threads, slots, y_slot, p_slot, keep, n, out_dtype,
                 reduction, grad_slot=-1, grad_layout=None, grad_shape=None, kernel_dtype=None):
        self.handle, self.blocks, self.threads = handle, blocks, threads
        self.slots = np.array(slots, dtype=np.int64)
        self.count = len(slots)
        self.y_slot, self.p_slot = y_slot, p_slot
        self.keep = keep  # the device buffers the packed arguments point at
        self.n, self.out_dtype, self.reduction = n, out_dtype, reduction
        # value+gradient: where the new gradient's pointer goes, its shape in the kernel and
        # the shape returned (the predictions'), its dtype
        self.grad_slot, self.grad_layout = grad_slot, grad_layout
        self.grad_shape, self.kernel_dtype = grad_shape, kernel_dtype


_kc = None


def _cuda():
    """`lossforge.kernels.cuda`, imported on the first call (it imports numba.cuda, and raises
    the general path's error when numba-cuda is missing)."""
    global _kc
    if _kc is None:
        from . import cuda
        _kc = cuda
    return _kc


def _describe(array):
    """``(shape, dtype, strides, device pointer)`` of a device array without building a numba
    view of it, or None (not a device array, or one on another stream: the general path
    synchronises with it)."""
    if getattr(type(array), "__cuda_ndarray__", False) is True:  # a numba device array
        if array.stream != 0:
            return None
        return array.shape, array.dtype, array.strides, pointer(array)
    try:
        face = array.__cuda_array_interface__
    except AttributeError:
        return None
    if face.get("stream") not in _DEFAULT_STREAMS or face.get("mask") is not None:
        return None
    typestr = face["typestr"]
    dtype = _dtypes.get(typestr)
    if dtype is None:
        dtype = _dtypes[typestr] = np.dtype(typestr)
    return tuple(face["shape"]), dtype, face.get("strides"), face["data"][0]


def _params_key(params: dict):
    """``params`` as a key, or None when a value is not a Python scalar or None (True == 1 ==
    1.0 as keys: the types keep them apart). None: an option not given (the TF API passes
    ``cosine_distance``'s ``dim=None``)."""
    key = []
    for name, value in params.items():
        kind = type(value)
        if kind is not float and kind is not int and kind is not bool and kind is not str and \
                value is not None:
            return None
        key.append((name, kind, value))
    return tuple(key)


def run_small(spec, labels, predictions, weights, reduction, params: dict,
              with_grad: bool = False, grad_out=None, state: bool = False):
    """``(value, grad, LossState)`` of ``spec(..., device="cuda")`` on device arrays (``grad``:
    with ``with_grad``, as ``spec.value_and_grad``, ``grad_out`` or a new device array, else
    None; the `LossState` only with ``state``, else None); or None when the call is not one
    the fast path serves (the caller takes the general path, which also raises the errors).

    ``reduction`` is a member of `lossforge.compute.SCALAR_REDUCTIONS`'s values.
    """
    kc = _cuda()
    if kc.SIMULATOR or type(weights) is not float or weights != weights or weights == 0:
        return None
    kc.check_gpu()  # the general path's error where no GPU is visible
    y = _describe(labels)
    if y is None:
        return None
    p = _describe(predictions)
    if p is None:
        return None
    params_key = _params_key(params) if params else ()
    if params_key is None:
        return None
    scratch = kc._scratch()
    launcher = scratch._launcher
    if launcher is None:
        return None
    key = (spec, y[0], y[1], y[2], p[0], p[1], p[2], weights, reduction, params_key, with_grad,
           kc._threads, kc._max_blocks)
    plan = scratch.plans.get(key, False)
    if plan is False:
        value, grad, full_state = _first_call(spec, labels, predictions, weights, reduction,
                                              params, with_grad, grad_out, scratch, key, y[3],
                                              p[3])
        return value, grad, (full_state if state else None)
    if plan is None:
        return None
    if with_grad:
        if grad_out is None:
            grad = kc.cuda.device_array(plan.grad_layout, plan.kernel_dtype)
            grad_pointer = pointer(grad)
        else:
            grad_pointer = _checked_grad_out(grad_out, plan, y, p)
            if grad_pointer is None:
                return None
    slots = launcher.slots
    slots[:plan.count] = plan.slots
    slots[plan.y_slot] = y[3]
    slots[plan.p_slot] = p[3]
    if with_grad:
        slots[plan.grad_slot] = grad_pointer
    launcher.launch_packed(plan.handle, plan.blocks, plan.threads)
    weighted_sum, weight_sum, nonzero_count = scratch.read_totals()
    value = plan.out_dtype.type(finalize_sums(weighted_sum, weight_sum, nonzero_count, plan.n,
                                              plan.reduction))
    if with_grad:
        grad = kc._reshape(grad, plan.grad_shape) if grad_out is None else grad_out
    else:
        grad = None
    return value, grad, (LossState(weighted_sum, weight_sum, nonzero_count, plan.n) if state
                         else None)


def _extent(description) -> tuple[int, int]:
    """``[start, end)`` device addresses of a described contiguous array."""
    shape, dtype, _, start = description
    return start, start + math.prod(shape) * dtype.itemsize


def _checked_grad_out(grad_out, plan, y, p) -> int | None:
    """The device address of ``grad_out`` when the plan's kernel can write its gradient there
    (the rules of `lossforge.kernels.cuda.check_grad_out`), else None: the general path then
    raises the error."""
    g = _describe(grad_out)
    if g is None or tuple(g[0]) != plan.grad_shape or g[1] != plan.kernel_dtype:
        return None
    shape, dtype, strides, _ = g
    if strides is not None and tuple(strides) != _c_strides(shape, dtype.itemsize):
        return None
    start, end = _extent(g)
    if start == end:
        return None
    for other in (y, p):
        low, high = _extent(other)
        if low < end and start < high:
            return None
    return g[3]


def _c_strides(shape, itemsize: int) -> tuple:
    strides, step = [], itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= extent
    return tuple(reversed(strides))


def _first_call(spec, labels, predictions, weights, reduction, params, with_grad, grad_out,
                scratch, key, y_pointer, p_pointer):
    """The general path, and a `Plan` for the calls after it when its one launch can be
    replayed with only the inputs' (and the new gradient's) pointers changed; else None, so
    that the next call does not try again."""
    from ..compute import prepare
    kc = _cuda()
    plans = scratch.plans
    if len(plans) >= MAX_PLANS:
        plans.clear()
    launches = []
    prepared, kernel_params = prepare(spec, labels, predictions, weights, params, "cuda")
    before = scratch.launches
    value, grad, state = kc.run(spec, prepared, kernel_params, reduction, with_grad=with_grad,
                                on_launch=launches.append, grad_out=grad_out)
    grad_pointer = None
    if with_grad:
        if grad_out is None:
            grad_pointer = pointer(grad)
        else:
            described = _describe(grad_out)
            grad_pointer = None if described is None else described[3]
        if grad.dtype != prepared.kernel_dtype:  # converted after the pass
            grad_pointer = None
    plans[key] = _plan(launches, scratch.launches - before, scratch, y_pointer, p_pointer,
                       state, prepared, reduction, with_grad, grad_pointer)
    return value, grad, state


def _plan(launches, launched, scratch, y_pointer, p_pointer, state, prepared, reduction,
          with_grad, grad_pointer):
    """The `Plan` of a general-path call that launched ``loss_pass`` (``launches``) and nothing
    else, reading the inputs themselves (views at the same address, not cast copies) and, for a
    gradient, writing the array the call returned (at ``grad_pointer``); else None."""
    if len(launches) != 1 or launched != 1 or not state.element_count:
        return None
    kernel, blocks, threads, args = launches[0]
    entry = scratch._launcher.handle(kernel, args)
    if entry is None or entry[0] is None or entry[1] <= 0:
        return None
    offsets = [0]
    for a in args:
        offsets.append(offsets[-1] + len(pack((a,), [])))
    slots = pack(args, [])
    y_slot, p_slot, grad_slot = offsets[0] + 4, offsets[1] + 4, offsets[8] + 4  # data pointers
    if len(slots) != entry[1] or slots[y_slot] != y_pointer or slots[p_slot] != p_pointer:
        return None
    kernel_grad = args[8]
    kd = np.dtype(prepared.kernel_dtype)
    if not with_grad:
        grad_slot, layout, shape = -1, None, None
    elif grad_pointer is None or pointer(kernel_grad) != grad_pointer:
        return None
    else:
        layout, shape = tuple(kernel_grad.shape), tuple(prepared.grad_shape)
    keep = tuple(a for i, a in enumerate(args) if i not in (0, 1, 8))
    return Plan(entry[0], blocks, threads, slots, y_slot, p_slot, keep, state.element_count,
                np.dtype(prepared.out_dtype), reduction, grad_slot, layout, shape, kd)
