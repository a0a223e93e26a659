"""``tf.contrib.losses`` (TF 1.x, deprecated 2016-12-30) with contrib's own semantics.

The per-element losses come from lossforge's core kernels (`lossforge.losses` with
``Reduction.NONE``); this module only reproduces what contrib did differently:

* **Argument order.** Predictions come first: ``fn(predictions, labels=None, weights=1.0,
  scope=None)``, and ``fn(logits, labels, weights=1.0, ...)`` for the cross-entropies.
  The deprecated keywords ``weight=`` (for ``weights``) and ``targets=`` (for ``labels``)
  still work with a `DeprecationWarning`; passing an old and its new name together is an
  `InvalidArgumentError`. So are the deprecated names ``sum_of_squares``
  (= `mean_squared_error`), ``sum_of_pairwise_squares`` (= `mean_pairwise_squared_error`)
  and ``log`` (= `log_loss`).
* **No reduction argument.** Every loss but `hinge_loss` is contrib's weighted mean of its
  per-element losses ``L`` (see `compute_weighted_loss`). With the weights ``W`` (a trailing
  dim of 1 squeezed) of rank ``K``::

      total       = sum(sum_{dims >= K}(L) * W)               # _scale_losses
      num_present = size(L) if W is a non-zero scalar, 0 for a zero scalar, otherwise
                    count(W != 0) * prod(L.shape[K:])          # _num_present
      loss        = total / num_present, 0 if num_present <= 0 # _safe_div

* **Weights broadcast over leading dims.** ``W`` is a scalar or a *prefix* ``[d0, ..., dK]``
  of the losses' shape, each dim 1 or equal: ``[B]`` for ``[B, D]`` losses is legal here (core
  rejects it), as are ``[B, 1]`` and ``[B, D]``. This equals core's SUM_BY_NONZERO_WEIGHTS for
  scalar, ``[B]``, ``[B, 1]`` and full weights; a weights dim of 1 that broadcasts (``[1, D]``
  for ``[B, D]``) is counted once in ``num_present``, not ``B`` times, exactly as contrib did.
  Weights of higher rank, or with a dim other than 1 or the losses', raise
  `InvalidArgumentError`.
* `hinge_loss` returns the unreduced, unweighted losses and does not collect them.
* `cosine_distance` reduces ``dim`` away (no keepdims), so ``[B]`` weights fit ``[B, D]`` inputs.
* `mean_pairwise_squared_error` divides by ``n**2`` (ordered pairs), not core's ``C(n, 2)``.
* `softmax_cross_entropy` smooths with ``K = shape[1]``; `sparse_softmax_cross_entropy`
  reshapes labels to ``[shape[0]]`` and squeezes its weights fully.
* Each reduced result is added to the active `lossforge.LossCollection` under
  ``"<scope or function>/value"``; the collection helpers are contrib's (`get_total_loss`
  has no ``scope``).

Sums accumulate in float64. Results are float64 for float64 inputs and float32 otherwise
(integer and bool inputs compute as float32), lossforge's rule.

Example (seed 000)::

    from lossforge.compat import contrib
    with lossforge.LossCollection():
        contrib.log(predictions, labels, weight=2.0)    # DeprecationWarning: log_loss, weights=
        contrib.sum_of_squares(predictions, labels)     # DeprecationWarning: mean_squared_error
        total = contrib.get_total_loss()
"""
from __future__ import annotations

import functools
import inspect
import math
import warnings

import numpy as np

from .. import collection
from .. import losses as core
from ..builtins import normalize_axis
from ..collection import LOSSES, add_loss, get_losses, get_regularization_losses
from ..errors import InvalidArgumentError
from ..inputs import as_array, as_float_param, check_same_shape, float_dtypes
from ..reduction import Reduction

__all__ = ["absolute_difference", "add_loss", "compute_weighted_loss", "cosine_distance",
           "get_losses", "get_regularization_losses", "get_total_loss", "hinge_loss", "log",
           "log_loss", "mean_pairwise_squared_error", "mean_squared_error",
           "sigmoid_cross_entropy", "softmax_cross_entropy", "sparse_softmax_cross_entropy",
           "sum_of_pairwise_squares", "sum_of_squares"]

_UNREDUCED = {"reduction": Reduction.NONE, "loss_collection": None}
_RENAMED = {"weight": "weights", "targets": "labels"}


# --- contrib's semantics, one helper each -----------------------------------------------------

