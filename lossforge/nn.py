"""Per-example cross-entropies on logits: ``tf.nn.*_cross_entropy_with_logits``.

These return the unreduced, unweighted loss (one value per element or per row) in the
dtype of ``logits``; the reduced, weighted forms are in `lossforge.losses`. All use the
numerically stable forms: ``max(x, 0) - x z + log1p(exp(-|x|))`` for the sigmoid and a
max-shifted log-sum-exp for the softmax, accumulated in float64.
"""
from __future__ import annotations

import numpy as np

from .builtins import BUILTINS, check_sparse_labels, normalize_axis
from .inputs import as_array, check_same_shape
from .reduction import Reduction

__all__ = ["sigmoid_cross_entropy_with_logits", "softmax_cross_entropy_with_logits",
           "sparse_softmax_cross_entropy_with_logits"]

_SPECS = {spec.name: spec for spec in BUILTINS}


def _per_example(name: str, labels, logits):
    return _SPECS[name](labels, logits, 1.0, Reduction.NONE)


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
    z = as_array(labels, "labels")  # errors name this function's arguments
    x = as_array(logits, "logits")
    check_same_shape(x, z, "logits", "labels")
    return _per_example("sigmoid_cross_entropy", z, x)


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
      array([0.00917448, 0.16984601, 0.05498523, 0.00281026, 0.05498523],
            dtype=float32)
      >>> lossforge.nn.softmax_cross_entropy_with_logits(onehot, np.float64(logits))
      array([0.00917448, 0.16984602, 0.05498524, 0.00281026, 0.05498524])

      TF prints ``[0.00917445, 0.16984604, 0.05498521, 0.00281022, 0.05498521]``: it sums each
      row in float32; lossforge computes float32 logits' exps in float32 (within 1 ulp) and sums
      them in float64, float64 logits wholly in float64.
    """
    z = as_array(labels, "labels")
    x = as_array(logits, "logits")
    check_same_shape(x, z, "logits", "labels")
    if x.ndim:
        axis = normalize_axis(axis, x.ndim, "axis")
        if axis != x.ndim - 1:
            x, z = np.moveaxis(x, axis, -1), np.moveaxis(z, axis, -1)
    return _per_example("softmax_cross_entropy", z, x)


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
    check_sparse_labels(lab, x)  # no squeezing of trailing 1s here, unlike the losses API
    return _per_example("sparse_softmax_cross_entropy", lab, x)
