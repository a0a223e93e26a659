"""The built-in losses: TensorFlow's, each one `LossSpec` over its formula in `formulas`.

Row-wise losses bring a ``prepare`` that implements TF's shape rules (class axis last,
sparse label squeezing, cosine's kept axis); elementwise ones use the default.

After TF's losses come the extras users expect from PyTorch/Keras (``log_cosh``, ``poisson``,
``kl_divergence``, ``focal``, ``smooth_l1``, ``squared_hinge``, ``binary_cross_entropy``), and the
three cross-entropies take PyTorch's options as keywords:

* ``sparse_softmax_cross_entropy(..., class_weights=, ignore_index=, label_smoothing=)``,
* ``softmax_cross_entropy(..., class_weights=)``,
* ``sigmoid_cross_entropy(..., pos_weight=)``.

A call that sets one of them runs an *extended* spec (`OptionsSpec.extended`) with its own
formula, so TF's formulas, kernels and fingerprints are untouched. Elementwise and row-wise
formulas only see scalars or the two input arrays, so the extended ``prepare`` functions pack
the per-class arrays into the labels array the formula reads: the class weights as one extra
row after the one-hot labels, or after the flat sparse labels; the ``pos_weight`` vector after
the flat sigmoid labels. Sparse class weights and ``ignore_index`` also become per-sample
weights (``weights * class_weights[label]``, 0 where ignored), which is what makes
``Reduction.MEAN`` PyTorch's weighted mean ``sum / sum of effective weights``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import formulas as F
from .errors import InvalidArgumentError, InvalidTypeError
from .inputs import as_array, check_same_shape, check_weights_broadcast, float_dtypes, for_kernel
from .reduction import Reduction
from .registry import LossSpec, Param, Prepared, prepare_elementwise, register

__all__ = ["BUILTINS", "EXTENDED", "OptionsSpec", "WEIGHTED_INPUT", "check_sparse_labels",
           "normalize_axis"]

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


def _softmax_inputs(spec, labels, predictions, weights):
    z = as_array(labels, spec.inputs[0])
    x = as_array(predictions, "logits")
    check_same_shape(x, z, "logits", spec.inputs[0])
    if x.ndim == 0:
        raise InvalidArgumentError("`logits` must have at least one dimension (the class axis); "
                                   "got a scalar.")
    w = as_array(weights, "weights")
    loss_shape = x.shape[:-1]
    check_weights_broadcast(w, loss_shape)
    return z, x, w, loss_shape


def _prepare_softmax(spec, labels, predictions, weights, class_weights=None) -> Prepared:
    """One-hot (or soft) labels and logits of one shape; the class axis is the last."""
    _not_routed(spec, class_weights=class_weights)
    z, x, w, loss_shape = _softmax_inputs(spec, labels, predictions, weights)
    out, kd = float_dtypes(x)
    rows_classes = (math.prod(loss_shape), x.shape[-1])
    return Prepared(for_kernel(z, kd, rows_classes), for_kernel(x, kd, rows_classes), w,
                    loss_shape, x.shape, out, kd)


def _prepare_softmax_extended(spec, labels, predictions, weights, class_weights=None) -> Prepared:
    """As `_prepare_softmax`, the labels getting one more row: the class weights (else ones)."""
    z, x, w, loss_shape = _softmax_inputs(spec, labels, predictions, weights)
    classes = x.shape[-1]
    cw = check_class_weights(class_weights, classes, spec.name)
    out, kd = float_dtypes(x)
    rows = math.prod(loss_shape)
    packed = np.empty((rows + 1, classes), dtype=kd)
    packed[:rows] = np.reshape(z, (rows, classes))  # cast to the logits' dtype, as TF's labels
    packed[rows] = 1.0 if cw is None else cw
    return Prepared(packed, for_kernel(x, kd, (rows, classes)), w, loss_shape, x.shape, out, kd)


def check_sparse_labels(labels: np.ndarray, logits: np.ndarray, ignore_index=None) -> None:
    """Sparse labels must be integers of shape ``logits.shape[:-1]`` within ``[0, classes)``.

    Labels equal to ``ignore_index`` (if given) are exempt from the range check.
    """
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
        if ignore_index is not None:
            bad &= labels != ignore_index
        if bad.any():
            first = np.unravel_index(int(np.flatnonzero(bad)[0]), labels.shape)
            raise InvalidArgumentError(
                f"Received a label value of {labels[first]} at index {tuple(map(int, first))} of "
                f"`labels`, which is outside the valid range of [0, {classes}): logits have "
                f"{classes} classes.")


def _sparse_inputs(labels, predictions, weights):
    """Labels, logits and weights after TF's squeezing of trailing 1s (not yet range-checked),
    and the logits' shape as given (the gradient's shape)."""
    lab = as_array(labels, "labels")
    x = as_array(predictions, "logits")
    w = as_array(weights, "weights")
    given = x.shape
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
    return lab, x, w, given


def _prepare_sparse(spec, labels, predictions, weights, class_weights=None, ignore_index=None,
                    label_smoothing=None) -> Prepared:
    """Integer labels of shape ``logits.shape[:-1]``, with TF's squeezing of trailing 1s."""
    _not_routed(spec, class_weights=class_weights, ignore_index=ignore_index,
                label_smoothing=label_smoothing)
    lab, x, w, given = _sparse_inputs(labels, predictions, weights)
    check_sparse_labels(lab, x)
    check_weights_broadcast(w, lab.shape)
    out, kd = float_dtypes(x)
    rows = math.prod(lab.shape)
    return Prepared(for_kernel(lab, np.dtype(np.int64), (rows,)),
                    for_kernel(x, kd, (rows, x.shape[-1])), w, lab.shape, given, out, kd)


