"""Parity of `lossforge.losses` and `lossforge.nn` with TensorFlow itself (CPU).

Every case calls the lossforge function and its TensorFlow counterpart
(`tf.compat.v1.losses.*`, `tf.nn.*`) on the same seeded numpy inputs and compares:

* the value, within float32 rounding: lossforge accumulates in float64 and TF in float32, so
  values are compared with rtol=1e-5 and an absolute tolerance of 1e-6 times the magnitude
  of the numbers involved (the result, or for a reduction the sum of |L*W| it was built from);
* the NaN / +inf / -inf pattern, exactly;
* the shape, and the dtype where lossforge promises TF's dtype;
* that lossforge raises ValueError (TypeError for a bad keyword) wherever TF raises.

The deliberate differences listed in the reference page (tf-semantics.md, "Where lossforge
deliberately differs") are respected: float64 inputs to the regression losses give float64
results here, integer `compute_weighted_loss` is not compared, and `mean_pairwise_squared_error`
is compared with TF's graph-mode semantics, i.e. TF run inside `tf.function`.

The whole module is skipped when TensorFlow is not installed (`pip install tensorflow-cpu`).
"""
from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TF must see no GPU: hide CUDA devices while TF is imported and its eager context starts,
# then restore the variable so that other test modules in this session still see the GPUs.
_SAVED_CUDA_VISIBLE_DEVICES = os.environ.get("CUDA_VISIBLE_DEVICES")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
try:
    tf = pytest.importorskip(
        "tensorflow", reason="TensorFlow is not installed: pip install tensorflow-cpu to run the "
                             "parity suite")
    tf.config.set_visible_devices([], "GPU")
    tf.constant(0.0).numpy()  # start the eager context now, on the CPU only
finally:
    if _SAVED_CUDA_VISIBLE_DEVICES is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = _SAVED_CUDA_VISIBLE_DEVICES

import lossforge  # noqa: E402
from lossforge import Reduction  # noqa: E402

TFL = tf.compat.v1.losses
LF = lossforge.losses

REDUCTIONS = ("NONE", "SUM", "MEAN", "SUM_OVER_BATCH_SIZE", "SUM_BY_NONZERO_WEIGHTS",
              "SUM_OVER_NONZERO_WEIGHTS")

F32 = np.float32
RTOL = 1e-5      # float32 rounding of TF's arithmetic
ATOL_REL = 1e-6  # absolute tolerance per unit of magnitude


# --------------------------------------------------------------------------------------------
# helpers


def _numpy(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _rng(*key) -> np.random.Generator:
    """A generator seeded from the test's identity: reproducible, distinct per case."""
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


def assert_parity(actual, expected, *, rtol=RTOL, atol_rel=ATOL_REL, scale=0.0, what=""):
    """``actual`` (lossforge) equals ``expected`` (TF) up to rounding, with the same shape and
    exactly the same NaN, +inf and -inf positions."""
    a = np.asarray(actual)
    e = _numpy(expected)
    assert a.shape == e.shape, f"{what}: lossforge shape {a.shape} != TF shape {e.shape}"
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    for name, pred in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        if not np.array_equal(pred(a64), pred(e64)):
            raise AssertionError(f"{what}: {name} positions differ\n lossforge: {a64!r}\n"
                                 f"        TF: {e64!r}")
    finite = np.isfinite(e64)
    mag = max(1.0, float(np.max(np.abs(e64[finite]), initial=0.0)), float(scale))
    np.testing.assert_allclose(a64[finite], e64[finite], rtol=rtol, atol=atol_rel * mag,
                               err_msg=f"{what}: lossforge {a64!r} vs TF {e64!r}")


def _broadcast_weights(weights, loss_shape) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == len(loss_shape) + 1:  # sparse CE squeezes a trailing 1
        w = w[..., 0]
    return np.broadcast_to(w, loss_shape)


def reduction_scale(weighted_losses, weights, loss_shape, reduction, value) -> float:
    """The magnitude TF's float32 reduction rounds at: sum |L*W| over the denominator (and, for
    MEAN, the rounding of the weight sum itself)."""
    if reduction == "NONE":
        return 0.0
    lw = np.abs(_numpy(weighted_losses).astype(np.float64))
    total = float(lw[np.isfinite(lw)].sum())
    w = _broadcast_weights(weights, loss_shape)
    value = abs(float(value)) if np.isfinite(value) else 0.0
    if reduction == "SUM":
        return total
    if reduction == "MEAN":
        den = abs(float(w.sum()))
        return (total + value * float(np.abs(w).sum())) / den if den else 0.0
    if reduction == "SUM_OVER_BATCH_SIZE":
        return total / max(w.size, 1)
    count = np.count_nonzero(w)
    return total / count if count else 0.0


def _both(fn, reduction=None, **kwargs):
    """(lossforge result, TF result) of ``fn`` with identical keyword arguments."""
    if reduction is not None:
        lf = getattr(LF, fn)(reduction=getattr(Reduction, reduction), **kwargs)
        ref = getattr(TFL, fn)(reduction=getattr(TFL.Reduction, reduction), **kwargs)
    else:
        lf = getattr(LF, fn)(**kwargs)
        ref = getattr(TFL, fn)(**kwargs)
    return lf, _numpy(ref)


@functools.lru_cache(maxsize=None)
def _tf_pairwise_graph():
    """TF's mean_pairwise_squared_error in graph mode (its documented and tested semantics)."""
    @tf.function(reduce_retracing=True)
    def pairwise(labels, predictions, weights):
        return TFL.mean_pairwise_squared_error(labels, predictions, weights)
    return pairwise


def tf_pairwise(labels, predictions, weights=1.0):
    return _numpy(_tf_pairwise_graph()(tf.constant(labels, tf.float32),
                                       tf.constant(predictions, tf.float32),
                                       tf.constant(weights, tf.float32)))


# --------------------------------------------------------------------------------------------
# the loss cases: inputs for (lossforge.losses.fn, tf.compat.v1.losses.fn) with the same kwargs

B, D, C = 4, 3, 5


def _regression(rng):
    return {"labels": rng.uniform(-2, 2, (B, D)).astype(F32),
            "predictions": rng.uniform(-2, 2, (B, D)).astype(F32)}


def _log_loss(rng):
    labels = rng.integers(0, 2, (B, D)).astype(F32)
    labels[0, 0] = 0.3  # soft labels are allowed
    return {"labels": labels, "predictions": rng.uniform(0.02, 0.98, (B, D)).astype(F32)}


def _hinge(rng):
    return {"labels": rng.integers(0, 2, (B, D)).astype(F32),
            "logits": rng.uniform(-2.5, 2.5, (B, D)).astype(F32)}


def _sigmoid(rng):
    labels = rng.integers(0, 2, (B, D)).astype(F32)
    labels[1, 1] = 0.25
    return {"multi_class_labels": labels, "logits": (3 * rng.normal(size=(B, D))).astype(F32)}


def _softmax(rng):
    return {"onehot_labels": np.eye(C, dtype=F32)[rng.integers(0, C, B)],
            "logits": (3 * rng.normal(size=(B, C))).astype(F32)}


def _sparse(rng):
    return {"labels": rng.integers(0, C, B).astype(np.int32),
            "logits": (3 * rng.normal(size=(B, C))).astype(F32)}


def _unit(rng, shape, axis):
    v = rng.normal(size=shape)
    return (v / np.linalg.norm(v, axis=axis, keepdims=True)).astype(F32)


def _cosine(shape, axis):
    def make(rng):
        return {"labels": _unit(rng, shape, axis), "predictions": _unit(rng, shape, axis)}
    return make


def _weighted_input(rng):
    return {"losses": rng.uniform(-1, 3, (B, D)).astype(F32)}


@dataclass(frozen=True)
class Case:
    id: str
    fn: str
    make: object
    loss_shape: tuple
    params: dict = field(default_factory=dict)

    def inputs(self, rng):
        return dict(self.make(rng), **self.params)


CASES = [
    Case("absolute_difference", "absolute_difference", _regression, (B, D)),
    Case("mean_squared_error", "mean_squared_error", _regression, (B, D)),
    Case("huber_loss-delta1", "huber_loss", _regression, (B, D), {"delta": 1.0}),
    Case("huber_loss-delta0.3", "huber_loss", _regression, (B, D), {"delta": 0.3}),
    Case("log_loss", "log_loss", _log_loss, (B, D)),
    Case("hinge_loss", "hinge_loss", _hinge, (B, D)),
    Case("sigmoid_cross_entropy-ls0", "sigmoid_cross_entropy", _sigmoid, (B, D)),
    Case("sigmoid_cross_entropy-ls0.2", "sigmoid_cross_entropy", _sigmoid, (B, D),
         {"label_smoothing": 0.2}),
    Case("softmax_cross_entropy-ls0", "softmax_cross_entropy", _softmax, (B,)),
    Case("softmax_cross_entropy-ls0.1", "softmax_cross_entropy", _softmax, (B,),
         {"label_smoothing": 0.1}),
    Case("sparse_softmax_cross_entropy", "sparse_softmax_cross_entropy", _sparse, (B,)),
    Case("cosine_distance-2d-axis1", "cosine_distance", _cosine((B, D), 1), (B, 1), {"axis": 1}),
    Case("cosine_distance-2d-axis0", "cosine_distance", _cosine((B, D), 0), (1, D), {"axis": 0}),
    Case("cosine_distance-3d-axis2", "cosine_distance", _cosine((3, 2, 4), 2), (3, 2, 1),
         {"axis": 2}),
    Case("compute_weighted_loss", "compute_weighted_loss", _weighted_input, (B, D)),
]

WEIGHT_KINDS = ("scalar_1", "scalar_2.5", "scalar_0", "per_sample", "per_feature",
                "per_element_zeros", "negative", "all_zero")


def weight_kinds(case: Case):
    kinds = [k for k in WEIGHT_KINDS if k != "per_feature" or len(case.loss_shape) >= 2]
    if case.fn == "sparse_softmax_cross_entropy":
        kinds.append("per_sample_trailing_1")  # [B, 1] for [B] losses: TF squeezes it
    return kinds


def make_weights(kind, loss_shape, rng):
    r = len(loss_shape)
    if kind.startswith("scalar_"):
        return float(kind[len("scalar_"):])
    if kind == "per_sample":
        return rng.uniform(0.5, 2.0, loss_shape[:1] + (1,) * (r - 1)).astype(F32)
    if kind == "per_sample_trailing_1":
        return rng.uniform(0.5, 2.0, loss_shape + (1,)).astype(F32)
    if kind == "per_feature":
        return rng.uniform(0.5, 2.0, (1,) + loss_shape[1:]).astype(F32)
    if kind == "per_element_zeros":
        w = rng.uniform(0.5, 2.0, loss_shape).astype(F32)
        w.flat[::3] = 0.0
        if w.size == 1:
            w.flat[0] = 1.5
        return w
    if kind == "negative":
        w = rng.uniform(-2.0, 0.5, loss_shape).astype(F32)
        w.flat[0] = -1.25
        if w.size > 2:
            w.flat[2] = 0.0
        return w
    if kind == "all_zero":
        return np.zeros(loss_shape, F32)
    raise AssertionError(kind)


GRID = [pytest.param(case, kind, red, id=f"{case.id}-{kind}-{red}")
        for case in CASES for kind in weight_kinds(case) for red in REDUCTIONS]


@pytest.mark.parametrize("case,kind,reduction", GRID)
def test_loss_parity(case, kind, reduction):
    rng = _rng(case.id, kind)
    kwargs = case.inputs(rng)
    kwargs["weights"] = make_weights(kind, case.loss_shape, rng)
    actual, expected = _both(case.fn, reduction, **kwargs)
    assert np.asarray(actual).dtype == expected.dtype == F32
    if reduction == "NONE":
        assert expected.shape == case.loss_shape
        scale = 0.0
    else:
        weighted = _numpy(getattr(TFL, case.fn)(reduction=TFL.Reduction.NONE, **kwargs))
        scale = reduction_scale(weighted, kwargs["weights"], case.loss_shape, reduction, expected)
    assert_parity(actual, expected, scale=scale, what=f"{case.id} {kind} {reduction}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reduction_accepts_tf_string_values(reduction):
    rng = _rng("strings", reduction)
    kwargs = _regression(rng)
    kwargs["weights"] = make_weights("per_element_zeros", (B, D), rng)
    key = getattr(TFL.Reduction, reduction)  # TF's plain string, e.g. "weighted_sum"
    expected = _numpy(TFL.absolute_difference(reduction=key, **kwargs))
    assert_parity(LF.absolute_difference(reduction=key, **kwargs), expected, scale=10.0)


SCALAR_INPUT_CASES = [
    ("absolute_difference", {"labels": F32(1.5), "predictions": F32(-0.25)}),
    ("mean_squared_error", {"labels": F32(1.5), "predictions": F32(-0.25)}),
    ("huber_loss", {"labels": F32(1.5), "predictions": F32(-0.25), "delta": 0.3}),
    ("log_loss", {"labels": F32(1.0), "predictions": F32(0.3)}),
    ("hinge_loss", {"labels": F32(0.0), "logits": F32(0.4)}),
    ("sigmoid_cross_entropy", {"multi_class_labels": F32(1.0), "logits": F32(-0.7)}),
    ("compute_weighted_loss", {"losses": F32(2.5)}),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("fn,inputs", SCALAR_INPUT_CASES, ids=[c[0] for c in SCALAR_INPUT_CASES])
def test_scalar_inputs(fn, inputs, reduction):
    for weights in (1.0, 0.0, 2.5):
        actual, expected = _both(fn, reduction, weights=weights, **inputs)
        assert_parity(actual, expected, what=f"{fn} w={weights}")


# --------------------------------------------------------------------------------------------
# mean_pairwise_squared_error: no reduction; TF's graph-mode semantics (inside tf.function)

PAIRWISE_SHAPES = {"2d": (B, D), "3d": (3, 2, 3)}
PAIRWISE_WEIGHTS = WEIGHT_KINDS + ("one_nonzero_per_sample", "last_dim_only")


def _pairwise_weights(kind, shape, rng):
    if kind == "one_nonzero_per_sample":  # n_b = 1: both terms divide by zero -> 0
        w = np.zeros(shape, F32)
        w.reshape(shape[0], -1)[:, 1] = 1.5
        return w
    if kind == "last_dim_only":  # [1, ..., 1, D]
        return rng.uniform(0.5, 2.0, (1,) * (len(shape) - 1) + shape[-1:]).astype(F32)
    return make_weights(kind, shape, rng)


def pairwise_scale(labels, predictions, weights):
    """Magnitude of TF's float32 terms: sum_b (2 SS_b + 2 S_b**2) * sum_j |w_bj|."""
    d = (predictions.astype(np.float64) - labels).reshape(labels.shape[0], -1)
    term = 2 * (d * d).sum(axis=1) + 2 * d.sum(axis=1) ** 2
    w = np.abs(np.asarray(weights, np.float64))
    wsum = np.broadcast_to(w.reshape(w.shape[0], -1).sum(axis=1) if w.ndim else w,
                           (labels.shape[0],))
    return float((term * wsum).sum())


@pytest.mark.parametrize("kind", PAIRWISE_WEIGHTS)
@pytest.mark.parametrize("shape_id", PAIRWISE_SHAPES)
def test_mean_pairwise_squared_error_parity(shape_id, kind):
    shape = PAIRWISE_SHAPES[shape_id]
    rng = _rng("pairwise", shape_id, kind)
    labels = rng.uniform(-2, 2, shape).astype(F32)
    predictions = rng.uniform(-2, 2, shape).astype(F32)
    weights = _pairwise_weights(kind, shape, rng)
    expected = tf_pairwise(labels, predictions, weights)
    actual = LF.mean_pairwise_squared_error(labels, predictions, weights=weights)
    assert np.asarray(actual).dtype == F32
    assert_parity(actual, expected, scale=pairwise_scale(labels, predictions, weights),
                  what=f"pairwise {shape_id} {kind}")


# --------------------------------------------------------------------------------------------
# TF's own test cases (tensorflow/python/kernel_tests/nn_ops/losses_test.py, TF 2.21): each is
# checked against TF and against the number the TF test asserts (TF asserts most of them with
# assertAlmostEqual(..., places=3), hence atol=1e-3 on the printed numbers)

_P = np.array([[4, 8, 12], [8, 1, 3]], F32)
_L = np.array([[1, 9, 2], [-5, -2, 6]], F32)
_SM_LOGITS = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10]], F32)
_SM_WRONG = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], F32)
_SIG_LOGITS = np.array([[100, -100, -100], [-100, 100, -100], [-100, -100, 100]], F32)
_SIG_MULTI_LOGITS = np.array([[100, -100, 100], [100, -100, 100], [100, 100, -100]], F32)
_SIG_MULTI_LABELS = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], F32)
_COS_PRED = np.array([[1, 0, 0], [0, 0, -1], [1, 0, 0], [1, 0, 0], [0, 0, -1], [1, 0, 0]],
                     F32).reshape(3, 2, 3)
