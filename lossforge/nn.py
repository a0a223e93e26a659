"""Per-example cross-entropies on logits: ``tf.nn.*_cross_entropy_with_logits``.

These return the unreduced, unweighted loss (one value per element or per row) in the
dtype of ``logits``; the reduced, weighted forms are in `lossforge.losses`. All use the
numerically stable forms: ``max(x, 0) - x z + log1p(exp(-|x|))`` for the sigmoid and a
max-shifted log-sum-exp for the softmax, accumulated in float64.
"""
from __future__ import annotations

import math

import numpy as np

from . import compute
from .errors import InvalidArgumentError, InvalidTypeError
from .inputs import as_array, check_same_shape, float_dtypes, for_kernel
from .reduction import Reduction

__all__ = ["sigmoid_cross_entropy_with_logits", "softmax_cross_entropy_with_logits",
           "sparse_softmax_cross_entropy_with_logits"]

_UNIT = np.ones((), dtype=np.float64)


def sigmoid_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """Elementwise ``max(x, 0) - x z + log1p(exp(-|x|))`` for logits ``x`` and labels ``z``.

    Args:
      labels: targets ``z`` in [0, 1], the shape of ``logits``.
      logits: real-valued logits ``x``.
      name: accepted for TensorFlow compatibility; unused.

    Returns:
      An array shaped like ``logits``, in its float dtype (float32 for integer logits).

    Example:
      >>> lossforge.nn.sigmoid_cross_entropy_with_logits(labels=[1.0, 0.0], logits=np.float32([0, 0]))
      array([0.6931472, 0.6931472], dtype=float32)
    """
    z, x, out, kd = _matching_labels_logits(labels, logits, "labels")
    n = x.size
    return compute.weighted_loss("sigmoid_cross_entropy", for_kernel(z, kd, (n,)),
                                 for_kernel(x, kd, (n,)), _UNIT, x.shape, (0.0,),
                                 Reduction.NONE, out, kd)


def softmax_cross_entropy_with_logits(labels, logits, axis=-1, name=None):
    """Per-row ``sum_k z_k (logsumexp(x) - x_k)`` = ``-sum_k z_k log softmax(x)_k`` over ``axis``.

    Args:
      labels: a distribution over classes per row (e.g. one-hot), the shape of ``logits``.
      logits: unnormalised log-probabilities.
      axis: the class axis (default the last).
      name: accepted for TensorFlow compatibility; unused.

    Returns:
      ``logits.shape`` without ``axis``, in the float dtype of ``logits``.

    Example (seed 002):
      >>> logits = [[1, 2, 7], [3, 5, 2], [6, 1, 3], [8, 2, 0], [3, 6, 1]]
      >>> onehot = np.eye(3)[[2, 1, 0, 0, 1]]
      >>> lossforge.nn.softmax_cross_entropy_with_logits(onehot, np.float32(logits))
      array([0.00917448, 0.16984601, 0.05498524, 0.00281026, 0.05498524], dtype=float32)

      TF prints ``[0.00917445, 0.16984604, 0.05498521, 0.00281022, 0.05498521]``: it reduces
      in float32, lossforge in float64 (the exact values round to lossforge's).
    """
    z, x, out, kd = _matching_labels_logits(labels, logits, "labels")
    if x.ndim == 0:
        raise InvalidArgumentError("`logits` must have at least one dimension (the class axis); "
                                   "got a scalar.")
    axis = normalize_axis(axis, x.ndim, "axis")
    if axis != x.ndim - 1:
        x = np.moveaxis(x, axis, -1)
        z = np.moveaxis(z, axis, -1)
    return softmax_rows(z, x, 0.0, Reduction.NONE, _UNIT, out, kd)


def sparse_softmax_cross_entropy_with_logits(labels=None, logits=None, name=None):
    """Per-row ``logsumexp(x) - x[label]`` for integer class ``labels``.

    Args:
      labels: int class indices of shape ``logits.shape[:-1]``, each in ``[0, num_classes)``.
      logits: unnormalised log-probabilities ``[..., num_classes]``.
      name: accepted for TensorFlow compatibility; unused.

    Returns:
      An array of ``labels.shape`` in the float dtype of ``logits``.

    Raises:
      InvalidArgumentError: a label outside ``[0, num_classes)`` (the message gives its index),
        or ``labels.shape != logits.shape[:-1]``.
      InvalidTypeError: labels that are not integers.
    """
    lab = as_array(labels, "labels")
    x = as_array(logits, "logits")
    check_sparse_labels(lab, x)
    out, kd = float_dtypes(x)
    return sparse_rows(lab, x, Reduction.NONE, _UNIT, out, kd)


# --- shared with lossforge.losses -------------------------------------------------------------

def _matching_labels_logits(labels, logits, labels_name):
    z = as_array(labels, labels_name)
    x = as_array(logits, "logits")
    check_same_shape(x, z, "logits", labels_name)
    out, kd = float_dtypes(x)
    return z, x, out, kd


def normalize_axis(axis, ndim: int, name: str) -> int:
    """A valid non-negative axis for ``ndim`` dims, or an error naming ``name``."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise InvalidTypeError(f"`{name}` must be an int axis; got {type(axis).__name__} {axis!r}.")
    if not -ndim <= axis < ndim:
        raise InvalidArgumentError(
            f"`{name}`={axis} is out of range for inputs of rank {ndim}: use an axis in "
            f"[{-ndim}, {ndim - 1}].")
    return int(axis) % ndim


def softmax_rows(z, x, label_smoothing: float, reduction, weights, out, kd):
    """Softmax cross-entropy over the last axis of ``x`` (``z`` of the same shape)."""
    loss_shape = x.shape[:-1]
    rows, classes = math.prod(loss_shape), x.shape[-1]
    return compute.weighted_loss("softmax_cross_entropy", for_kernel(z, kd, (rows, classes)),
                                 for_kernel(x, kd, (rows, classes)), weights, loss_shape,
                                 (label_smoothing,), reduction, out, kd)


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


def sparse_rows(labels, x, reduction, weights, out, kd):
    """Sparse softmax cross-entropy of checked integer ``labels`` against ``x``."""
    loss_shape = labels.shape
    rows, classes = math.prod(loss_shape), x.shape[-1]
    lab = np.ascontiguousarray(labels, dtype=np.int64).reshape(rows)
    return compute.weighted_loss("sparse_softmax_cross_entropy", lab,
                                 for_kernel(x, kd, (rows, classes)), weights, loss_shape,
                                 (0.0,), reduction, out, kd)