def _prepare_sparse_extended(spec, labels, predictions, weights, class_weights=None,
                             ignore_index=None) -> Prepared:
    """PyTorch's class weights and ignore_index for integer labels.

    The sample weights become ``weights * class_weights[label]``, and exactly 0 where the label
    is ``ignore_index`` (whatever ``weights`` holds there); the labels go to the kernel as
    float64 with ignored ones set to -1 (their logits are never read), followed by the class
    weights (ones if None), which the label-smoothing term needs.
    """
    lab, x, w, given = _sparse_inputs(labels, predictions, weights)
    ignore_index = check_ignore_index(ignore_index)
    check_sparse_labels(lab, x, ignore_index)
    check_weights_broadcast(w, lab.shape)
    classes = x.shape[-1]
    cw = check_class_weights(class_weights, classes, spec.name)
    out, kd = float_dtypes(x)
    rows = math.prod(lab.shape)
    keep = np.ones(lab.shape, dtype=bool) if ignore_index is None else lab != ignore_index
    lab = np.where(keep, lab, 0).astype(np.int64)  # an ignored label never indexes anything
    if cw is not None or ignore_index is not None:
        effective = np.broadcast_to(np.asarray(w, dtype=np.float64), lab.shape)
        if cw is not None and classes:  # (with no classes, every label is ignored)
            effective = effective * cw[lab]
        w = np.where(keep, effective, 0.0)
    packed = np.empty(rows + classes, dtype=np.float64)
    packed[:rows] = np.where(keep, lab, -1).reshape(rows)
    packed[rows:] = 1.0 if cw is None else cw
    return Prepared(packed, for_kernel(x, kd, (rows, classes)), w, lab.shape, given, out, kd)


def _prepare_sigmoid(spec, labels, predictions, weights, pos_weight=None) -> Prepared:
    """TF's elementwise preparation (the option is taken by the extended spec)."""
    _not_routed(spec, pos_weight=pos_weight)
    return prepare_elementwise(spec, labels, predictions, weights)