_COS_LABELS = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]],
                       F32).reshape(3, 2, 3)
_COS_FP_PRED = np.array([[0.819031913261206, 0.567041924552012, 0.087465312324590],
                         [-0.665139432070255, -0.739487441769973, -0.103671883216994],
                         [0.707106781186548, -0.707106781186548, 0]], F32).reshape(3, 1, 3)
_COS_FP_LABELS = np.array([[0.819031913261206, 0.567041924552012, 0.087465312324590],
                           [0.665139432070255, 0.739487441769973, 0.103671883216994],
                           [0.707106781186548, 0.707106781186548, 0]], F32).reshape(3, 1, 3)
_LOG_P = np.array([0.9, 0.2, 0.2, 0.8, 0.4, 0.6], F32).reshape(2, 3)
_LOG_Y = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], F32).reshape(2, 3)
_LOG_EXPECTED = (_LOG_Y * np.log(_LOG_P.astype(np.float64) + 1e-7)
                 + (1 - _LOG_Y) * np.log(1 - _LOG_P.astype(np.float64) + 1e-7))  # TF's setUp
_HUBER_P = np.array([1.5, -1.4, -1.0, 0.0], F32)
_HUBER_P_DELTA = np.array([1.5, -1.4, -0.5, 0.0], F32)
_HUBER_Y_QUAD = np.array([1.0, -1.0, 0.0, 0.5], F32)
_HUBER_Y_LIN = np.array([0.0, 1.0, 0.0, 1.5], F32)
_HUBER_QUADRATIC = 0.5 * (0.25 + 0.16 + 1.0 + 0.25) / 4.0
_HUBER_LINEAR = (1.5 + 2.4 + 1.0 + 1.5) / 4.0 - 0.5
_LS = 0.1