def _renamed_args(fn):
    """Accept contrib's deprecated keywords ``weight=`` / ``targets=`` with a DeprecationWarning."""
    signature = inspect.signature(fn)
    renames = {old: new for old, new in _RENAMED.items() if new in signature.parameters}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # every deprecated keyword is taken out before binding the rest (``weight=`` and
        # ``targets=`` may come together)
        given = {old: kwargs.pop(old) for old in renames if old in kwargs}
        if given:
            bound = signature.bind_partial(*args, **kwargs).arguments
            for old, value in given.items():
                new = renames[old]
                if new in bound:
                    raise InvalidArgumentError(
                        f"{fn.__name__}: got both `{new}` and its deprecated alias `{old}`; "
                        f"pass `{new}` only.")
                warnings.warn(f"{fn.__name__}: the `{old}` argument is deprecated, use `{new}`.",
                              DeprecationWarning, stacklevel=2)
                kwargs[new] = value
        return fn(*args, **kwargs)
    return wrapper


def _deprecated_name(fn, old: str):
    """contrib's deprecated alias ``old`` of ``fn``: same call, plus a DeprecationWarning."""
    @functools.wraps(fn)
    def alias(*args, **kwargs):
        warnings.warn(f"`{old}` is deprecated, use `{fn.__name__}` (same arguments).",
                      DeprecationWarning, stacklevel=2)
        return fn(*args, **kwargs)
    alias.__name__ = alias.__qualname__ = old
    alias.__doc__ = f"Deprecated name of `{fn.__name__}`: same arguments and result.\n\n{fn.__doc__}"
    return alias


def _weights(weights, loss_shape: tuple[int, ...], squeeze: str | None = "last") -> np.ndarray:
    """Float64 weights checked by contrib's rule: a scalar or a prefix of ``loss_shape``.

    ``squeeze="last"`` drops a trailing dim of 1 from weights of rank > 1
    (``compute_weighted_loss``), ``"all"`` drops every dim of 1 (``sparse_softmax_cross_entropy``),
    None keeps the weights as given (``mean_pairwise_squared_error``).
    """
    given = as_array(weights, "weights")
    w = given.astype(np.float64)
    if squeeze == "all":
        w = np.squeeze(w)
    elif squeeze == "last" and w.ndim > 1 and w.shape[-1] == 1:
        w = w[..., 0]
    if w.ndim > len(loss_shape) or any(wd not in (1, ld) for wd, ld in zip(w.shape, loss_shape)):
        raise InvalidArgumentError(
            f"`weights` of shape {given.shape} cannot weight losses of shape {loss_shape}: contrib "
            f"weights are a scalar or a prefix [d0, ..., dK] of the losses' shape with each dim 1 "
            f"or equal to the losses' (e.g. {loss_shape[:1]} per sample, {loss_shape} per element).")
    return w


def _scale_losses(losses: np.ndarray, w: np.ndarray) -> float:
    """contrib's ``_scale_losses``: sum ``losses`` over the dims ``w`` lacks, times ``w``, summed."""
    return float(np.sum(losses.sum(axis=tuple(range(w.ndim, losses.ndim))) * w))


def _num_present(loss_shape: tuple[int, ...], w: np.ndarray, per_batch: bool = False):
    """contrib's ``_num_present``: the losses the weights make count, per sample or in total.

    A scalar weight counts ``prod(loss_shape[1:])`` per sample (0 if it is 0); otherwise each
    leading row counts its non-zero weights times ``prod(loss_shape[w.ndim:])``.
    """
    if w.ndim == 0:
        batch = loss_shape[0] if loss_shape else 1
        counts = np.full(batch, float(math.prod(loss_shape[1:]) if w != 0 else 0))
    else:
        rows = w.reshape(w.shape[0], math.prod(w.shape[1:]))
        counts = np.count_nonzero(rows, axis=1) * float(math.prod(loss_shape[w.ndim:]))
    return counts if per_batch else counts.sum()


def _safe_div(numerator, denominator) -> np.ndarray:
    """contrib's ``_safe_div``: elementwise ``numerator / denominator``, 0 where denominator <= 0."""
    num, den = np.broadcast_arrays(np.asarray(numerator, np.float64),
                                   np.asarray(denominator, np.float64))
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


def _collect(value, out: np.dtype, name: str):
    """The result in the output dtype, added to the active collection as ``"<name>/value"``."""
    result = out.type(value)
    add_loss(result, LOSSES, name=f"{name}/value")
    return result


def _weighted_mean(losses, weights, name: str, squeeze: str = "last"):
    """contrib's ``compute_weighted_loss``: ``_safe_div(_scale_losses, _num_present)``, collected."""
    values = as_array(losses, "losses")
    out, _ = float_dtypes(values)
    values = values.astype(np.float64)
    w = _weights(weights, values.shape, squeeze)
    return _collect(_safe_div(_scale_losses(values, w), _num_present(values.shape, w)), out, name)


# --- the losses -------------------------------------------------------------------------------