def _prepare_sigmoid_extended(spec, labels, predictions, weights, pos_weight=None) -> Prepared:
    """Flat labels followed by the ``C`` positive-class weights (``C`` = 1 or classes)."""
    z = as_array(labels, spec.inputs[0])
    x = as_array(predictions, "logits")
    check_same_shape(x, z, "logits", spec.inputs[0])
    w = as_array(weights, "weights")
    check_weights_broadcast(w, x.shape)
    pw = check_pos_weight(pos_weight, x.shape, spec.name)
    out, kd = float_dtypes(x)
    n = x.size
    packed = np.empty(n + pw.size, dtype=kd)
    packed[:n] = np.reshape(z, n)  # cast to the logits' dtype, as TF's labels
    packed[n:] = pw
    return Prepared(packed, for_kernel(x, kd, (n,)), w, x.shape, x.shape, out, kd)


def _not_routed(spec, **options) -> None:
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise InvalidArgumentError(
            f"{spec.name}: {given} are computed by the loss's extended spec; call the registered "
            f"spec (spec(...) or spec.value_and_grad(...)), which routes them there, or use "
            f"spec.route(params) to get that spec before calling its _prepare.")


def check_class_weights(class_weights, classes: int, loss: str):
    """``class_weights`` as a float64 vector of ``classes`` finite values (None stays None)."""
    if class_weights is None:
        return None
    cw = as_array(class_weights, "class_weights")
    if cw.ndim != 1 or cw.shape[0] != classes:
        raise InvalidArgumentError(
            f"{loss}: `class_weights` must be a 1-d array with one weight per class: length "
            f"{classes} (logits.shape[-1]); got shape {cw.shape}.")
    cw = cw.astype(np.float64)
    if not np.isfinite(cw).all():
        bad = int(np.flatnonzero(~np.isfinite(cw))[0])
        raise InvalidArgumentError(
            f"{loss}: `class_weights` must be finite; class_weights[{bad}] is {cw[bad]}.")
    return cw