TF_TEST_CASES = [
    # AbsoluteDifferenceLossTest
    ("absdiff-all-correct", "absolute_difference", dict(labels=_P, predictions=_P), 0.0),
    ("absdiff-nonzero", "absolute_difference", dict(labels=_L, predictions=_P), 5.5),
    ("absdiff-python-scalar-weight", "absolute_difference",
     dict(labels=_L, predictions=_P, weights=2.3), 5.5 * 2.3),
    ("absdiff-batch-weights", "absolute_difference",
     dict(labels=_L, predictions=_P, weights=np.array([[1.2], [0.0]], F32)), 5.6),
    ("absdiff-sample-weights", "absolute_difference",
     dict(labels=_L, predictions=_P, weights=np.array([[3, 6, 5], [0, 4, 2]], F32)), 16.6),
    ("absdiff-sample-weights-most-zero", "absolute_difference",
     dict(labels=_L, predictions=_P, weights=np.array([[0, 0, 0], [0, 0, 2]], F32)), 6.0),
    ("absdiff-sample-weights-all-zero", "absolute_difference",
     dict(labels=_L, predictions=_P, weights=np.zeros((2, 3), F32)), 0.0),
    # MeanSquaredErrorTest
    ("mse-scalar", "mean_squared_error", dict(labels=F32(0), predictions=F32(0)), 0.0),
    ("mse-nonzero", "mean_squared_error", dict(labels=_L, predictions=_P), 49.5),
    ("mse-python-scalar-weight", "mean_squared_error",
     dict(labels=_L, predictions=_P, weights=2.3), 49.5 * 2.3),
    ("mse-batch-weights", "mean_squared_error",
     dict(labels=_L, predictions=_P, weights=np.array([[1.2], [3.4]], F32)), 767.8 / 6.0),
    ("mse-sample-weights", "mean_squared_error",
     dict(labels=_L, predictions=_P, weights=np.array([[3, 6, 5], [0, 4, 2]], F32)), 587 / 5.0),
    ("mse-sample-weights-most-zero", "mean_squared_error",
     dict(labels=_L, predictions=_P, weights=np.array([[0, 0, 0], [0, 0, 2]], F32)), 18.0),
    ("mse-sample-weights-all-zero", "mean_squared_error",
     dict(labels=_L, predictions=_P, weights=np.zeros((2, 3), F32)), 0.0),
    # HuberLossTest
    ("huber-all-quadratic", "huber_loss",
     dict(labels=_HUBER_Y_QUAD, predictions=_HUBER_P), _HUBER_QUADRATIC),
    ("huber-all-linear", "huber_loss",
     dict(labels=_HUBER_Y_LIN, predictions=_HUBER_P), _HUBER_LINEAR),
    ("huber-mixed", "huber_loss",
     dict(labels=np.stack([_HUBER_Y_QUAD, _HUBER_Y_LIN]), predictions=np.stack([_HUBER_P] * 2)),
     (_HUBER_QUADRATIC + _HUBER_LINEAR) / 2.0),
    ("huber-all-quadratic-delta", "huber_loss",
     dict(labels=_HUBER_Y_QUAD, predictions=_HUBER_P_DELTA, delta=0.5),
     0.5 * np.array([0.5 ** 2, 0.4 ** 2, 0.5 ** 2, 0.5 ** 2]).mean()),
    ("huber-all-linear-delta", "huber_loss",
     dict(labels=_HUBER_Y_LIN, predictions=_HUBER_P, delta=0.5),
     0.5 * np.array([1.5, 2.4, 1.0, 1.5]).mean() - 0.5 * 0.5 ** 2),
    # LogLossTest
    ("log-all-correct", "log_loss", dict(labels=_LOG_Y, predictions=_LOG_Y), 0.0),
    ("log-nonzero", "log_loss", dict(labels=_LOG_Y, predictions=_LOG_P),
     -_LOG_EXPECTED.sum() / 6.0),
    ("log-python-scalar-weight", "log_loss", dict(labels=_LOG_Y, predictions=_LOG_P, weights=2.3),
     2.3 * -_LOG_EXPECTED.sum() / 6.0),
    ("log-batch-weights", "log_loss",
     dict(labels=_LOG_Y, predictions=_LOG_P, weights=np.array([[1.2], [3.4]], F32)),
     -(_LOG_EXPECTED * np.array([[1.2], [3.4]])).sum() / 6.0),
    ("log-batch-weights-some-zero", "log_loss",
     dict(labels=_LOG_Y, predictions=_LOG_P, weights=np.array([[1.2], [0.0]], F32)),
     -(_LOG_EXPECTED * np.array([[1.2], [0.0]])).sum() / 3.0),
    ("log-measurement-weights", "log_loss",
     dict(labels=_LOG_Y, predictions=_LOG_P, weights=np.array([[3, 6, 5], [0, 4, 2]], F32)),
     -(_LOG_EXPECTED * np.array([[3, 6, 5], [0, 4, 2]])).sum() / 5.0),
    ("log-sample-weights-most-zero", "log_loss",
     dict(labels=_LOG_Y, predictions=_LOG_P, weights=np.array([[0, 0, 0], [0, 0, 2]], F32)),
     -(_LOG_EXPECTED * np.array([[0, 0, 0], [0, 0, 2]])).sum()),
    ("log-sample-weights-all-zero", "log_loss",
     dict(labels=_LOG_Y, predictions=_LOG_P, weights=np.zeros((2, 3), F32)), 0.0),
    # SoftmaxCrossEntropyLossTest
    ("softmax-all-correct", "softmax_cross_entropy",
     dict(onehot_labels=np.eye(3, dtype=F32), logits=_SM_LOGITS), 0.0),
    ("softmax-all-wrong", "softmax_cross_entropy",
     dict(onehot_labels=_SM_WRONG, logits=_SM_LOGITS), 10.0),
    ("softmax-python-scalar-weight", "softmax_cross_entropy",
     dict(onehot_labels=_SM_WRONG, logits=_SM_LOGITS, weights=2.3), 2.3 * 10.0),
    ("softmax-batch-weights", "softmax_cross_entropy",
     dict(onehot_labels=_SM_WRONG, logits=_SM_LOGITS, weights=np.array([1.2, 3.4, 5.6], F32)),
     (1.2 + 3.4 + 5.6) * 10.0 / 3.0),
    ("softmax-all-weights-missing", "softmax_cross_entropy",
     dict(onehot_labels=_SM_WRONG, logits=_SM_LOGITS, weights=np.zeros(3, F32)), 0.0),
    ("softmax-some-weights-missing", "softmax_cross_entropy",
     dict(onehot_labels=_SM_WRONG, logits=_SM_LOGITS, weights=np.array([1.2, 0, 0], F32)), 12.0),
    ("softmax-label-smoothing", "softmax_cross_entropy",
     dict(onehot_labels=np.array([[1, 0, 0]], F32), logits=np.array([[100, -100, -100]], F32),
          label_smoothing=_LS), 400.0 * _LS / 3.0),
    # SparseSoftmaxCrossEntropyLossTest
    ("sparse-all-correct-int32", "sparse_softmax_cross_entropy",
     dict(labels=np.array([[0], [1], [2]], np.int32), logits=_SM_LOGITS), 0.0),
    ("sparse-all-correct-int64", "sparse_softmax_cross_entropy",
     dict(labels=np.array([[0], [1], [2]], np.int64), logits=_SM_LOGITS), 0.0),
    ("sparse-all-correct-non-column", "sparse_softmax_cross_entropy",
     dict(labels=np.array([0, 1, 2], np.int32), logits=_SM_LOGITS), 0.0),
    ("sparse-all-wrong-int32", "sparse_softmax_cross_entropy",
     dict(labels=np.array([[2], [0], [1]], np.int32), logits=_SM_LOGITS), 10.0),
    ("sparse-all-wrong-int64", "sparse_softmax_cross_entropy",
     dict(labels=np.array([[2], [0], [1]], np.int64), logits=_SM_LOGITS), 10.0),
    ("sparse-all-wrong-non-column", "sparse_softmax_cross_entropy",
     dict(labels=np.array([2, 0, 1], np.int32), logits=_SM_LOGITS), 10.0),
    ("sparse-python-scalar-weight", "sparse_softmax_cross_entropy",
     dict(labels=np.array([[2], [0], [1]], np.int32), logits=_SM_LOGITS, weights=2.3), 23.0),
    ("sparse-1d-tensor-weight", "sparse_softmax_cross_entropy",
     dict(labels=np.array([[2], [0], [1]], np.int32), logits=_SM_LOGITS,
          weights=np.array([2.3], F32)), 23.0),
    ("sparse-batch-weights-column", "sparse_softmax_cross_entropy",
     dict(labels=np.array([[2], [0], [1]], np.int32), logits=_SM_LOGITS,
          weights=np.array([[1.2], [3.4], [5.6]], F32)), (1.2 + 3.4 + 5.6) * 10.0 / 3.0),
    ("sparse-all-weights-missing", "sparse_softmax_cross_entropy",
     dict(labels=np.array([[2], [0], [1]], np.int32), logits=_SM_LOGITS,
          weights=np.zeros((3, 1), F32)), 0.0),
    ("sparse-some-weights-missing", "sparse_softmax_cross_entropy",
     dict(labels=np.array([[2], [0], [1]], np.int32), logits=_SM_LOGITS,
          weights=np.array([[1.2], [0], [0]], F32)), 12.0),
    # SigmoidCrossEntropyLossTest
    ("sigmoid-all-correct", "sigmoid_cross_entropy",
     dict(multi_class_labels=np.eye(3, dtype=F32), logits=_SIG_LOGITS), 0.0),
    ("sigmoid-single-dim-ones", "sigmoid_cross_entropy",
     dict(multi_class_labels=np.ones((32, 1), F32), logits=np.ones((32, 1), F32),
          weights=np.ones((32, 1), F32)), 0.313),
    ("sigmoid-single-dim-ones-2", "sigmoid_cross_entropy",
     dict(multi_class_labels=np.ones((32, 2), F32), logits=np.ones((32, 2), F32),
          weights=np.ones((32, 2), F32)), 0.313),
    ("sigmoid-all-wrong", "sigmoid_cross_entropy",
     dict(multi_class_labels=_SM_WRONG, logits=_SIG_LOGITS), 600.0 / 9.0),
    ("sigmoid-all-wrong-measurement-weights", "sigmoid_cross_entropy",
     dict(multi_class_labels=_SM_WRONG, logits=_SIG_LOGITS,
          weights=np.array([[3, 4, 5], [2, 6, 0], [8, 0, 1]], F32)), 1700.0 / 7.0),
    ("sigmoid-multi-correct", "sigmoid_cross_entropy",
     dict(multi_class_labels=np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], F32),
          logits=np.array([[100, -100, 100], [100, 100, -100], [-100, 100, 100]], F32)), 0.0),
    ("sigmoid-float64-int64-labels", "sigmoid_cross_entropy",
     dict(multi_class_labels=_SIG_MULTI_LABELS.astype(np.int64),
          logits=_SIG_MULTI_LOGITS.astype(np.float64)), 44.444),
    ("sigmoid-label-smoothing", "sigmoid_cross_entropy",
     dict(multi_class_labels=np.array([[1, 0, 1]], F32),
          logits=np.array([[100, -100, -100]], F32), label_smoothing=_LS),
     (100.0 + 50.0 * _LS) / 3.0),
    # HingeLossTest (TF asserts these with atol=1e-3)
    ("hinge-all-outside-margin", "hinge_loss",
     dict(labels=np.array([1, 0, 0, 1], F32), logits=np.array([1.2, -1.4, -1.0, 2.1], F32)), 0.0),
    ("hinge-some-inside-margin", "hinge_loss",
     dict(labels=np.array([[0], [0], [1], [1]], F32),
          logits=np.array([[-0.7], [-1.4], [1.4], [0.6]], F32)), 0.175),
    ("hinge-some-misclassified", "hinge_loss",
     dict(labels=np.array([[[1], [0], [0], [1]]], F32),
          logits=np.array([[[1.2], [0.4], [-1.0], [-1.1]]], F32)), 0.875),
    # CosineDistanceLossTest (TF passes the deprecated dim=2; axis=2 here, dim below)
    ("cosine-all-correct", "cosine_distance",
     dict(labels=_COS_LABELS, predictions=_COS_LABELS, axis=2), 0.0),
    ("cosine-partially-correct-integers", "cosine_distance",
     dict(labels=_COS_LABELS, predictions=_COS_PRED, axis=2), 1.0),
    ("cosine-partially-correct-floats", "cosine_distance",
     dict(labels=_COS_FP_LABELS, predictions=_COS_FP_PRED, axis=2), 1.0),
    ("cosine-sample-weights", "cosine_distance",
     dict(labels=_COS_LABELS, predictions=_COS_PRED, axis=2,
          weights=np.array([1, 0, 0], F32).reshape(3, 1, 1)), 1.0),
    ("cosine-measurement-weights", "cosine_distance",
     dict(labels=_COS_LABELS, predictions=_COS_PRED, axis=2,
          weights=np.array([1, 0, 0, 1, 1, 1], F32).reshape(3, 2, 1)), 3.0 / 4.0),
    ("cosine-all-sample-weights-zero", "cosine_distance",
     dict(labels=_COS_LABELS, predictions=_COS_PRED, axis=2, weights=np.zeros((3, 1, 1), F32)),
     0.0),
    ("cosine-all-measurement-weights-zero", "cosine_distance",
     dict(labels=_COS_LABELS, predictions=_COS_PRED, axis=2, weights=np.zeros((3, 2, 1), F32)),
     0.0),
]


