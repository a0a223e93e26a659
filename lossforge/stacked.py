"""Stacked evaluation: the partial states of K independent batches of one loss, in one launch.

An axis (``batch_axis``) of every input indexes K independent batches. They are concatenated
along their first axis (a free reshape when ``batch_axis`` is 0 and the inputs are
C-contiguous), so batch ``k`` owns a contiguous run of ``segment`` flat loss elements of the
concatenation; the loss's own ``prepare`` then runs once on the concatenation, with every
check it makes on a single call, and one kernel (CPU: ``template_stacked.py``, a ``prange``
over K x chunks; CUDA: `lossforge.kernels.cuda_stacked`, a grid over K x elements) returns
the K partial states. Each equals the state of a separate call on batch ``k``.

Weights: the per-batch weights (``weights.take(k, batch_axis)``) follow TF's broadcasting rule
for one batch; a per-batch scalar or a leading dim of 1 is repeated over the batch's samples
for the concatenation (weights only: the inputs are never copied for it).

    >>> import numpy as np
    >>> from lossforge import registry, stacked
    >>> y, p = np.zeros((2, 3)), np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    >>> states, dtype = stacked.stacked_states(registry.get("mean_squared_error"), y, p)
    >>> states[:, 0].tolist(), states[:, 3].tolist()     # sum L*W and the element counts
    ([14.0, 36.0], [3.0, 3.0])
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from .errors import InvalidArgumentError, InvalidTypeError
from .inputs import as_array, weights_view

__all__ = ["stacked_states", "split_leading"]


def _axis(batch_axis, ndim: int, name: str) -> int:
    if isinstance(batch_axis, bool) or not isinstance(batch_axis, (int, np.integer)):
        raise InvalidTypeError(f"`batch_axis` must be an int; got {type(batch_axis).__name__} "
                               f"{batch_axis!r}.")
    if not -ndim <= batch_axis < ndim:
        raise InvalidArgumentError(
            f"`batch_axis`={batch_axis} is out of range for `{name}` of rank {ndim}: every input "
            f"needs the axis that indexes the K batches.")
    return int(batch_axis) % ndim


def split_leading(array: np.ndarray) -> np.ndarray:
    """``array`` of shape ``(K, B, ...)`` as ``(K * B, ...)`` (``(K,)`` stays as it is)."""
    if array.ndim <= 1:
        return array
    return array.reshape((array.shape[0] * array.shape[1],) + array.shape[2:])


def _stacked_weights(w: np.ndarray, count: int, batch_rows: int, loss_rank: int) -> np.ndarray:
    """Weights ``(K, *per_batch)`` for the concatenation of K batches of ``batch_rows`` rows
    (each batch's loss has rank ``loss_rank`` >= 1)."""
    per = w.shape[1:]
    if not per:  # a scalar per batch: one weight per row of the concatenation
        rows = np.repeat(w, batch_rows)
        return rows.reshape(rows.shape + (1,) * (loss_rank - 1))
    if per[0] == 1 and batch_rows != 1:  # one weight row for the whole batch: repeat it
        w = np.repeat(w, batch_rows, axis=1)
    return split_leading(w)


def stacked_states(spec, labels, predictions, weights=1.0, params=None, batch_axis: int = 0,
                   device: str = "cpu"):
    """``(states, out_dtype)``: ``states[k] = (sum L*W, sum W, count W != 0, size(L))`` of
    batch ``k`` (a float64 array ``(K, 4)``) and the output dtype of a single call.

    ``labels``, ``predictions`` and (unless a scalar, shared by every batch) ``weights`` must
    have the axis ``batch_axis`` of equal length K >= 1. ``params``: the loss's keyword
    arguments (its parameters and options). Host (NumPy-convertible) inputs only.
    """
    from . import compute
    params = dict(params or {})
    spec, params = spec.route(params)
    names = spec.inputs
    arrays = []
    for name, value in zip(names, (labels, predictions)):
        if device != "cpu" and _on_device(value):
            raise InvalidArgumentError(
                f"{spec.name}: stacked evaluation takes host arrays; `{name}` is a device array. "
                f"Copy it to the host, or evaluate the batches one by one on the device.")
        a = as_array(value, name)
        arrays.append(np.moveaxis(a, _axis(batch_axis, a.ndim, name), 0) if a.ndim else a)
    w = as_array(weights, "weights")
    shared = w.ndim == 0  # one scalar weight for every batch
    if not shared:
        w = np.moveaxis(w, _axis(batch_axis, w.ndim, "weights"), 0)
    y, p = arrays
    for name, a in zip(names, arrays):
        if a.ndim == 0:
            raise InvalidArgumentError(f"{spec.name}: `{name}` is a scalar; stacked evaluation "
                                       f"needs axis `batch_axis` in every input.")
    count = p.shape[0]
    for name, a in ((names[0], y), ("weights", w)):
        if a.ndim and a.shape[0] != count:
            raise InvalidArgumentError(
                f"{spec.name}: `{name}` has {a.shape[0]} batches along `batch_axis` but "
                f"`{names[1]}` has {count}; every input needs the same number K.")
    if count == 0:
        raise InvalidArgumentError(f"{spec.name}: the batch axis has length 0 (no batches).")
    # one batch, prepared alone: its checks and its loss shape
    first, _ = spec._prepare(y[0], p[0], w if shared else w[0], dict(params))
    loss_shape = tuple(first.loss_shape)
    segment = math.prod(loss_shape)
    if loss_shape:  # concatenate the batches along their first axis
        rows = loss_shape[0]
        cw = w if shared else _stacked_weights(w, count, rows, len(loss_shape))
        y, p = split_leading(y), split_leading(p)
    else:  # one loss element per batch: the stacked arrays are K of them
        rows, cw = 1, w
    prepared, kernel_params = spec._prepare(y, p, cw, dict(params))
    expected = (count * rows,) + loss_shape[1:] if loss_shape else (count,)
    if tuple(prepared.loss_shape) != expected:
        raise InvalidArgumentError(
            f"{spec.name}: stacked evaluation concatenates the K batches along their first axis, "
            f"but with these arguments the loss of one batch has shape {loss_shape} and that of "
            f"the concatenation {tuple(prepared.loss_shape)}, not {expected}: the loss reduces "
            f"over its first axis (e.g. cosine_distance with axis=0). Evaluate the batches one "
            f"by one instead.")
    out = np.zeros((count, 4))
    if segment:
        if device == "cpu":
            _run_cpu(spec, prepared, kernel_params, segment, count, out)
        else:
            compute._cuda(device)  # a clear error for unknown devices / missing numba-cuda
            from .kernels import cuda_stacked
            cuda_stacked.run(spec, prepared, kernel_params, segment, count, out)
    out[:, 3] = segment
    return out, np.dtype(prepared.out_dtype)


def _on_device(value) -> bool:
    return hasattr(value, "__cuda_array_interface__") and not isinstance(value, np.ndarray)


def _run_cpu(spec, prepared, kernel_params, segment: int, count: int, out: np.ndarray) -> None:
    from . import kernels
    from .kernels import template as cpu_template
    y, p, weights, loss_shape, _, _, kd = prepared
    module = kernels.generated_module(spec, "template_stacked.py", prefix="stacked_")
    # a single call on one batch sums in one chunk below the threshold, else in chunks of
    # `chunk_rows` (both counted in inputs: a row-wise loss's loss element is a row of them)
    n = segment * count
    per_element = max(1, p.size // n)
    single_parallel = segment * per_element >= kernels.PARALLEL_THRESHOLD
    chunk = cpu_template.chunk_rows.py_func(p.size, n) if single_parallel else segment
    parallel = n * per_element >= kernels.PARALLEL_THRESHOLD
    run = module.run_stacked if parallel else module.run_stacked_serial
    sums = np.zeros((count, 3))
    with kernels.parallel_launch() if parallel else contextlib.nullcontext():
        kernels.call(run, y, p, weights_view(weights, loss_shape, kd),
                     tuple(float(v) for v in kernel_params), segment, count, chunk, sums)
    out[:, :3] = sums