def check_ignore_index(ignore_index):
    """``ignore_index`` as a Python int (None stays None)."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, (bool, np.bool_)) or \
            not isinstance(ignore_index, (int, np.integer)):
        raise InvalidTypeError(
            f"`ignore_index` must be an int class label (e.g. -100, PyTorch's usual value); got "
            f"{type(ignore_index).__name__} {ignore_index!r}.")
    return int(ignore_index)


def check_pos_weight(pos_weight, shape: tuple[int, ...], loss: str) -> np.ndarray:
    """``pos_weight`` as a float64 vector of 1 or ``shape[-1]`` finite values >= 0 (None: [1.0]).

    A scalar, or an array that broadcasts to ``shape`` along the last axis only (``[C]``,
    ``[1, C]``, ...): one weight per class, as PyTorch's ``BCEWithLogitsLoss(pos_weight=)``.
    """
    if pos_weight is None:
        return np.ones(1)
    pw = as_array(pos_weight, "pos_weight").astype(np.float64)
    classes = shape[-1] if shape else 1
    if pw.ndim > max(len(shape), 1) or any(d != 1 for d in pw.shape[:-1]) or \
            (pw.ndim and pw.shape[-1] not in (1, classes)):
        raise InvalidArgumentError(
            f"{loss}: `pos_weight` must be a scalar or a vector of one weight per class, "
            f"broadcasting over the last axis of logits {shape} (length 1 or {classes}); got "
            f"shape {pw.shape}.")
    pw = pw.reshape(-1)
    if not (np.isfinite(pw).all() and (pw >= 0).all()):
        bad = int(np.flatnonzero(~(np.isfinite(pw) & (pw >= 0)))[0])
        raise InvalidArgumentError(
            f"{loss}: `pos_weight` must be finite and >= 0 (it weighs the positive term of each "
            f"element's log-likelihood); pos_weight[{bad}] is {pw[bad]}.")
    return pw


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
        raise InvalidArgumentError("cosine_distance: `labels` and `predictions` must have rank >= 1 "
                                   "to reduce over `axis`; got scalars.")
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


def _prepare_pairwise(spec, labels, predictions, weights) -> Prepared:
    """One row per sample (the first axis), with ``sum(W_b)`` over the weights' own elements of
    the sample as the row's weight: TF's graph-mode semantics. The formula needs each sample's
    non-zero weight count ``n_b`` (and sees no weights): where a weight is 0, ``n_b`` is packed
    after the sample's labels, in a copy; else every ``n_b`` is the row's size, which the
    formula reads from the labels as they are (a copy of 16M float32 labels cost more than
    the loss)."""
    y = as_array(labels, "labels")
    p = as_array(predictions, "predictions")
    check_same_shape(p, y, "predictions", "labels")
    w = as_array(weights, "weights")
    if w.ndim == 1 and y.ndim > 1 and w.shape[0] == y.shape[0]:
        # weights of the loss's shape [B] (one per sample), as every registered loss takes;
        # TF's own function accepts only the inputs' rank ([B, 1, ...]) and checks that itself
        w = w.reshape(w.shape + (1,) * (y.ndim - 1))
    check_weights_broadcast(w, y.shape)
    out, kd = float_dtypes(y, p)
    batch = y.shape[0] if y.ndim else 1
    per_sample = math.prod(y.shape[1:])
    present, weight_sums = _pairwise_weights(w, y.shape, batch)
    if np.all(present == per_sample):
        rows = for_kernel(y, kd, (batch, per_sample))
    else:
        rows = np.empty((batch, per_sample + 1), dtype=kd)
        rows[:, :per_sample] = y.reshape(batch, per_sample)
        rows[:, per_sample] = present
        rows.flags.writeable = False  # as for_kernel's arrays: one compiled signature
    return Prepared(rows, for_kernel(p, kd, (batch, per_sample)), weight_sums, (batch,), p.shape,
                    out, kd)


def _pairwise_weights(w: np.ndarray, shape: tuple[int, ...], batch: int):
    """Per sample: the count of non-zero broadcast weights and the sum of the weights' own row."""
    w64 = np.asarray(w, dtype=np.float64)
    per_sample = math.prod(shape[1:])
    if w64.ndim == 0:
        nonzero = np.full(batch, float(per_sample if w64 != 0 else 0))
        return nonzero, np.full(batch, float(w64))
    rows = w64.reshape(w64.shape[0], math.prod(w64.shape[1:]))
    broadcast = math.prod(d for d, wd in zip(shape[1:], w64.shape[1:]) if wd == 1)
    nonzero = np.count_nonzero(rows, axis=1).astype(np.float64) * broadcast
    return np.broadcast_to(nonzero, (batch,)), np.broadcast_to(rows.sum(axis=1), (batch,))


def _pairwise_example(rng, batch, classes):
    return rng.normal(size=(batch, classes)), rng.normal(size=(batch, classes)), {}


def _cosine_example(rng, batch, classes):
    y, p = rng.normal(size=(2, batch, classes))
    return (y / np.linalg.norm(y, axis=1, keepdims=True),
            p / np.linalg.norm(p, axis=1, keepdims=True), {"axis": 1})