@pytest.mark.parametrize("fn,kwargs,printed", [pytest.param(*c[1:], id=c[0])
                                                for c in TF_TEST_CASES])
def test_tf_test_suite_cases(fn, kwargs, printed):
    actual, expected = _both(fn, **kwargs)
    assert_parity(actual, expected, what=fn)
    # e.g. "all correct" softmax is log(1 + 2 exp(-10)) = 9.1e-5, which TF's places=3 accepts
    np.testing.assert_allclose(float(actual), printed, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(float(expected), printed, rtol=1e-5, atol=1e-3)


def test_tf_test_suite_sigmoid_no_reduction_and_smoothing_equals_softmax():
    # testSigmoidNoReduction
    actual, expected = _both("sigmoid_cross_entropy", "NONE",
                             multi_class_labels=_SIG_MULTI_LABELS, logits=_SIG_MULTI_LOGITS)
    assert_parity(actual, expected)
    np.testing.assert_allclose(actual, [[0, 0, 0], [0, 100, 100], [100, 0, 100]], atol=1e-3)
    # testSigmoidLabelSmoothingEqualsSoftmaxTwoLabel
    sig, sig_tf = _both("sigmoid_cross_entropy", multi_class_labels=np.array([[1, 0, 1]], F32),
                        logits=np.array([[100, -100, -100]], F32), label_smoothing=_LS)
    soft, soft_tf = _both("softmax_cross_entropy",
                          onehot_labels=np.array([[0, 1], [1, 0], [0, 1]], F32),
                          logits=np.array([[0, 100], [100, 0], [100, 0]], F32),
                          label_smoothing=_LS)
    assert_parity(sig, sig_tf)
    assert_parity(soft, soft_tf)
    np.testing.assert_allclose(float(sig), float(soft), atol=1e-3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tf_test_suite_cosine_deprecated_dim():
    kwargs = dict(labels=_COS_LABELS, predictions=_COS_PRED, dim=2,
                  weights=np.array([1, 0, 0, 1, 1, 1], F32).reshape(3, 2, 1))
    actual, expected = _both("cosine_distance", **kwargs)
    assert_parity(actual, expected)
    assert float(actual) == float(expected) == 0.75


# ComputeWeightedLossTest: raw losses 0..23 in shape (3, 2, 4), float64 as in TF's test (TF
# rounds float64 through float32 and lossforge does not: values are compared, not dtypes)
_CWL_RAW = np.arange(24, dtype=np.float64).reshape(3, 2, 4)
_CWL_VALID = {
    "none": None,
    "1x1x1": np.ones((1, 1, 1)), "1x1x4-ones": np.ones((1, 1, 4)), "1x2x1-ones": np.ones((1, 2, 1)),
    "1x2x4-ones": np.ones((1, 2, 4)), "3x1x1-ones": np.ones((3, 1, 1)),
    "3x1x4-ones": np.ones((3, 1, 4)), "3x2x1-ones": np.ones((3, 2, 1)),
    "3x2x4-ones": np.ones((3, 2, 4)),
    "scalar-17": 17.0,
    "1x1x1-17": np.array([[[17.0]]]),
    "1x2x1": np.array([[[17.0], [3.0]]]),
    "1x1x4": np.array([[[17.0, 0.0, 2.0, 5.0]]]),
    "3x1x1": np.array([[[17.0]], [[5.0]], [[2.0]]]),
    "3x2x1": np.array([[[17.0], [3.0]], [[5.0], [31.0]], [[2.0], [7.0]]]),
    "3x1x4": np.array([[[17.0, 0.0, 2.0, 5.0]], [[5.0, 31.0, 17.0, 5.0]],
                       [[7.0, 3.0, 11.0, 5.0]]]),
    "1x2x4": np.array([[[17.0, 0.0, 2.0, 5.0], [3.0, 13.0, 11.0, 2.0]]]),
    "3x2x4": np.array([[[17.0, 0.0, 2.0, 5.0], [3.0, 13.0, 11.0, 2.0]],
                       [[5.0, 31.0, 17.0, 5.0], [13.0, 3.0, 0.0, 11.0]],
                       [[0.0, 3.0, 11.0, 5.0], [13.0, 11.0, 1.0, 7.0]]]),
}


def _cwl_expected(weights, reduction):
    """The expected value exactly as TF's ComputeWeightedLossTest._test_valid_weights."""
    w = 1.0 if weights is None else weights
    weighted = w * _CWL_RAW
    if reduction == "NONE":
        return weighted
    if reduction == "SUM":
        return weighted.sum()
    broadcast = w * np.ones_like(_CWL_RAW)
    if reduction == "MEAN":
        return weighted.sum() / broadcast.sum()
    if reduction == "SUM_OVER_BATCH_SIZE":
        return weighted.sum() / _CWL_RAW.size
    return weighted.sum() / np.count_nonzero(broadcast)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weights_id", _CWL_VALID)
def test_tf_test_suite_compute_weighted_loss(weights_id, reduction):
    weights = _CWL_VALID[weights_id]
    kwargs = {"losses": _CWL_RAW} if weights is None else {"losses": _CWL_RAW, "weights": weights}
    actual, expected = _both("compute_weighted_loss", reduction, **kwargs)
    assert np.asarray(actual).dtype == np.float64  # documented: float64 stays float64
    printed = _cwl_expected(weights, reduction)
    assert_parity(actual, expected, scale=float(np.abs(_cwl_expected(weights, "SUM"))))
    np.testing.assert_allclose(actual, printed, rtol=1e-12)
    np.testing.assert_allclose(expected, printed, rtol=1e-6)


@pytest.mark.parametrize("weights", [
    pytest.param(np.zeros((2, 2, 2, 2)), id="too-many-dims"),
    pytest.param((17.0, 5.0, 2.0), id="3"),
    pytest.param(((17.0,), (5.0,), (2.0,)), id="3x1"),
    pytest.param(((17.0, 3.0), (5.0, 31.0), (2.0, 7.0)), id="3x2"),
    pytest.param((17.0, 3.0), id="2"),
    pytest.param((17.0,), id="scalar-1d"),
])
def test_tf_test_suite_compute_weighted_loss_invalid_weights(weights):
    with pytest.raises(ValueError, match="can not be broadcast to values"):
        TFL.compute_weighted_loss(_CWL_RAW, weights=weights)
    with pytest.raises(ValueError, match="can not be broadcast to values"):
        LF.compute_weighted_loss(_CWL_RAW, weights=weights)


def test_tf_test_suite_compute_weighted_loss_mismatched_dim():
    losses = _CWL_RAW.reshape(3, 2, 4, 1)
    weights = np.ones((3, 2, 4, 2))
    with pytest.raises(ValueError, match="can not be broadcast to values"):
        TFL.compute_weighted_loss(losses, weights=weights)
    with pytest.raises(ValueError, match="can not be broadcast to values"):
        LF.compute_weighted_loss(losses, weights=weights)


# MeanPairwiseSquaredErrorTest (compared with TF in graph mode, where the test runs)
_PW_P = np.array([[4, 8, 12], [8, 1, 3]], F32)
_PW_L = np.array([[1, 9, 2], [-5, -5, 7]], F32)
_PW_LABELS_3D = np.array([[[1, 9, 2], [12, 11, 10], [9, 8, 7]],
                          [[-5, -5, 7], [6, 5, 4], [3, 2, 1]]], F32)
_PW_PRED_3D = np.array([[[4, 8, 12], [1, 2, 3], [4, 5, 6]],
                        [[8, 1, 3], [7, 8, 9], [10, 11, 12]]], F32)


def _pairs_loss(labels, predictions):
    """TF setUp's 'manual' expected loss: per sample, the mean over pairs i<j, summed."""
    total = 0.0
    for lab, pred in zip(labels.reshape(len(labels), -1).astype(np.float64),
                         predictions.reshape(len(labels), -1).astype(np.float64)):
        n = lab.size
        pair = [((pred[i] - pred[j]) - (lab[i] - lab[j])) ** 2
                for i in range(n - 1) for j in range(i + 1, n)]
        total += sum(pair) / len(pair)
    return total


@pytest.mark.parametrize("labels,predictions,weights,printed", [
    pytest.param(_PW_L, _PW_L, 1.0, 0.0, id="testAllCorrectNoLossWeight"),
    pytest.param(_PW_L, _PW_P, 1.0, _pairs_loss(_PW_L, _PW_P), id="testNonZeroLoss"),
    pytest.param(_PW_L, _PW_P, 2.3, 2.3 * _pairs_loss(_PW_L, _PW_P),
                 id="testNonZeroLossWithPythonScalarWeight"),
    pytest.param(_PW_L, _PW_P, 0.0, 0.0, id="testNonZeroLossWithScalarZeroWeight"),
    pytest.param(_PW_L, _PW_P, np.zeros((2, 1), F32), 0.0,
                 id="testLossWithAllZeroBatchSpecificWeights"),
    pytest.param(_PW_LABELS_3D, _PW_PRED_3D, 1.0, 137.5, id="test3d"),
    pytest.param(_PW_LABELS_3D, _PW_PRED_3D, 3.0, 3.0 * 137.5, id="test3dWeightedScalar"),
    pytest.param(_PW_LABELS_3D, _PW_PRED_3D, np.ones((2, 3, 3), F32), 9 * 137.5,
                 id="test3dWeighted2x3x3"),  # TF: "TODO(ptucker): This doesn't look right."
])
def test_tf_test_suite_pairwise(labels, predictions, weights, printed):
    expected = tf_pairwise(labels, predictions, weights)
    actual = LF.mean_pairwise_squared_error(labels, predictions, weights=weights)
    assert_parity(actual, expected, what="pairwise")
    np.testing.assert_allclose(float(actual), printed, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(float(expected), printed, rtol=1e-5, atol=1e-3)


def test_tf_test_suite_pairwise_3d_manual_value():
    assert _pairs_loss(_PW_LABELS_3D, _PW_PRED_3D) == pytest.approx(137.5)


def test_tf_test_suite_pairwise_invalid_3d_weights():
    weights = np.asarray((1.2, 3.4))  # testInvalid3dWeighted2x0
    with pytest.raises(ValueError, match="can not be broadcast to values"):
        TFL.mean_pairwise_squared_error(_PW_LABELS_3D, _PW_PRED_3D, weights=weights)
    with pytest.raises(ValueError, match="can not be broadcast to values"):
        LF.mean_pairwise_squared_error(_PW_LABELS_3D, _PW_PRED_3D, weights=weights)


def test_pairwise_is_associative_across_batch_elements():
    # TF's testLossIsAssociativeAcrossBatchElements: loss(concat) = loss(part0) + loss(part1)
    rng = _rng("pairwise-assoc")
    labels = rng.uniform(0, 1, (2, 3, 4, 1)).astype(F32)
    predictions = rng.uniform(0, 1, (2, 3, 4, 1)).astype(F32)
    parts = [LF.mean_pairwise_squared_error(labels[i:i + 1], predictions[i:i + 1])
             for i in range(2)]
    whole = LF.mean_pairwise_squared_error(labels, predictions)
    assert_parity(whole, tf_pairwise(labels, predictions))
    for i in range(2):
        assert_parity(parts[i], tf_pairwise(labels[i:i + 1], predictions[i:i + 1]))
    assert float(parts[0]) > 0 and float(parts[1]) > 0
    np.testing.assert_allclose(float(whole), float(parts[0]) + float(parts[1]), rtol=1e-6)


_WEIGHTS_NONE_CASES = [
    ("absolute_difference", dict(labels=_P, predictions=_P)),
    ("mean_squared_error", dict(labels=_P, predictions=_P)),
    ("log_loss", dict(labels=_LOG_Y, predictions=_LOG_Y)),
    ("softmax_cross_entropy", dict(onehot_labels=np.eye(3, dtype=F32), logits=_SM_LOGITS)),
    ("sparse_softmax_cross_entropy", dict(labels=np.array([[0], [1], [2]], np.int32),
                                          logits=_SM_LOGITS)),
    ("cosine_distance", dict(labels=_COS_LABELS, predictions=_COS_LABELS, axis=2)),
    ("mean_pairwise_squared_error", dict(labels=_PW_L, predictions=_PW_L)),
    ("compute_weighted_loss", dict(losses=_CWL_RAW)),
]


@pytest.mark.parametrize("fn,kwargs", _WEIGHTS_NONE_CASES, ids=[c[0] for c in _WEIGHTS_NONE_CASES])
def test_tf_test_suite_weights_none_raises(fn, kwargs):
    # testValueErrorThrownWhenWeightIsNone / testNoneWeightRaisesValueError
    with pytest.raises(ValueError):
        getattr(TFL, fn)(weights=None, **kwargs)
    with pytest.raises(ValueError):
        getattr(LF, fn)(weights=None, **kwargs)


# seed 002: a worked example from the project's issues
_SEED2_LOGITS = np.array([[1, 2, 7], [3, 5, 2], [6, 1, 3], [8, 2, 0], [3, 6, 1]], F32)
_SEED2_CLASSES = np.array([2, 1, 0, 0, 1], np.int32)
_SEED2_ONEHOT = np.eye(3, dtype=F32)[_SEED2_CLASSES]
_SEED2_PER_EXAMPLE = np.array([0.00917445, 0.16984604, 0.05498521, 0.00281022, 0.05498521])


def test_seed_002_example():
    tf_rows = _numpy(tf.nn.softmax_cross_entropy_with_logits(_SEED2_ONEHOT, _SEED2_LOGITS))
    lf_rows = lossforge.nn.softmax_cross_entropy_with_logits(_SEED2_ONEHOT, _SEED2_LOGITS)
    lf_sparse_rows = lossforge.nn.sparse_softmax_cross_entropy_with_logits(
        labels=_SEED2_CLASSES, logits=_SEED2_LOGITS)
    for rows in (tf_rows, lf_rows, lf_sparse_rows):
        np.testing.assert_allclose(rows, _SEED2_PER_EXAMPLE, rtol=0, atol=1e-7)
    np.testing.assert_allclose(lf_sparse_rows, lf_rows, rtol=1e-6, atol=1e-7)
    assert lf_rows.dtype == F32

    for weights, printed in ((1.0, 0.0583602), (0.2, 0.011672)):
        onehot, ref = _both("softmax_cross_entropy", onehot_labels=_SEED2_ONEHOT,
                            logits=_SEED2_LOGITS, weights=weights)
        sparse, ref_sparse = _both("sparse_softmax_cross_entropy", labels=_SEED2_CLASSES,
                                   logits=_SEED2_LOGITS, weights=weights)
        for value in (onehot, ref, sparse, ref_sparse):
            np.testing.assert_allclose(float(value), printed, rtol=2e-5, atol=1e-7)
        assert_parity(onehot, ref)
        assert_parity(sparse, ref_sparse)
        np.testing.assert_allclose(float(onehot), float(sparse), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# NaN / inf propagation: lossforge must reproduce TF's NaN and inf pattern exactly

_NAN, _INF = np.nan, np.inf


def _bad_regression(fn, bad, **params):
    labels = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]], F32)
    predictions = np.array([[1.0, bad, 0.25], [0.0, 1.5, -0.5]], F32)
    return fn, dict(labels=labels, predictions=predictions, **params)


def _bad_hinge(bad):
    return "hinge_loss", dict(labels=np.array([[1, 0, 1], [0, 1, 0]], F32),
                              logits=np.array([[0.5, bad, bad], [bad, 2.0, -0.3]], F32))


def _bad_sigmoid(logit_row, ls):
    # each bad logit is met with labels 0, 1 and 0.5
    logits = np.array([logit_row] * 3, F32)
    labels = np.array([[0.0] * len(logit_row), [1.0] * len(logit_row), [0.5] * len(logit_row)], F32)
    return "sigmoid_cross_entropy", dict(multi_class_labels=labels, logits=logits,
                                         label_smoothing=ls)


def _bad_softmax(logit_row, target, ls):
    logits = np.array([[0.5, -1.0, 2.0], logit_row], F32)
    onehot = np.eye(3, dtype=F32)[[1, target]]
    return "softmax_cross_entropy", dict(onehot_labels=onehot, logits=logits, label_smoothing=ls)


def _bad_sparse(logit_row, target):
    logits = np.array([[0.5, -1.0, 2.0], logit_row], F32)
    return "sparse_softmax_cross_entropy", dict(labels=np.array([1, target], np.int32),
                                                logits=logits)


NONFINITE_CASES = {}
for _name, _extra in (("absolute_difference", {}), ("mean_squared_error", {}),
                      ("huber_loss", {"delta": 1.0}), ("huber_loss", {"delta": 0.3}),
                      ("huber_loss", {"delta": -0.5})):
    for _bad_id, _bad in (("nan", _NAN), ("+inf", _INF), ("-inf", -_INF)):
        _key = f"{_name}{'-delta' + str(_extra['delta']) if _extra else ''}-{_bad_id}"
        NONFINITE_CASES[_key] = _bad_regression(_name, _bad, **_extra)
for _bad_id, _bad in (("nan", _NAN), ("+inf", _INF), ("-inf", -_INF), ("1e4", 1e4),
                      ("-1e4", -1e4)):
    NONFINITE_CASES[f"hinge_loss-{_bad_id}"] = _bad_hinge(_bad)
    NONFINITE_CASES[f"compute_weighted_loss-{_bad_id}"] = (
        "compute_weighted_loss", dict(losses=np.array([[1.0, _bad, 0.25], [0.0, 1.5, -0.5]], F32)))
    NONFINITE_CASES[f"cosine_distance-{_bad_id}"] = (
        "cosine_distance", dict(labels=np.array([[0.6, 0.8, 0.0], [1.0, 0.0, 0.0]], F32),
                                predictions=np.array([[0.0, _bad, 1.0], [0.0, 1.0, 0.0]], F32),
                                axis=1))
# log_loss: p exactly 0 and 1 against labels 0, 1 and 0.5; p outside [0, 1]; NaN p
_LOG_LABELS = np.array([[0, 1, 0.5], [0, 1, 0.5], [0, 1, 0.5]], F32)
_LOG_PRED = np.array([[0, 0, 0], [1, 1, 1], [0.5, 0.25, 0.75]], F32)
for _eps in (0.0, 1e-7):
    NONFINITE_CASES[f"log_loss-p0and1-eps{_eps}"] = (
        "log_loss", dict(labels=_LOG_LABELS, predictions=_LOG_PRED, epsilon=_eps))
    NONFINITE_CASES[f"log_loss-outside01-eps{_eps}"] = (
        "log_loss", dict(labels=_LOG_LABELS,
                         predictions=np.array([[-0.5, 1.5, 2.0], [0.5, 0.5, 0.5],
                                               [0.5, -1e-3, 0.5]], F32), epsilon=_eps))
    NONFINITE_CASES[f"log_loss-nan-inf-eps{_eps}"] = (
        "log_loss", dict(labels=_LOG_LABELS,
                         predictions=np.array([[_NAN, _NAN, _NAN], [_INF, _INF, _INF],
                                               [-_INF, 0.5, -_INF]], F32), epsilon=_eps))
for _ls in (0.0, 0.2):
    for _row_id, _row in (("nan", [_NAN, 1.0]), ("inf", [_INF, -_INF]),
                          ("1e4", [1e4, -1e4]), ("mixed", [_NAN, _INF, -_INF, 1e4, -1e4, 0.0])):
        NONFINITE_CASES[f"sigmoid_cross_entropy-ls{_ls}-{_row_id}"] = _bad_sigmoid(_row, _ls)
for _row_id, _row, _target in (
        ("nan", [_NAN, 1.0, 0.0], 1),
        ("+inf-target", [_INF, 1.0, 0.0], 0),
        ("+inf-other", [_INF, 1.0, 0.0], 1),
        ("-inf-other", [1.0, -_INF, 0.0], 0),     # TF: defined for sparse, NaN (0*inf) for one-hot
        ("-inf-target", [1.0, -_INF, 0.0], 1),
        ("all--inf", [-_INF, -_INF, -_INF], 0),
        ("1e4", [1e4, -1e4, 0.0], 1),
        ("1e4-target", [1e4, -1e4, 0.0], 0),
        ("all-1e4", [-1e4, -1e4, -1e4], 2)):
    for _ls in (0.0, 0.1):
        NONFINITE_CASES[f"softmax_cross_entropy-ls{_ls}-{_row_id}"] = _bad_softmax(_row, _target,
                                                                                   _ls)
    NONFINITE_CASES[f"sparse_softmax_cross_entropy-{_row_id}"] = _bad_sparse(_row, _target)

NONFINITE_WEIGHTS = ("ones", "zero_where_nonfinite", "all_zero", "nan_weight", "inf_weight",
                     "scalar_nan", "scalar_inf", "scalar_0")


def _nonfinite_weights(kind, unweighted):
    shape = unweighted.shape
    if kind == "ones":
        return np.ones(shape, F32)
    if kind == "zero_where_nonfinite":
        return np.where(np.isfinite(unweighted), 1.0, 0.0).astype(F32)
    if kind == "all_zero":
        return np.zeros(shape, F32)
    if kind in ("nan_weight", "inf_weight"):  # on a finite loss (or the first element)
        w = np.ones(shape, F32)
        finite = np.flatnonzero(np.isfinite(unweighted))
        w.flat[finite[0] if finite.size else 0] = np.nan if kind == "nan_weight" else np.inf
        return w
    if kind == "scalar_nan":
        return float("nan")
    if kind == "scalar_inf":
        return float("inf")
    if kind == "scalar_0":
        return 0.0
    raise AssertionError(kind)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weights_kind", NONFINITE_WEIGHTS)
@pytest.mark.parametrize("case_id", NONFINITE_CASES)
def test_nonfinite_parity(case_id, weights_kind, reduction):
    fn, kwargs = NONFINITE_CASES[case_id]
    unweighted = _numpy(getattr(TFL, fn)(reduction=TFL.Reduction.NONE, **kwargs))
    weights = _nonfinite_weights(weights_kind, unweighted)
    actual, expected = _both(fn, reduction, weights=weights, **kwargs)
    if reduction == "NONE":
        scale = 0.0
    else:
        w64 = np.asarray(weights, np.float64)
        finite_w = np.where(np.isfinite(w64), w64, 0.0)  # the scale of the finite part only
        with np.errstate(invalid="ignore", over="ignore"):
            scale = reduction_scale(unweighted * finite_w, finite_w, unweighted.shape, reduction,
                                    expected)
    assert_parity(actual, expected, scale=scale, what=f"{case_id} {weights_kind} {reduction}")


def test_nonfinite_cases_cover_defined_extremes():
    """The table above does hit TF values that are finite or inf where a naive formula is NaN."""
    fn, kwargs = NONFINITE_CASES["sparse_softmax_cross_entropy--inf-other"]
    assert np.isfinite(_numpy(TFL.sparse_softmax_cross_entropy(
        reduction=TFL.Reduction.NONE, **kwargs))).all()
    fn, kwargs = NONFINITE_CASES["softmax_cross_entropy-ls0.0-1e4"]
    assert np.isfinite(_numpy(TFL.softmax_cross_entropy(
        reduction=TFL.Reduction.NONE, **kwargs))).all()


# --------------------------------------------------------------------------------------------
# more shapes, parameter values and input types (each against TF, for every reduction)

def _extra_cases():
    rng = _rng("extra-cases")
    u = lambda lo, hi, shape, dt=F32: rng.uniform(lo, hi, shape).astype(dt)  # noqa: E731
    # 40960 elements: above lossforge's parallel-kernel threshold (32768), so these run the
    # multi-threaded kernels (one elementwise and one row-wise formula: compiling is slow)
    big = (256, 160)
    logits3 = (3 * rng.normal(size=(2, 3, C))).astype(F32)
    onehot3 = np.eye(C, dtype=F32)[rng.integers(0, C, (2, 3))]
    cos3_l, cos3_p = _unit(rng, (2, 3, 4), -1), _unit(rng, (2, 3, 4), -1)
    cases = {
        # softmax / sparse over 3-d logits: losses [2, 3]
        "softmax-3d-per-element": ("softmax_cross_entropy", dict(
            onehot_labels=onehot3, logits=logits3, weights=u(0, 2, (2, 3)))),
        "softmax-3d-ls0.3-per-sample": ("softmax_cross_entropy", dict(
            onehot_labels=onehot3, logits=logits3, weights=u(0.5, 2, (2, 1)),
            label_smoothing=0.3)),
        "softmax-soft-labels": ("softmax_cross_entropy", dict(
            onehot_labels=np.full((B, C), 1.0 / C, F32), logits=logits3[0, :, :].repeat(2, 0)[:B],
            weights=u(0, 2, (B,)))),
        "softmax-negative-label-smoothing": ("softmax_cross_entropy", dict(
            onehot_labels=onehot3, logits=logits3, label_smoothing=-0.2)),
        "sparse-3d-per-element": ("sparse_softmax_cross_entropy", dict(
            labels=rng.integers(0, C, (2, 3)).astype(np.int64), logits=logits3,
            weights=u(0, 2, (2, 3)))),
        "sparse-3d-weights-trailing-1": ("sparse_softmax_cross_entropy", dict(
            labels=rng.integers(0, C, (2, 3)).astype(np.int32), logits=logits3,
            weights=u(0, 2, (2, 3, 1)))),
        "sigmoid-negative-label-smoothing": ("sigmoid_cross_entropy", dict(
            multi_class_labels=u(0, 1, (B, D)), logits=u(-4, 4, (B, D)), label_smoothing=-0.3)),
        "sigmoid-label-smoothing-1": ("sigmoid_cross_entropy", dict(
            multi_class_labels=u(0, 1, (B, D)), logits=u(-4, 4, (B, D)), label_smoothing=1.0)),
        "cosine-axis-minus-1": ("cosine_distance", dict(
            labels=cos3_l, predictions=cos3_p, axis=-1, weights=u(0, 2, (2, 1, 1)))),
        "cosine-axis-1-of-3d": ("cosine_distance", dict(
            labels=cos3_l, predictions=cos3_p, axis=1, weights=u(0, 2, (1, 1, 4)))),
        "cosine-unnormalised": ("cosine_distance", dict(
            labels=u(-3, 3, (B, D)), predictions=u(-3, 3, (B, D)), axis=1)),
        "huber-delta0": ("huber_loss", dict(labels=u(-2, 2, (B, D)), predictions=u(-2, 2, (B, D)),
                                            delta=0.0)),
        "huber-negative-delta": ("huber_loss", dict(
            labels=u(-2, 2, (B, D)), predictions=u(-2, 2, (B, D)), delta=-0.5)),
        "log_loss-large-epsilon": ("log_loss", dict(
            labels=u(0, 1, (B, D)), predictions=u(0, 1, (B, D)), epsilon=0.5)),
        "log_loss-negative-epsilon": ("log_loss", dict(
            labels=u(0, 1, (B, D)), predictions=u(0.2, 0.8, (B, D)), epsilon=-0.1)),
        "hinge-fractional-labels": ("hinge_loss", dict(
            labels=np.array([[0.5, 0.25, 2.0]] * 2, F32), logits=u(-2, 2, (2, 3)))),
        "weights-1x1": ("mean_squared_error", dict(
            labels=u(-2, 2, (B, D)), predictions=u(-2, 2, (B, D)), weights=np.full((1, 1), 1.5))),
        "weights-int": ("absolute_difference", dict(
            labels=u(-2, 2, (B, D)), predictions=u(-2, 2, (B, D)),
            weights=rng.integers(0, 3, (B, D)).astype(np.int32))),
        "weights-bool": ("absolute_difference", dict(
            labels=u(-2, 2, (B, D)), predictions=u(-2, 2, (B, D)),
            weights=rng.integers(0, 2, (B, 1)).astype(bool))),
        "weights-float64": ("absolute_difference", dict(
            labels=u(-2, 2, (B, D)), predictions=u(-2, 2, (B, D)),
            weights=rng.uniform(0, 2, (1, D)))),
        "weights-cancelling-and-negative-zero": ("absolute_difference", dict(
            labels=u(-2, 2, (2, 4)), predictions=u(-2, 2, (2, 4)),
            weights=np.array([[1.0, -1.0, 0.5, -0.5], [-0.0, 2.0, -2.0, 0.0]], F32))),
        "python-lists": ("mean_squared_error", dict(
            labels=[[0.5, 1.0], [2.0, -1.0]], predictions=[[1.0, 1.0], [0.0, 0.5]],
            weights=[[1.0], [0.5]])),
        "int-inputs": ("absolute_difference", dict(
            labels=np.array([[1, 9, 2], [-5, -2, 6]], np.int32),
            predictions=np.array([[4, 8, 12], [8, 1, 3]], np.int64))),
        "1d-inputs": ("huber_loss", dict(labels=u(-2, 2, (7,)), predictions=u(-2, 2, (7,)),
                                         weights=u(0, 2, (7,)))),
        "4d-inputs": ("log_loss", dict(labels=u(0, 1, (2, 1, 3, 2)),
                                       predictions=u(0.05, 0.95, (2, 1, 3, 2)),
                                       weights=u(0, 2, (2, 1, 1, 2)))),
        "empty-batch": ("absolute_difference", dict(
            labels=np.zeros((0, 3), F32), predictions=np.zeros((0, 3), F32))),
        "empty-batch-softmax": ("softmax_cross_entropy", dict(
            onehot_labels=np.zeros((0, 3), F32), logits=np.zeros((0, 3), F32))),
        "parallel-mse": ("mean_squared_error", dict(
            labels=u(-2, 2, big), predictions=u(-2, 2, big), weights=u(-1, 2, (big[0], 1)))),
        "parallel-softmax": ("softmax_cross_entropy", dict(
            onehot_labels=np.eye(8, dtype=F32)[rng.integers(0, 8, 40000)],
            logits=u(-5, 5, (40000, 8)), weights=u(0, 2, (40000,)))),
    }
    return cases


EXTRA_CASES = _extra_cases()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case_id", EXTRA_CASES)
def test_extra_parity(case_id, reduction):
    fn, kwargs = EXTRA_CASES[case_id]
    actual, expected = _both(fn, reduction, **kwargs)
    if np.asarray(actual).dtype != np.float64:  # float64 weights/inputs: documented difference
        assert np.asarray(actual).dtype == expected.dtype, case_id
    scale = 0.0
    if reduction != "NONE":
        weighted = _numpy(getattr(TFL, fn)(reduction=TFL.Reduction.NONE, **kwargs))
        scale = reduction_scale(weighted, kwargs.get("weights", 1.0), weighted.shape, reduction,
                                expected)
    assert_parity(actual, expected, scale=scale, what=f"{case_id} {reduction}")


# --------------------------------------------------------------------------------------------
# float16 / float64 logits and integer labels for the cross-entropies

CE_CASES = [c for c in CASES if "cross_entropy" in c.fn]
DTYPE_TOL = {np.float16: dict(rtol=4e-3, atol_rel=4e-3),
             np.float64: dict(rtol=RTOL, atol_rel=ATOL_REL)}


def _cast_float_inputs(kwargs, dtype):
    return {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
            for k, v in kwargs.items()}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ("scalar_2.5", "per_sample", "per_element_zeros"))
