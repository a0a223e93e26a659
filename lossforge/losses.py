"""TensorFlow's ``tf.compat.v1.losses``, value for value, on fused Numba kernels.

Every function takes TF's argument names, order and defaults and returns:

* for ``reduction=Reduction.NONE``: the weighted losses ``L * W``, shaped like the losses;
* otherwise a numpy scalar. With ``S = sum(L * W)`` over the weights ``W`` broadcast to the
  losses' shape: ``SUM`` is ``S``; ``MEAN`` is ``S / sum(W)``; ``SUM_OVER_BATCH_SIZE`` is
  ``S / size(L)``; ``SUM_BY_NONZERO_WEIGHTS`` (the default) is ``S / count(W != 0)``. Every
  division returns 0 when its denominator is 0.

Every function also takes keyword-only ``device="cpu"``; ``device="cuda"`` runs the loss's
CUDA kernels (``pip install 'lossforge[cuda]'``; inputs may be device arrays).

``weights`` is a scalar, or has the losses' rank with every dim 1 or equal to theirs
(``[B, 1]`` per sample, ``[B, D]`` per element); a ``[B]`` vector for ``[B, D]`` losses is an
error, as in TF. Float32 inputs give float32 results, float64 give float64 (Python lists and
floats are float64, as in NumPy); integer and bool inputs compute as float32; sums accumulate
in float64 whatever the input. Each result is added to ``loss_collection`` of the active
`LossCollection` (see `lossforge.collection`).

Example:
  >>> import numpy as np, lossforge
  >>> lossforge.losses.mean_squared_error(np.float32([[0.0, 1.0]]), np.float32([[1.0, 1.0]]))
  np.float32(0.5)
  >>> lossforge.losses.absolute_difference([4., 1., 2., 3.], [0., 0., 0., 0.],
  ...                                      weights=[1., 0.5, 3., 9.])   # seed 000
  np.float64(9.375)
"""
from __future__ import annotations

import warnings

import numpy as np

from .builtins import BUILTINS, WEIGHTED_INPUT
from .collection import (LOSSES, active_collection, add_loss, get_losses, get_regularization_loss,
                         get_regularization_losses, get_total_loss)
from .inputs import as_array, check_weights_broadcast
from .reduction import Reduction, resolve_reduction

__all__ = ["Reduction", "absolute_difference", "add_loss", "compute_weighted_loss",
           "cosine_distance", "get_losses", "get_regularization_loss",
           "get_regularization_losses", "get_total_loss", "hinge_loss", "huber_loss", "log_loss",
           "mean_pairwise_squared_error", "mean_squared_error", "sigmoid_cross_entropy",
           "softmax_cross_entropy", "sparse_softmax_cross_entropy"]

_DEFAULT = Reduction.SUM_BY_NONZERO_WEIGHTS
_SPECS = {spec.name: spec for spec in BUILTINS}


def _loss(spec, labels, predictions, weights, scope, loss_collection, reduction, default_scope,
          device="cpu", **params):
    """``spec``'s weighted, reduced value, added to ``loss_collection`` as ``"<scope>/value"``."""
    if type(reduction) is not Reduction:
        reduction = resolve_reduction(reduction)
    result = spec(labels, predictions, weights, reduction, device, **params)
    scope = scope or default_scope
    if active_collection() is not None:  # (add_loss does nothing outside a collection)
        add_loss(result, loss_collection, name=f"{scope}/value")
    return result


def absolute_difference(labels, predictions, weights=1.0, scope=None, loss_collection=LOSSES,
                        reduction=_DEFAULT, *, device="cpu"):
    """Absolute difference ``L = |predictions - labels|``, weighted and reduced.

    Args:
      labels, predictions: arrays of one shape.
      weights: scalar or broadcastable to the losses' shape (see module docs).
      scope: name under which the result is collected (``"<scope>/value"``).
      loss_collection: collection the result is added to (None: not collected).
      reduction: a `Reduction` or its TF string value.
    """
    return _loss(_SPECS["absolute_difference"], labels, predictions, weights, scope,
                 loss_collection, reduction, "absolute_difference", device=device)


def mean_squared_error(labels, predictions, weights=1.0, scope=None, loss_collection=LOSSES,
                       reduction=_DEFAULT, *, device="cpu"):
    """Squared error ``L = (predictions - labels)**2``, weighted and reduced (arguments as
    `absolute_difference`)."""
    return _loss(_SPECS["mean_squared_error"], labels, predictions, weights, scope,
                 loss_collection, reduction, "mean_squared_error", device=device)


def huber_loss(labels, predictions, weights=1.0, delta=1.0, scope=None, loss_collection=LOSSES,
               reduction=_DEFAULT, *, device="cpu"):
    """Huber loss: with ``a = |predictions - labels|`` and ``q = min(a, delta)``,
    ``L = 0.5 q**2 + delta (a - q)``, i.e. ``0.5 a**2`` for ``a <= delta`` and
    ``0.5 delta**2 + delta (a - delta)`` beyond. ``delta`` is not validated (as TF: a negative
    delta gives negative losses)."""
    return _loss(_SPECS["huber_loss"], labels, predictions, weights, scope, loss_collection,
                 reduction, "huber_loss", delta=delta, device=device)