@dataclass(eq=False, repr=False)
class OptionsSpec(LossSpec):
    """A loss whose keyword ``options`` (PyTorch's) run on an ``extended`` spec when set.

    A call (``spec(...)`` or ``spec.value_and_grad(...)``) with any of ``options`` not None runs
    ``extended`` with all its arguments; otherwise this spec's own formula runs, exactly as
    before the options existed. This spec's ``prepare`` lists the options (so configs, error
    messages and the README table know them) and refuses them if a caller bypasses the routing:
    code that calls ``_prepare`` and ``compute.run`` itself must first call `route`.

    The extended prepares copy the labels to pack the per-class arrays after them, so with
    ``device="cuda"`` the options need host arrays (device arrays get a clear error).
    """

    extended: LossSpec | None = None
    options: tuple[str, ...] = ()

    def routes(self, params: dict) -> bool:
        """Whether a call with keyword arguments ``params`` runs on the extended spec."""
        return any(params.get(name) is not None for name in self.options)

    def route(self, params: dict) -> tuple[LossSpec, dict]:
        """(the spec that computes a call with keyword arguments ``params``, the arguments for it
        -- ``params`` without the options left at None)."""
        given = {k: v for k, v in params.items() if not (k in self.options and v is None)}
        return (self.extended if self.routes(params) else self), given

    def __call__(self, labels, predictions, weights=1.0, reduction=None, *args, **params):
        spec, params = self.route(params)
        if spec is not self:
            return spec(labels, predictions, weights, reduction, *args, **params)
        return super().__call__(labels, predictions, weights, reduction, *args, **params)

    def value_and_grad(self, labels, predictions, weights=1.0, reduction=None, *args, **params):
        spec, params = self.route(params)
        if spec is not self:
            return spec.value_and_grad(labels, predictions, weights, reduction, *args, **params)
        return super().value_and_grad(labels, predictions, weights, reduction, *args, **params)


def _sigmoid_pos_weight_example(rng, batch, classes):
    return (rng.uniform(0.0, 1.0, size=(batch, classes)), 3 * rng.normal(size=(batch, classes)),
            {"pos_weight": rng.uniform(0.5, 2.0, size=classes)})


def _softmax_class_weights_example(rng, batch, classes):
    labels, logits, _ = _softmax_example(rng, batch, classes)
    return labels, logits, {"class_weights": rng.uniform(0.5, 2.0, size=classes)}


def _sparse_options_example(rng, batch, classes):
    labels, logits, _ = _sparse_example(rng, batch, classes)
    labels[0] = -100
    return labels, logits, {"class_weights": rng.uniform(0.5, 2.0, size=classes),
                            "ignore_index": -100, "label_smoothing": 0.1}


#: The extended specs behind the cross-entropies' options (not registered under a name of
#: their own; reach them through the registered spec, or `OptionsSpec.extended`).
EXTENDED = {
    "sigmoid_cross_entropy": LossSpec(
        "sigmoid_cross_entropy", F.sigmoid_cross_entropy_pos_weight,
        F.sigmoid_cross_entropy_pos_weight_grad, params=(_SMOOTHING,), kind="rowwise",
        inputs=("multi_class_labels", "logits"), label_range=(0.0, 1.0),
        prepare=_prepare_sigmoid_extended, example=_sigmoid_pos_weight_example, builtin=True),
    "softmax_cross_entropy": LossSpec(
        "softmax_cross_entropy", F.softmax_cross_entropy_class_weighted,
        F.softmax_cross_entropy_class_weighted_grad, params=(_SMOOTHING,), kind="rowwise",
        inputs=("onehot_labels", "logits"), prepare=_prepare_softmax_extended,
        example=_softmax_class_weights_example, builtin=True),
    "sparse_softmax_cross_entropy": LossSpec(
        "sparse_softmax_cross_entropy", F.sparse_softmax_cross_entropy_extended,
        F.sparse_softmax_cross_entropy_extended_grad,
        params=(Param("label_smoothing", 0.0, 0.0, 1.0,
                      doc="PyTorch's: the one-hot label becomes (1 - ls) onehot + ls / K"),),
        kind="rowwise", inputs=("labels", "logits"), prepare=_prepare_sparse_extended,
        example=_sparse_options_example, builtin=True),
}

_SIGMOID_DOC = (
    "``max(x, 0) - x z + log1p(exp(-|x|))``, labels smoothed to ``z (1 - ls) + ls / 2`` "
    "if ls > 0.\n\n"
    "``pos_weight=`` (a scalar, or one value >= 0 per class along the last axis) gives PyTorch's "
    "``-[pos_weight z log sigmoid(x) + (1 - z) log(1 - sigmoid(x))]`` with the smoothed labels.")