@pytest.mark.parametrize("dtype", (np.float16, np.float64), ids=("float16", "float64"))
@pytest.mark.parametrize("case", CE_CASES, ids=[c.id for c in CE_CASES])
def test_cross_entropy_dtypes(case, dtype, kind, reduction):
    rng = _rng(case.id, "dtype", kind)
    kwargs = _cast_float_inputs(case.inputs(rng), dtype)
    kwargs["weights"] = make_weights(kind, case.loss_shape, rng)
    actual, expected = _both(case.fn, reduction, **kwargs)
    # TF keeps the logits dtype; for float64 it rounds to float32 inside compute_weighted_loss,
    # lossforge does not (a documented difference), so compare values only.
    assert np.asarray(actual).dtype == dtype
    weighted = _numpy(getattr(TFL, case.fn)(reduction=TFL.Reduction.NONE, **kwargs))
    scale = reduction_scale(weighted, kwargs["weights"], case.loss_shape, reduction, expected)
    assert_parity(actual, expected, scale=scale, what=f"{case.id} {dtype.__name__}",
                  **DTYPE_TOL[dtype])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_dtype", (np.int32, np.int64))
@pytest.mark.parametrize("case", CE_CASES + [CASES[5]], ids=[c.id for c in CE_CASES + [CASES[5]]])
def test_integer_labels(case, label_dtype, reduction):
    rng = _rng(case.id, "int-labels")
    kwargs = case.inputs(rng)
    label_key = next(k for k in kwargs if "labels" in k)
    kwargs[label_key] = np.rint(kwargs[label_key]).astype(label_dtype)
    kwargs["weights"] = make_weights("per_element_zeros", case.loss_shape, rng)
    actual, expected = _both(case.fn, reduction, **kwargs)
    assert np.asarray(actual).dtype == expected.dtype
    assert_parity(actual, expected, scale=10.0, what=f"{case.id} {label_dtype.__name__} labels")