def log_loss(labels, predictions, weights=1.0, epsilon=1e-7, scope=None, loss_collection=LOSSES,
             reduction=_DEFAULT, *, device="cpu"):
    """Log loss on probabilities:
    ``L = -labels log(predictions + epsilon) - (1 - labels) log(1 - predictions + epsilon)``.

    As TF, nothing is clipped: predictions outside [0, 1] give NaN, and ``epsilon=0`` with a
    prediction of exactly 0 or 1 gives inf (or NaN where it meets a zero label term)."""
    return _loss(_SPECS["log_loss"], labels, predictions, weights, scope, loss_collection,
                 reduction, "log_loss", epsilon=epsilon, device=device)


def hinge_loss(labels, logits, weights=1.0, scope=None, loss_collection=LOSSES,
               reduction=_DEFAULT, *, device="cpu"):
    """Hinge loss ``L = max(0, 1 - (2 labels - 1) logits)``: labels in {0, 1} map to {-1, +1}
    (linearly, without validation, as TF)."""
    return _loss(_SPECS["hinge_loss"], labels, logits, weights, scope, loss_collection,
                 reduction, "hinge_loss", device=device)


def sigmoid_cross_entropy(multi_class_labels, logits, weights=1.0, label_smoothing=0,
                          scope=None, loss_collection=LOSSES, reduction=_DEFAULT, *,
                          pos_weight=None, device="cpu"):
    """Sigmoid cross-entropy ``L = max(x, 0) - x z + log1p(exp(-|x|))`` of ``logits`` x.

    With ``label_smoothing > 0`` the labels become ``z (1 - label_smoothing) + 0.5
    label_smoothing``. The result has the float dtype of ``logits`` (labels are cast to it).

    ``pos_weight`` (keyword-only, not in TF; PyTorch's ``BCEWithLogitsLoss(pos_weight=)``): a
    scalar or one value per class along the last axis (finite, >= 0) weighting the positive
    term, ``L = -[pos_weight z log sigmoid(x) + (1 - z) log(1 - sigmoid(x))]``, computed as
    ``(1 - z) softplus(x) + pos_weight z softplus(-x)`` with the labels smoothed first. It
    does not enter any reduction's denominator (those depend on ``weights`` only)."""
    return _loss(_SPECS["sigmoid_cross_entropy"], multi_class_labels, logits, weights, scope,
                 loss_collection, reduction, "sigmoid_cross_entropy_loss",
                 label_smoothing=label_smoothing, pos_weight=pos_weight, device=device)


def softmax_cross_entropy(onehot_labels, logits, weights=1.0, label_smoothing=0, scope=None,
                          loss_collection=LOSSES, reduction=_DEFAULT, *, class_weights=None,
                          device="cpu"):
    """Softmax cross-entropy over the last axis: ``L = -sum_k z_k log softmax(logits)_k``.

    Losses have shape ``logits.shape[:-1]``, so weights are scalar or of that shape (``[B]``
    for ``[B, K]`` logits). With ``label_smoothing > 0`` the labels become ``z (1 -
    label_smoothing) + label_smoothing / K``, ``K = logits.shape[-1]``.

    ``class_weights`` (keyword-only, not in TF; PyTorch's ``weight=`` with probability targets):
    ``K`` finite values, ``L = -sum_k w_k z'_k log softmax(logits)_k`` where ``z'`` are the
    *smoothed* labels (smoothing first, then class weights, as PyTorch). The sample weights are
    unchanged, so ``MEAN`` divides by ``sum(weights)``, like PyTorch's 'mean' for probability
    targets (the batch size); a term with coefficient ``w_k z'_k = 0`` is exactly 0.

    Example (seed 002):
      >>> logits = np.float32([[1, 2, 7], [3, 5, 2], [6, 1, 3], [8, 2, 0], [3, 6, 1]])
      >>> onehot = np.eye(3, dtype=np.float32)[[2, 1, 0, 0, 1]]
      >>> lossforge.losses.softmax_cross_entropy(onehot, logits)  # TF prints 0.0583602
      np.float32(0.058360245)
    """
    return _loss(_SPECS["softmax_cross_entropy"], onehot_labels, logits, weights, scope,
                 loss_collection, reduction, "softmax_cross_entropy_loss",
                 label_smoothing=label_smoothing, class_weights=class_weights, device=device)


