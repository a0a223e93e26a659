"""The built-in losses: TensorFlow's, each one `LossSpec` over its formula in `formulas`.

Row-wise losses bring a ``prepare`` that implements TF's shape rules (class axis last,
sparse label squeezing, cosine's kept axis); elementwise ones use the default.
"""
from __future__ import annotations

import math

import numpy as np

from . import formulas as F
from .errors import InvalidArgumentError, InvalidTypeError
from .inputs import as_array, check_same_shape, check_weights_broadcast, float_dtypes, for_kernel
from .registry import LossSpec, Param, Prepared, register

__all__ = ["BUILTINS", "WEIGHTED_INPUT", "check_sparse_labels", "normalize_axis"]

_SMOOTHING = Param("label_smoothing", 0.0, doc="labels are smoothed when > 0 (TF: no smoothing "
                                               "for values <= 0)")


def normalize_axis(axis, ndim: int, name: str) -> int:
    """A valid non-negative axis for ``ndim`` dims, or an error naming ``name``."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise InvalidTypeError(f"`{name}` must be an int axis; got {type(axis).__name__} {axis!r}.")
    if not -ndim <= axis < ndim:
        raise InvalidArgumentError(
            f"`{name}`={axis} is out of range for inputs of rank {ndim}: use an axis in "
            f"[{-ndim}, {ndim - 1}].")
    return int(axis) % ndim


def _prepare_softmax(spec, labels, predictions, weights) -> Prepared:
    """One-hot (or soft) labels and logits of one shape; the class axis is the last."""
    z = as_array(labels, spec.inputs[0])
    x = as_array(predictions, "logits")
    check_same_shape(x, z, "logits", spec.inputs[0])
    if x.ndim == 0:
        raise InvalidArgumentError("`logits` must have at least one dimension (the class axis); "
                                   "got a scalar.")
    w = as_array(weights, "weights")
    loss_shape = x.shape[:-1]
    check_weights_broadcast(w, loss_shape)
    out, kd = float_dtypes(x)
    rows_classes = (math.prod(loss_shape), x.shape[-1])
    return Prepared(for_kernel(z, kd, rows_classes), for_kernel(x, kd, rows_classes), w,
                    loss_shape, x.shape, out, kd)


def check_sparse_labels(labels: np.ndarray, logits: np.ndarray) -> None:
    """Sparse labels must be integers of shape ``logits.shape[:-1]`` within ``[0, classes)``."""
    if labels.dtype.kind not in "iu":
        raise InvalidTypeError(
            f"`labels` must be integer class indices (int32/int64); got dtype {labels.dtype}. "
            f"Convert one-hot labels with argmax, or use softmax_cross_entropy for them.")
    if logits.ndim == 0 or labels.ndim != logits.ndim - 1:
        raise InvalidArgumentError(
            f"`labels.shape.rank` must equal `logits.shape.rank - 1`; got labels.shape="
            f"{labels.shape} and logits.shape={logits.shape}.")
    if labels.shape != logits.shape[:-1]:
        raise InvalidArgumentError(
            f"`labels` must have shape logits.shape[:-1]={logits.shape[:-1]}; got {labels.shape}.")
    classes = logits.shape[-1]
    if labels.size:
        bad = (labels < 0) | (labels >= classes)
        if bad.any():
            first = np.unravel_index(int(np.flatnonzero(bad)[0]), labels.shape)
            raise InvalidArgumentError(
                f"Received a label value of {labels[first]} at index {tuple(map(int, first))} of "
                f"`labels`, which is outside the valid range of [0, {classes}): logits have "
                f"{classes} classes.")


def _prepare_sparse(spec, labels, predictions, weights) -> Prepared:
    """Integer labels of shape ``logits.shape[:-1]``, with TF's squeezing of trailing 1s."""
    lab = as_array(labels, "labels")
    x = as_array(predictions, "logits")
    w = as_array(weights, "weights")
    # TF's _remove_squeezable_dimensions(expected_rank_diff=1)
    if x.ndim - lab.ndim == 0 and lab.ndim and lab.shape[-1] == 1:
        lab = lab[..., 0]
    elif x.ndim - lab.ndim == 2 and x.shape[-1] == 1:
        x = x[..., 0]
    if w.ndim - lab.ndim == 1:
        if w.shape[-1] != 1:
            raise InvalidArgumentError(
                f"`weights` of shape {w.shape} has one dim more than `labels` {lab.shape}, so its "
                f"last dim is squeezed, but that dim is {w.shape[-1]}, not 1.")
        w = w[..., 0]
    check_sparse_labels(lab, x)
    check_weights_broadcast(w, lab.shape)
    out, kd = float_dtypes(x)
    rows = math.prod(lab.shape)
    return Prepared(np.ascontiguousarray(lab, dtype=np.int64).reshape(rows),
                    for_kernel(x, kd, (rows, x.shape[-1])), w, lab.shape, x.shape, out, kd)