def test_sparse_trailing_one_labels_and_weights():
    rng = _rng("sparse-trailing")
    logits = (3 * rng.normal(size=(B, C))).astype(F32)
    labels = rng.integers(0, C, (B, 1)).astype(np.int64)
    weights = rng.uniform(0.5, 2, (B, 1)).astype(F32)
    for reduction in REDUCTIONS:
        actual, expected = _both("sparse_softmax_cross_entropy", reduction, labels=labels,
                                 logits=logits, weights=weights)
        assert_parity(actual, expected, scale=20.0, what=reduction)


# --------------------------------------------------------------------------------------------
# lossforge.nn against tf.nn (unreduced, in the logits dtype)

NN_TOL = {np.float16: dict(rtol=4e-3, atol_rel=4e-3),
          np.float32: dict(rtol=RTOL, atol_rel=ATOL_REL),
          np.float64: dict(rtol=1e-10, atol_rel=1e-12)}
NN_DTYPES = pytest.mark.parametrize("dtype", tuple(NN_TOL), ids=("float16", "float32", "float64"))


@NN_DTYPES
def test_nn_sigmoid_cross_entropy_with_logits(dtype):
    rng = _rng("nn-sigmoid", dtype.__name__)
    labels = rng.uniform(0, 1, (2, 3, 4)).astype(dtype)
    logits = (4 * rng.normal(size=(2, 3, 4))).astype(dtype)
    expected = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    actual = lossforge.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    assert actual.dtype == expected.dtype == dtype
    assert_parity(actual, expected, **NN_TOL[dtype])