@_renamed_args
def compute_weighted_loss(losses, weights=1.0, scope=None):
    """contrib's weighted mean of precomputed ``losses`` (shape ``[B, d1, ..., dN]``).

    ``loss = sum(sum_{dims >= K}(losses) * W) / num_present`` (0 if ``num_present <= 0``), with
    ``W`` the weights (scalar or ``[B, d1, ..., dK]``, a trailing 1 squeezed) and
    ``num_present`` the non-zero weights times ``prod(losses.shape[K:])`` (``size(losses)``
    for a non-zero scalar). See the module docs.

    Example (seed 000): losses ``[4, 1, 2, 3]``, weights ``[1, 0.5, 3, 9]`` ->
    ``(4*1 + 1*0.5 + 2*3 + 3*9) / 4 = 9.375``.
    """
    return _weighted_mean(losses, weights, scope or "weighted_loss")


@_renamed_args
def absolute_difference(predictions, labels=None, weights=1.0, scope=None):
    """Absolute difference ``L = |predictions - labels|``, contrib-weighted mean.

    Args:
      predictions, labels: arrays of one shape ``[B, d1, ..., dN]``.
      weights: a scalar, ``[B]``, ``[B, 1]``, ``[B, d1, ..., dK]`` or the full shape.
      scope: the result is collected as ``"<scope>/value"``.
    """
    return _weighted_mean(core.absolute_difference(labels, predictions, **_UNREDUCED), weights,
                          scope or "absolute_difference")


@_renamed_args
def mean_squared_error(predictions, labels=None, weights=1.0, scope=None):
    """Squared error ``L = (predictions - labels)**2``, contrib-weighted mean (arguments as
    `absolute_difference`). Deprecated name: ``sum_of_squares``."""
    return _weighted_mean(core.mean_squared_error(labels, predictions, **_UNREDUCED), weights,
                          scope or "mean_squared_error")


@_renamed_args
def log_loss(predictions, labels=None, weights=1.0, epsilon=1e-7, scope=None):
    """Log loss ``L = -labels log(predictions + epsilon) - (1 - labels) log(1 - predictions +
    epsilon)``, contrib-weighted mean. Nothing is clipped. Deprecated name: ``log``."""
    return _weighted_mean(core.log_loss(labels, predictions, epsilon=epsilon, **_UNREDUCED),
                          weights, scope or "log_loss")


@_renamed_args
def hinge_loss(logits, labels=None, scope=None):
    """Hinge loss ``L = max(0, 1 - (2 labels - 1) logits)`` per element, **unreduced and
    unweighted** (shape of ``logits``), and not added to any collection: contrib's form."""
    return core.hinge_loss(labels, logits, **_UNREDUCED)


@_renamed_args
def cosine_distance(predictions, labels=None, dim=None, weights=1.0, scope=None):
    """Cosine distance ``L = 1 - sum_dim(predictions * labels)`` with ``dim`` reduced away.

    Inputs are assumed unit-normalised. The losses have the input shape without ``dim`` (no
    keepdims), so ``[B]`` weights fit ``[B, D]`` inputs with ``dim=1``; ``dim`` is required.
    """
    if dim is None:
        raise InvalidArgumentError(
            "cosine_distance: you must specify `dim`, the axis along which the distance is computed.")
    y = as_array(labels, "labels")
    if y.ndim:  # (rank 0 is refused by the core function, naming the inputs)
        dim = normalize_axis(dim, y.ndim, "dim")  # errors name contrib's argument, `dim`
    losses = core.cosine_distance(labels, predictions, axis=dim, **_UNREDUCED)
    return _weighted_mean(np.squeeze(losses, axis=dim), weights, scope or "cosine_distance_loss")


@_renamed_args
def mean_pairwise_squared_error(predictions, labels=None, weights=1.0, scope=None):
    """Pairwise squared error within each sample, contrib's normalisation, summed over the batch.

    With ``d = predictions - labels`` over sample ``b``'s non-batch elements, ``SS_b = sum d**2``,
    ``S_b = sum d`` and ``n_b`` contrib's per-sample count of present elements (``prod(shape[1:])``
    for a non-zero scalar weight, that times the 0/1 ``w_b != 0`` for ``[B]`` weights)::

        L_b  = 2 SS_b / n_b - 2 S_b**2 / n_b**2        # each division 0 when n_b == 0
             = sum_{i, j} ((p_i - p_j) - (l_i - l_j))**2 / n_b**2   (ordered pairs)
        loss = sum_b w_b L_b   (w L summed for a scalar w), or 0 if sum_b n_b == 0

    Core divides by ``C(n, 2)`` instead. Weights are a scalar or ``[B]``; contrib applied them to
    the per-sample ``L_b`` without squeezing, so ``[B, 1]`` and per-element weights raise.
    Deprecated name: ``sum_of_pairwise_squares``.
    """
    p = as_array(predictions, "predictions")
    y = as_array(labels, "labels")
    check_same_shape(p, y, "predictions", "labels")
    out, _ = float_dtypes(y, p)
    d = np.atleast_1d(p.astype(np.float64) - y.astype(np.float64))
    w = _weights(weights, d.shape[:1], squeeze=None)
    rows = d.reshape(d.shape[0], math.prod(d.shape[1:]))
    n = _num_present(d.shape, w, per_batch=True)
    term1 = 2.0 * _safe_div(np.sum(rows * rows, axis=1), n)
    term2 = 2.0 * _safe_div(np.sum(rows, axis=1) ** 2, n * n)
    total = _scale_losses(term1 - term2, w) if n.sum() > 0 else 0.0
    return _collect(total, out, scope or "mean_pairwise_squared_error")