_SOFTMAX_DOC = (
    "``sum_k z_k (logsumexp(x) - x_k)`` over the last axis; labels smoothed to "
    "``z (1 - ls) + ls / K`` if ls > 0.\n\n"
    "``class_weights=`` (one finite value per class) gives ``sum_k w_k z'_k (logsumexp(x) - x_k)``"
    " with ``z'`` the smoothed labels: smoothing first, then class weights (PyTorch's order). The "
    "sample weights are unchanged, so MEAN divides by their sum (PyTorch's 'mean' for "
    "probability targets divides by the batch size).")
_SPARSE_DOC = (
    "``logsumexp(x) - x[label]`` over the last axis, integer labels.\n\n"
    "PyTorch's ``cross_entropy`` options: ``class_weights=`` multiplies each sample's weight by "
    "``class_weights[label]`` (so MEAN is PyTorch's ``sum / sum of effective weights``); "
    "``ignore_index=`` gives those samples weight 0 (an all-ignored batch reduces to 0, not "
    "NaN); ``label_smoothing=`` in [0, 1] makes the weighted loss ``(1 - ls) w_t nll_t + "
    "(ls / K) sum_k w_k nll_k``, as PyTorch (except that a sample whose label has class weight "
    "0 counts for nothing, where PyTorch still adds its smoothing term to the sum).")