@pytest.mark.parametrize("axis", (-1, 0, 1, 2))
@NN_DTYPES
def test_nn_softmax_cross_entropy_with_logits(dtype, axis):
    rng = _rng("nn-softmax", dtype.__name__, axis)
    raw = rng.uniform(0, 1, (2, 3, 4))
    labels = (raw / raw.sum(axis=axis, keepdims=True)).astype(dtype)  # soft labels
    logits = (3 * rng.normal(size=(2, 3, 4))).astype(dtype)
    expected = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=axis)
    actual = lossforge.nn.softmax_cross_entropy_with_logits(labels, logits, axis=axis)
    assert actual.dtype == expected.dtype == dtype
    assert_parity(actual, expected, **NN_TOL[dtype])


@pytest.mark.parametrize("label_dtype", (np.int32, np.int64))
@NN_DTYPES
def test_nn_sparse_softmax_cross_entropy_with_logits(dtype, label_dtype):
    rng = _rng("nn-sparse", dtype.__name__, label_dtype.__name__)
    labels = rng.integers(0, C, (2, 3)).astype(label_dtype)
    logits = (3 * rng.normal(size=(2, 3, C))).astype(dtype)
    expected = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    actual = lossforge.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    assert actual.dtype == expected.dtype == dtype
    assert_parity(actual, expected, **NN_TOL[dtype])


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=("float32", "float64"))
def test_nn_low_rank_inputs(dtype):
    logits = np.array([0.5, -1.0, 2.0], dtype)
    labels = np.array([0.2, 0.3, 0.5], dtype)
    tol = NN_TOL[dtype]
    assert_parity(lossforge.nn.softmax_cross_entropy_with_logits(labels, logits),
                  tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits), **tol)
    assert_parity(lossforge.nn.sparse_softmax_cross_entropy_with_logits(
                      labels=np.int32(2), logits=logits),
                  tf.nn.sparse_softmax_cross_entropy_with_logits(labels=np.int32(2),
                                                                 logits=logits), **tol)
    assert_parity(lossforge.nn.sigmoid_cross_entropy_with_logits(labels=dtype(0.3),
                                                                 logits=dtype(-1.5)),
                  tf.nn.sigmoid_cross_entropy_with_logits(labels=dtype(0.3), logits=dtype(-1.5)),
                  **tol)


_NN_ROWS = np.array([[_NAN, 1.0, 0.0], [_INF, 1.0, 0.0], [1.0, -_INF, 0.0],
                     [-_INF, -_INF, -_INF], [_INF, _INF, 0.0], [1e4, -1e4, 0.0],
                     [-1e4, -1e4, -1e4], [0.5, -1.0, 2.0]])


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=("float32", "float64"))
@pytest.mark.parametrize("target", (0, 1, 2))
def test_nn_nonfinite_parity(dtype, target):
    logits = _NN_ROWS.astype(dtype)
    tol = NN_TOL[dtype]
    onehot = np.eye(3, dtype=dtype)[[target] * len(logits)]
    assert_parity(lossforge.nn.softmax_cross_entropy_with_logits(onehot, logits),
                  tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits),
                  what="softmax", **tol)
    labels = np.full(len(logits), target, np.int32)
    assert_parity(lossforge.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                        logits=logits),
                  tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
                  what="sparse", **tol)
    z = np.broadcast_to(np.array([0.0, 1.0, 0.5], dtype)[target], logits.shape).copy()
    assert_parity(lossforge.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=logits),
                  tf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=logits),
                  what="sigmoid", **tol)