def _prepare_cosine(spec, labels, predictions, weights, axis=None, dim=None) -> Prepared:
    """Inputs of one shape reduced along ``axis``, which the losses keep with size 1."""
    if dim is not None:
        if axis is not None:
            raise InvalidArgumentError("Cannot specify both 'dim' and 'axis'.")
        axis = dim
    if axis is None:
        raise InvalidArgumentError("You must specify argument `axis`.")
    y = as_array(labels, "labels")
    p = as_array(predictions, "predictions")
    check_same_shape(p, y, "predictions", "labels")
    if y.ndim == 0:
        raise InvalidArgumentError("cosine_distance needs inputs of rank >= 1 to reduce over `axis`.")
    axis = normalize_axis(axis, y.ndim, "axis")
    loss_shape = y.shape[:axis] + (1,) + y.shape[axis + 1:]
    w = as_array(weights, "weights")
    check_weights_broadcast(w, loss_shape)
    out, kd = float_dtypes(y, p)
    shape3 = (math.prod(y.shape[:axis]), y.shape[axis], math.prod(y.shape[axis + 1:]))
    return Prepared(for_kernel(y, kd, shape3), for_kernel(p, kd, shape3), w, loss_shape, p.shape,
                    out, kd)


def _softmax_example(rng, batch, classes):
    return np.eye(classes)[rng.integers(0, classes, size=batch)], 3 * rng.normal(size=(batch, classes)), {}


def _sparse_example(rng, batch, classes):
    return rng.integers(0, classes, size=batch), 3 * rng.normal(size=(batch, classes)), {}


def _cosine_example(rng, batch, classes):
    y, p = rng.normal(size=(2, batch, classes))
    return (y / np.linalg.norm(y, axis=1, keepdims=True),
            p / np.linalg.norm(p, axis=1, keepdims=True), {"axis": 1})


BUILTINS = [
    LossSpec("absolute_difference", F.absolute_difference, F.absolute_difference_grad,
             aliases=("mae", "l1_loss"), builtin=True),
    LossSpec("mean_squared_error", F.mean_squared_error, F.mean_squared_error_grad,
             aliases=("mse", "sum_of_squares"), builtin=True),
    LossSpec("huber_loss", F.huber_loss, F.huber_loss_grad, params=(Param("delta", 1.0),),
             aliases=("huber",), builtin=True),
    LossSpec("log_loss", F.log_loss, F.log_loss_grad, params=(Param("epsilon", 1e-7),),
             label_range=(0.0, 1.0), prediction_range=(0.0, 1.0), builtin=True),
    LossSpec("hinge_loss", F.hinge_loss, F.hinge_loss_grad, inputs=("labels", "logits"),
             aliases=("hinge",), label_range=(0.0, 1.0), builtin=True),
    LossSpec("sigmoid_cross_entropy", F.sigmoid_cross_entropy, F.sigmoid_cross_entropy_grad,
             params=(_SMOOTHING,), inputs=("multi_class_labels", "logits"),
             aliases=("sigmoid_ce",), label_range=(0.0, 1.0), builtin=True),
    LossSpec("softmax_cross_entropy", F.softmax_cross_entropy, F.softmax_cross_entropy_grad,
             params=(_SMOOTHING,), kind="rowwise", inputs=("onehot_labels", "logits"),
             aliases=("softmax_ce",), prepare=_prepare_softmax,
             doc="``sum_k z_k (logsumexp(x) - x_k)`` over the last axis; labels smoothed to "
                 "``z (1 - ls) + ls / K`` if ls > 0.", example=_softmax_example,
             builtin=True),
    LossSpec("sparse_softmax_cross_entropy", F.sparse_softmax_cross_entropy,
             F.sparse_softmax_cross_entropy_grad, kind="rowwise", inputs=("labels", "logits"),
             aliases=("sparse_softmax_ce",), prepare=_prepare_sparse,
             doc="``logsumexp(x) - x[label]`` over the last axis, integer labels.",
             example=_sparse_example, builtin=True),
    LossSpec("cosine_distance", F.cosine_distance, F.cosine_distance_grad, kind="rowwise",
             prepare=_prepare_cosine, example=_cosine_example, builtin=True,
             doc="``1 - sum_axis(y * p)`` (inputs unit-normalised), keeping ``axis`` with size 1."),
]
for _spec in BUILTINS:
    register(_spec)

#: `compute_weighted_loss`'s "loss": its input itself (one input, so not in the registry).
WEIGHTED_INPUT = LossSpec("compute_weighted_loss", F.weighted_input, F.weighted_input_grad,
                          inputs=("losses", "losses"), builtin=True)