@_renamed_args
def sigmoid_cross_entropy(logits, multi_class_labels, weights=1.0, label_smoothing=0, scope=None):
    """Sigmoid cross-entropy ``L = max(x, 0) - x z + log(1 + exp(-|x|))``, contrib-weighted mean.

    With ``label_smoothing > 0`` the labels become ``z (1 - label_smoothing) + 0.5
    label_smoothing``. Weights: scalar, ``[B]``, ``[B, 1]`` or ``[B, C]``."""
    losses = core.sigmoid_cross_entropy(multi_class_labels, logits,
                                        label_smoothing=label_smoothing, **_UNREDUCED)
    return _weighted_mean(losses, weights, scope or "sigmoid_cross_entropy_loss")


@_renamed_args
def softmax_cross_entropy(logits, onehot_labels, weights=1.0, label_smoothing=0, scope=None):
    """Softmax cross-entropy ``L = -sum_k z_k log softmax(logits)_k`` per row, contrib-weighted mean.

    With ``label_smoothing > 0`` the labels become ``z (1 - label_smoothing) + label_smoothing /
    K`` with contrib's ``K = onehot_labels.shape[1]`` (core uses ``shape[-1]``; they differ for
    inputs of rank > 2). Weights: scalar, ``[B]`` or ``[B, 1]``; ``[B, C]`` raises.
    """
    smoothing = as_float_param(label_smoothing, "label_smoothing")
    if smoothing > 0:
        z = as_array(onehot_labels, "onehot_labels")
        if z.ndim < 2:
            raise InvalidArgumentError(
                f"softmax_cross_entropy: label smoothing divides by onehot_labels.shape[1], but "
                f"`onehot_labels` has shape {z.shape}; pass [batch_size, num_classes] labels.")
        if z.shape[1]:  # (no classes: nothing to smooth, and no division by zero)
            onehot_labels = z * (1.0 - smoothing) + smoothing / z.shape[1]
    losses = core.softmax_cross_entropy(onehot_labels, logits, **_UNREDUCED)
    return _weighted_mean(losses, weights, scope or "softmax_cross_entropy_loss")


@_renamed_args
def sparse_softmax_cross_entropy(logits, labels, weights=1.0, scope=None):
    """Sparse softmax cross-entropy ``L = logsumexp(logits) - logits[label]``, contrib-weighted mean.

    ``labels`` (int, ``[B]`` or ``[B, 1]``) are reshaped to ``[B]`` and ``logits`` are
    ``[B, num_classes]``; the weights are squeezed fully, so scalar, ``[B]``, ``[B, 1]`` work.
    """
    lab = as_array(labels, "labels")
    if lab.ndim == 0 or lab.size != lab.shape[0]:
        raise InvalidArgumentError(
            f"`labels` of shape {lab.shape} cannot be reshaped to [batch_size]: contrib's "
            f"sparse_softmax_cross_entropy takes one label per sample, shape [B] or [B, 1].")
    losses = core.sparse_softmax_cross_entropy(lab.reshape(lab.shape[0]), logits, **_UNREDUCED)
    return _weighted_mean(losses, weights, scope or "sparse_softmax_cross_entropy_loss",
                          squeeze="all")


def get_total_loss(add_regularization_losses=True, name="total_loss"):
    """The sum of the active collection's losses, plus its regularization losses by default.

    contrib's signature (no ``scope``); raises `InvalidArgumentError` outside a
    `lossforge.LossCollection` block or when nothing was collected.
    """
    return collection.get_total_loss(add_regularization_losses, name)


sum_of_squares = _deprecated_name(mean_squared_error, "sum_of_squares")
sum_of_pairwise_squares = _deprecated_name(mean_pairwise_squared_error, "sum_of_pairwise_squares")
log = _deprecated_name(log_loss, "log")