BUILTINS = [
    LossSpec("absolute_difference", F.absolute_difference, F.absolute_difference_grad,
             aliases=("mae", "l1_loss"), builtin=True),
    LossSpec("mean_squared_error", F.mean_squared_error, F.mean_squared_error_grad,
             aliases=("mse", "sum_of_squares"), builtin=True),
    LossSpec("huber_loss", F.huber_loss, F.huber_loss_grad, params=(Param("delta", 1.0),),
             aliases=("huber",), builtin=True),
    LossSpec("log_loss", F.log_loss, F.log_loss_grad, params=(Param("epsilon", 1e-7),),
             label_range=(0.0, 1.0), prediction_range=(0.0, 1.0), builtin=True,
             fast_logs=True),
    LossSpec("hinge_loss", F.hinge_loss, F.hinge_loss_grad, inputs=("labels", "logits"),
             aliases=("hinge",), label_range=(0.0, 1.0), builtin=True),
    OptionsSpec("sigmoid_cross_entropy", F.sigmoid_cross_entropy, F.sigmoid_cross_entropy_grad,
                params=(_SMOOTHING,), inputs=("multi_class_labels", "logits"),
                aliases=("sigmoid_ce",), label_range=(0.0, 1.0), prepare=_prepare_sigmoid,
                doc=_SIGMOID_DOC, builtin=True, fused_grad=F.sigmoid_cross_entropy_fused,
                extended=EXTENDED["sigmoid_cross_entropy"], options=("pos_weight",)),
    OptionsSpec("softmax_cross_entropy", F.softmax_cross_entropy, F.softmax_cross_entropy_grad,
                params=(_SMOOTHING,), kind="rowwise", inputs=("onehot_labels", "logits"),
                aliases=("softmax_ce",), prepare=_prepare_softmax, doc=_SOFTMAX_DOC,
                example=_softmax_example, builtin=True, float32_math=True, grad_fills_rows=True,
                fused_grad=F.softmax_cross_entropy_fused,
                extended=EXTENDED["softmax_cross_entropy"], options=("class_weights",)),
    OptionsSpec("sparse_softmax_cross_entropy", F.sparse_softmax_cross_entropy,
                F.sparse_softmax_cross_entropy_grad, kind="rowwise", inputs=("labels", "logits"),
                aliases=("sparse_softmax_ce",), prepare=_prepare_sparse, doc=_SPARSE_DOC,
                example=_sparse_example, builtin=True, float32_math=True, grad_fills_rows=True,
                fused_grad=F.sparse_softmax_cross_entropy_fused,
                extended=EXTENDED["sparse_softmax_cross_entropy"],
                options=("class_weights", "ignore_index", "label_smoothing")),
    LossSpec("cosine_distance", F.cosine_distance, F.cosine_distance_grad, kind="rowwise",
             prepare=_prepare_cosine, example=_cosine_example, builtin=True, float32_math=True,
             grad_fills_rows=True,
             doc="``1 - sum_axis(y * p)`` (inputs unit-normalised), keeping ``axis`` with size 1."),
    LossSpec("mean_pairwise_squared_error", F.mean_pairwise_squared_error,
             F.mean_pairwise_squared_error_grad, kind="rowwise", reduction=Reduction.SUM,
             aliases=("sum_of_pairwise_squares",), prepare=_prepare_pairwise,
             example=_pairwise_example, builtin=True, float32_math=True, grad_fills_rows=True,
             fused_grad=F.mean_pairwise_squared_error_fused,
             doc="Per sample ``sum_{i<j} ((p_i - p_j) - (y_i - y_j))**2 / C(n, 2)`` over its "
                 "non-zero-weight elements, times the sample's weight sum; default reduction SUM."),
    # --- beyond TensorFlow -------------------------------------------------------------------
    LossSpec("log_cosh", F.log_cosh, F.log_cosh_grad, aliases=("logcosh",), builtin=True,
             fused_grad=F.log_cosh_fused),
    LossSpec("poisson", F.poisson, F.poisson_grad,
             params=(Param("epsilon", 1e-7, 0.0, None,
                           doc="added to the rate inside the log (Keras 1e-7, PyTorch 1e-8)"),),
             aliases=("poisson_loss",), label_range=(0.0, math.inf),
             prediction_range=(0.0, math.inf), builtin=True, fast_logs=True),
    LossSpec("kl_divergence", F.kl_divergence, F.kl_divergence_grad,
             aliases=("kld", "kl_div", "kullback_leibler_divergence"), label_range=(0.0, 1.0),
             prediction_range=(0.0, 1.0), builtin=True, fast_logs=True),
    LossSpec("focal", F.focal, F.focal_grad, fused_grad=F.focal_fused,
             inputs=("labels", "logits"),
             # (gamma = 2, the paper's and torchvision's default, folds pow(q, 2) into q * q)
             params=(Param("gamma", 2.0, 0.0, None, specialize=(2.0,),
                           doc="focusing exponent; 0 is alpha-weighted cross-entropy"),
                     Param("alpha", 0.25, None, 1.0,
                           doc="weight of the positive class in [0, 1]; negative disables it")),
             aliases=("focal_loss", "sigmoid_focal", "sigmoid_focal_loss"), label_range=(0.0, 1.0),
             builtin=True),
    LossSpec("smooth_l1", F.smooth_l1, F.smooth_l1_grad,
             params=(Param("beta", 1.0, 0.0, None, doc="quadratic below |d| < beta; 0 is L1"),),
             aliases=("smoothl1", "smooth_l1_loss"), builtin=True),
    LossSpec("squared_hinge", F.squared_hinge, F.squared_hinge_grad, inputs=("labels", "logits"),
             aliases=("squared_hinge_loss",), label_range=(0.0, 1.0), builtin=True),
    LossSpec("binary_cross_entropy", F.binary_cross_entropy, F.binary_cross_entropy_grad,
             fused_grad=F.binary_cross_entropy_fused,
             aliases=("bce", "binary_crossentropy"), label_range=(0.0, 1.0),
             prediction_range=(0.0, 1.0), builtin=True, fast_logs=True),
]
for _spec in BUILTINS:
    register(_spec)

#: `compute_weighted_loss`'s "loss": its input itself (one input, so not in the registry).
WEIGHTED_INPUT = LossSpec("compute_weighted_loss", F.weighted_input, F.weighted_input_grad,
                          inputs=("losses", "losses"), builtin=True)