def sparse_softmax_cross_entropy(labels, logits, weights=1.0, scope=None,
                                 loss_collection=LOSSES, reduction=_DEFAULT, *,
                                 class_weights=None, ignore_index=None, label_smoothing=None,
                                 device="cpu"):
    """Softmax cross-entropy with integer class labels: ``L = logsumexp(logits) - logits[label]``.

    ``labels`` has shape ``logits.shape[:-1]`` (a trailing 1 is squeezed); weights of one rank
    more than the labels have their last dim squeezed, so ``[B, 1]`` works. Labels outside
    ``[0, num_classes)`` raise `InvalidArgumentError` naming the first offending index.

    Keyword-only options of PyTorch's ``cross_entropy`` (not in TF):

    * ``class_weights``: ``K`` finite values; each sample's weight is multiplied by
      ``class_weights[label]``, so ``Reduction.MEAN`` is PyTorch's weighted mean
      ``sum(w[t] W L) / sum(w[t] W)``.
    * ``ignore_index``: an int; samples with that label get weight 0 whatever ``weights`` says
      (their logits are never read, and the label may lie outside ``[0, K)``, e.g. -100). A
      batch with every sample ignored gives 0 (not NaN) under every reduction.
    * ``label_smoothing`` in [0, 1]: the weighted loss of a sample becomes PyTorch's
      ``(1 - ls) w[t] nll_t + (ls / K) sum_k w[k] nll_k`` (``nll_k = logsumexp - logits_k``),
      while the denominators keep ``w[t]``. A sample whose label has class weight 0 counts for
      nothing (PyTorch would still add its smoothing term to the sum).

    Example:
      >>> logits = np.float64([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
      >>> lossforge.losses.sparse_softmax_cross_entropy(
      ...     [0, -100, 1], logits, ignore_index=-100, class_weights=[1.0, 3.0],
      ...     reduction=lossforge.Reduction.MEAN)   # (1 * 0.1269 + 3 * 0.6931) / (1 + 3)
      np.float64(0.551592388...)
    """
    return _loss(_SPECS["sparse_softmax_cross_entropy"], labels, logits, weights, scope,
                 loss_collection, reduction, "sparse_softmax_cross_entropy_loss",
                 class_weights=class_weights, ignore_index=ignore_index,
                 label_smoothing=label_smoothing, device=device)


def cosine_distance(labels, predictions, axis=None, weights=1.0, scope=None,
                    loss_collection=LOSSES, reduction=_DEFAULT, dim=None, *, device="cpu"):
    """Cosine distance along ``axis``: ``L = 1 - sum_axis(labels * predictions)``.

    Inputs are assumed unit-normalised (nothing is normalised). The losses keep ``axis`` with
    size 1 (TF's keepdims), so weights for ``[B, D]`` inputs with ``axis=1`` are scalar,
    ``[B, 1]`` or ``[1, 1]``. ``dim`` is the deprecated name of ``axis``."""
    if dim is not None and axis is None:
        warnings.warn("cosine_distance: `dim` is deprecated, use `axis`.", DeprecationWarning,
                      stacklevel=2)
    return _loss(_SPECS["cosine_distance"], labels, predictions, weights, scope, loss_collection,
                 reduction, "cosine_distance_loss", axis=axis, dim=dim, device=device)


def compute_weighted_loss(losses, weights=1.0, scope=None, loss_collection=LOSSES,
                          reduction=_DEFAULT, *, device="cpu"):
    """Weight and reduce precomputed ``losses`` (TF's ``compute_weighted_loss``).

    Unlike TF, integer losses are not truncated back to integers: they give float32.

    Example (seed 000): ``losses [4, 1, 2, 3]``, ``weights [1, 0.5, 3, 9]`` ->
    ``(4*1 + 1*0.5 + 2*3 + 3*9) / 4 = 9.375``.
    """
    return _loss(WEIGHTED_INPUT, losses, losses, weights, scope, loss_collection, reduction,
                 "weighted_loss", device=device)


def mean_pairwise_squared_error(labels, predictions, weights=1.0, scope=None,
                                loss_collection=LOSSES, *, device="cpu"):
    """Pairwise squared error within each sample, summed over the batch.

    For sample ``b`` with ``d = predictions - labels`` over its non-batch elements, ``SS_b =
    sum d**2``, ``S_b = sum d`` and ``n_b`` the count of non-zero broadcast weights in it:
    ``L_b = 2 SS_b / (n_b - 1) - 2 S_b**2 / (n_b (n_b - 1))`` (each division 0 when its
    denominator is <= 0), which is ``sum_{i<j} ((p_i - p_j) - (l_i - l_j))**2 / C(n_b, 2)``.
    The result is ``sum_b L_b sum(W_b)`` -- a weighted SUM over samples, not a mean (TF's
    documented semantics) -- or 0 when no weight is non-zero. There is no ``reduction``
    argument. 1-d inputs have one element per sample and give 0.
    """
    # TF's rule: the weights broadcast to the inputs' rank, which a Python scalar always does
    # (and it stays one: a repeated CUDA call replays a plan). Shapes only: device labels stay
    # on the device
    if type(weights) not in (float, int):
        weights = as_array(weights, "weights")
        check_weights_broadcast(weights, tuple(labels.shape) if hasattr(
            labels, "__cuda_array_interface__") else np.shape(as_array(labels, "labels")))
    result = _SPECS["mean_pairwise_squared_error"](labels, predictions, weights, Reduction.SUM,
                                                   device=device)
    add_loss(result, loss_collection, name=f"{scope or 'mean_pairwise_squared_error'}/value")
    return result