# --------------------------------------------------------------------------------------------
# error parity: wherever TF raises, lossforge raises ValueError (TypeError for a bad keyword)

_X23 = np.ones((2, 3), F32)
_X21 = np.ones((2, 1), F32)
_X32 = np.ones((3, 2), F32)
_LOGITS = np.zeros((2, 3), F32)

ERROR_CASES = []
for _fn, _a, _b in (("absolute_difference", "labels", "predictions"),
                    ("mean_squared_error", "labels", "predictions"),
                    ("huber_loss", "labels", "predictions"),
                    ("log_loss", "labels", "predictions"),
                    ("hinge_loss", "labels", "logits"),
                    ("sigmoid_cross_entropy", "multi_class_labels", "logits")):
    ERROR_CASES += [
        (f"{_fn}-shapes-2x3-vs-2x1", _fn, {_a: _X23, _b: _X21}),
        (f"{_fn}-shapes-2x3-vs-3x2", _fn, {_a: _X23, _b: _X32}),
        (f"{_fn}-weights-[B]", _fn, {_a: _X23, _b: _X23, "weights": np.ones(2, F32)}),
        (f"{_fn}-weights-[B,2]", _fn, {_a: _X23, _b: _X23, "weights": np.ones((2, 2), F32)}),
        (f"{_fn}-weights-rank3", _fn, {_a: _X23, _b: _X23, "weights": np.ones((2, 3, 1), F32)}),
        (f"{_fn}-labels-None", _fn, {_a: None, _b: _X23}),
        (f"{_fn}-bad-reduction", _fn, {_a: _X23, _b: _X23, "reduction": "weighted_median"}),
    ]
ERROR_CASES += [
    ("compute_weighted_loss-weights-[B]", "compute_weighted_loss",
     {"losses": _X23, "weights": np.ones(2, F32)}),
    ("compute_weighted_loss-weights-[3,3]", "compute_weighted_loss",
     {"losses": _X23, "weights": np.ones((3, 3), F32)}),
    ("softmax-shapes", "softmax_cross_entropy",
     {"onehot_labels": np.eye(3, dtype=F32)[:2], "logits": np.zeros((2, 4), F32)}),
    ("softmax-weights-[B,C]", "softmax_cross_entropy",
     {"onehot_labels": np.eye(3, dtype=F32)[:2], "logits": _LOGITS, "weights": _X23}),
    ("softmax-weights-[B,1]", "softmax_cross_entropy",
     {"onehot_labels": np.eye(3, dtype=F32)[:2], "logits": _LOGITS, "weights": _X21}),
    ("softmax-weights-[3]", "softmax_cross_entropy",
     {"onehot_labels": np.eye(3, dtype=F32)[:2], "logits": _LOGITS,
      "weights": np.ones(3, F32)}),
    ("sparse-label-too-large", "sparse_softmax_cross_entropy",
     {"labels": np.array([0, 3], np.int32), "logits": _LOGITS}),
    ("sparse-label-negative", "sparse_softmax_cross_entropy",
     {"labels": np.array([-1, 0], np.int64), "logits": _LOGITS}),
    ("sparse-labels-[B,2]", "sparse_softmax_cross_entropy",
     {"labels": np.zeros((2, 2), np.int32), "logits": _LOGITS}),
    ("sparse-labels-rank-too-low", "sparse_softmax_cross_entropy",
     {"labels": np.zeros(2, np.int32), "logits": np.zeros((2, 2, 3), F32)}),
    ("sparse-labels-wrong-batch", "sparse_softmax_cross_entropy",
     {"labels": np.zeros(3, np.int32), "logits": _LOGITS}),
    ("sparse-weights-[B,C]", "sparse_softmax_cross_entropy",
     {"labels": np.zeros(2, np.int32), "logits": _LOGITS, "weights": _X23}),
    ("cosine-no-axis", "cosine_distance", {"labels": _X23, "predictions": _X23}),
    ("cosine-axis-out-of-range", "cosine_distance",
     {"labels": _X23, "predictions": _X23, "axis": 2}),
    ("cosine-dim-and-axis", "cosine_distance",
     {"labels": _X23, "predictions": _X23, "axis": 1, "dim": 1}),
    ("cosine-shapes", "cosine_distance", {"labels": _X23, "predictions": _X32, "axis": 1}),
    ("cosine-full-weights", "cosine_distance",
     {"labels": _X23, "predictions": _X23, "axis": 1, "weights": _X23}),
    ("cosine-weights-[B]", "cosine_distance",
     {"labels": _X23, "predictions": _X23, "axis": 1, "weights": np.ones(2, F32)}),
    ("pairwise-shapes", "mean_pairwise_squared_error", {"labels": _X23, "predictions": _X21}),
    ("pairwise-weights-[B]", "mean_pairwise_squared_error",
     {"labels": _X23, "predictions": _X23, "weights": np.ones(2, F32)}),
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("fn,kwargs", [pytest.param(c[1], c[2], id=c[0]) for c in ERROR_CASES])
def test_error_parity(fn, kwargs):
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        getattr(TFL, fn)(**kwargs)
    with pytest.raises(ValueError):
        getattr(LF, fn)(**kwargs)


def test_error_parity_pairwise_has_no_reduction():
    kwargs = dict(labels=_X23, predictions=_X23, reduction=TFL.Reduction.SUM)
    with pytest.raises(TypeError):
        TFL.mean_pairwise_squared_error(**kwargs)
    with pytest.raises(TypeError):
        LF.mean_pairwise_squared_error(**kwargs)


NN_ERROR_CASES = [
    ("sigmoid-shapes", "sigmoid_cross_entropy_with_logits", {"labels": _X23, "logits": _X21}),
    ("softmax-shapes", "softmax_cross_entropy_with_logits",
     {"labels": _X23, "logits": np.zeros((2, 4), F32)}),
    ("sparse-label-too-large", "sparse_softmax_cross_entropy_with_logits",
     {"labels": np.array([0, 3], np.int32), "logits": _LOGITS}),
    ("sparse-label-negative", "sparse_softmax_cross_entropy_with_logits",
     {"labels": np.array([0, -1], np.int64), "logits": _LOGITS}),
    ("sparse-rank", "sparse_softmax_cross_entropy_with_logits",
     {"labels": np.zeros((2, 3), np.int32), "logits": _LOGITS}),
]


@pytest.mark.parametrize("fn,kwargs", [pytest.param(c[1], c[2], id=c[0]) for c in NN_ERROR_CASES])
def test_nn_error_parity(fn, kwargs):
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        getattr(tf.nn, fn)(**kwargs)
    with pytest.raises(ValueError):
        getattr(lossforge.nn, fn)(**kwargs)


def test_softmax_gradients_flush_what_tf_flushes_far_below_the_row_max():
    """TF's CPU softmax flushes its subnormal results to 0: a logit more than 87.34 below its
    row's max has a softmax (and gradient) of 0 there, as in lossforge (`vmath.row_softmax_at`);
    the rest of the gradient matches TF's within float32 rounding (lossforge keeps a subnormal
    product of a normal softmax and the gradient's scale, which TF flushes)."""
    logits = np.array([[0.0, -86.0, -86.9, -87.2, -87.5, -88.0, -95.0, -1e4],
                       [5.0, 5.0, -83.0, -90.0, 1.0, -120.0, -87.2, 0.0]], np.float32)
    labels = np.array([1, 0])
    onehot = np.eye(8, dtype=np.float32)[labels]
    x = tf.constant(logits)
    for tf_loss, lf_call in (
            (lambda x: TFL.sparse_softmax_cross_entropy(labels, x),
             lambda: lossforge.registry.get("sparse_softmax_cross_entropy").value_and_grad(
                 labels, logits)),
            (lambda x: TFL.softmax_cross_entropy(onehot, x),
             lambda: lossforge.registry.get("softmax_cross_entropy").value_and_grad(onehot, logits))):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf_loss(x)
        want = tape.gradient(value, x).numpy()
        got_value, got = lf_call()
        np.testing.assert_allclose(got_value, value.numpy(), rtol=RTOL)
        far = logits - logits.max(axis=1, keepdims=True) < -87.34  # exp is subnormal there
        assert (got[far] == 0).all() and (want[far] == 0).all()
        # elsewhere within float32 rounding, and within a subnormal of TF's flushed 0s
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=np.finfo(np.float32).tiny)


def test_sigmoid_losses_flush_what_tf_flushes_at_large_negative_margins():
    """Where ``exp(-|x|)`` is a subnormal float32 (|x| > 87.34), TF's CPU kernels flush it to 0,
    and so do lossforge's float32 kernels (`vmath.exp_at_most_0`): sigmoid cross-entropy's value
    and gradient are 0 at x = -87.5, z = 0, and ``exp(-87.2)`` is still kept."""
    x_values = np.array([-86.0, -87.2, -87.3, -87.4, -87.5, -88.8, -100.0, 87.5, 90.0], np.float32)
    for z in (0.0, 1.0):
        labels = np.full(x_values.shape, z, np.float32)
        x = tf.constant(x_values)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=x)
        want_grad = tape.gradient(value, x).numpy()
        spec = lossforge.registry.get("sigmoid_cross_entropy")
        got = spec(labels, x_values, reduction=Reduction.NONE)
        _, got_grad = spec.value_and_grad(labels, x_values, reduction=Reduction.SUM)
        assert np.array_equal(got == 0, value.numpy() == 0), (got, value.numpy())
        np.testing.assert_allclose(got, value.numpy(), rtol=RTOL)
        assert np.array_equal(got_grad == 0, want_grad == 0), (got_grad, want_grad)
        np.testing.assert_allclose(got_grad, want_grad, rtol=RTOL)
