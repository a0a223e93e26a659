"""Numerical edge cases of issue 7, each against the TF semantics page or the documented choice.

Already covered elsewhere (not repeated here):
* probabilities 0/1 with epsilon=0 (values): test_nn.test_log_loss_at_probabilities_zero_and_one,
  test_tf_parity.test_nonfinite_parity (every reduction and weighting);
* logits of +-1e4, +-inf, NaN (values): test_nn (stability, propagation), test_tf_parity
  NONFINITE_CASES, test_extra_losses.test_focal_at_extreme_logits_and_gamma_zero;
* all-zero and negative weights under every reduction: test_losses.test_every_weight_kind_
  matches_reference (cases.weight_kinds has "all_zero", "negative", "scalar_zero");
* empty and size-1 batches of an elementwise loss: test_losses.test_scalar_empty_and_size_one_
  shapes; float16 results of the TF functions: test_losses.test_output_dtype_follows_input;
* sigmoid label smoothing 1, Huber delta 0 against TF: test_tf_parity "extra" cases.
What follows is what those leave out: gradients at the edges, weights summing to zero, empty
batches of every loss kind, float16 accumulation, softmax/sparse smoothing of 0 and 1, one class,
zero vectors, one element per pairwise sample.
"""
import math

import numpy as np
import pytest

import lossforge
import reference as ref
from cases import CASE_IDS, CASES
from lossforge import Reduction, registry

L = lossforge.losses
R = Reduction
REDUCTIONS = list(Reduction.all())
RIDS = [f"{r.name}" for r in REDUCTIONS]


# --- weights that sum to zero ----------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_weights_summing_to_zero_under_every_reduction(case, reduction):
    """sum(W) == 0 exactly: MEAN is div_no_nan -> 0; the other reductions are unaffected."""
    rng = np.random.default_rng(10)
    inputs = case.make(rng, np.float64)
    losses = ref.f64(case.expected(inputs))
    w = np.zeros(losses.shape)
    flat = w.reshape(-1)
    flat[0::2], flat[1::2] = 1.5, -1.5
    if flat.size % 2:
        flat[-1] = 0.0
    assert w.sum() == 0.0 and np.count_nonzero(w) > 0
    got = case.call(inputs, weights=w, reduction=reduction)
    want = ref.reduce(losses, w, reduction.value)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if reduction is R.MEAN:
        assert got == 0.0


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
@pytest.mark.parametrize("weights", ["all_zero", "sum_zero", "negative"])
def test_gradient_follows_the_denominator(weights, reduction):
    """value_and_grad: the gradient is W * dL/dp / denominator, exactly 0 where the reduction's
    denominator is 0 (div_no_nan's gradient), and divides normally by a negative one."""
    spec = registry.get("mean_squared_error")
    rng = np.random.default_rng(11)
    y, p = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    w = {"all_zero": np.zeros((3, 4)), "sum_zero": np.tile([1.0, -1.0, 2.0, -2.0], (3, 1)),
         "negative": -rng.uniform(0.5, 2.0, size=(3, 4))}[weights]
    value, grad = spec.value_and_grad(y, p, w, reduction)
    denominator = {R.NONE: 1.0, R.SUM: 1.0, R.MEAN: w.sum(), R.SUM_OVER_BATCH_SIZE: 12.0,
                   R.SUM_BY_NONZERO_WEIGHTS: float(np.count_nonzero(w))}[reduction]
    want = np.zeros_like(p) if denominator == 0 else 2 * (p - y) * w / denominator
    np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(value, ref.reduce(ref.mean_squared_error(y, p), w, reduction.value),
                               rtol=1e-12, atol=1e-15)


# --- probabilities 0 and 1 with epsilon = 0: gradients -----------------------------------------

def test_log_loss_gradient_at_probabilities_zero_and_one_with_epsilon_zero():
    """d/dp = -y/p + (1-y)/(1-p): infinite where the value is infinite, NaN where it is NaN
    (0 * log 0), finite elsewhere -- never a finite gradient for a non-finite value."""
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0])
    p = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.5, 0.5])
    spec = registry.get("log_loss")
    value, grad = spec.value_and_grad(y, p, 1.0, R.NONE, epsilon=0.0)
    np.testing.assert_array_equal(value, ref.log_loss(y, p, 0.0))
    assert np.isinf(value[:2]).all() and np.isnan(value[2:4]).all()
    assert np.isinf(grad[:2]).all() and np.sign(grad[:2]).tolist() == [1.0, -1.0]
    assert not np.isfinite(grad[2:6]).any()
    np.testing.assert_allclose(grad[6:], [-2.0, 2.0])


# --- logits of +-1e4: finite gradients ----------------------------------------------------------

@pytest.mark.parametrize("name", ["sigmoid_cross_entropy", "hinge_loss", "squared_hinge", "focal",
                                  "softmax_cross_entropy", "sparse_softmax_cross_entropy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_at_logits_of_plus_minus_1e4_are_finite_and_right(name, dtype):
    spec = registry.get(name)
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0]], dtype)
    if name == "sparse_softmax_cross_entropy":
        labels = np.array([0, 0])
    elif name == "softmax_cross_entropy":
        labels = np.eye(3, dtype=dtype)[[0, 0]]
    else:
        labels = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype)
    value, grad = spec.value_and_grad(labels, x, reduction=R.SUM)
    assert np.isfinite(value) and np.isfinite(grad).all() and grad.dtype == dtype
    if name == "sigmoid_cross_entropy":  # sigmoid(x) - z
        want = 0.5 * (1 + np.tanh(0.5 * x.astype(np.float64))) - labels  # (no exp overflow)
        np.testing.assert_allclose(grad, want, atol=1e-6)
    if name in ("softmax_cross_entropy", "sparse_softmax_cross_entropy"):  # softmax - onehot
        x64 = x.astype(np.float64)
        soft = np.exp(x64 - x64.max(-1, keepdims=True))
        soft /= soft.sum(-1, keepdims=True)
        np.testing.assert_allclose(grad, soft - np.eye(3)[[0, 0]], atol=1e-6)


# --- empty batches of every kind of loss --------------------------------------------------------

def _empty_inputs(name):
    spec = registry.get(name)
    if name == "sparse_softmax_cross_entropy":
        return np.zeros((0,), np.int64), np.zeros((0, 4)), {}
    if name == "cosine_distance":
        return np.zeros((0, 3)), np.zeros((0, 3)), {"axis": 1}
    if spec.kind == "rowwise" or True:
        return np.zeros((0, 4)), np.zeros((0, 4)), {}


@pytest.mark.parametrize("name", registry.names())
def test_empty_batches_of_every_registered_loss(name):
    """0 under every reduction (div_no_nan), empty NONE results and gradients of the inputs'
    shape, for every registered loss."""
    spec = registry.get(name)
    y, p, kw = _empty_inputs(name)
    for reduction in REDUCTIONS:
        got = spec(y, p, reduction=reduction, **kw)
        if reduction is R.NONE:
            assert got.size == 0 and got.dtype == np.float64
        else:
            assert got == 0.0 and got.dtype == np.float64
        if spec.grad is not None:
            value, grad = spec.value_and_grad(y, p, reduction=reduction, **kw)
            assert grad.shape == p.shape and grad.dtype == np.float64


@pytest.mark.parametrize("shape", [(4, 0), (2, 3, 0)])
def test_zero_classes(shape):
    """A class axis of length 0: softmax cross-entropy sums over nothing (0 per row); a sparse
    label can never be in range [0, 0)."""
    z, x = np.zeros(shape), np.zeros(shape)
    none = L.softmax_cross_entropy(z, x, reduction=R.NONE)
    np.testing.assert_array_equal(none, np.zeros(shape[:-1]))
    assert L.softmax_cross_entropy(z, x, label_smoothing=0.5) == 0.0
    _, grad = registry.get("softmax_cross_entropy").value_and_grad(z, x)
    assert grad.shape == shape
    with pytest.raises(lossforge.InvalidArgumentError, match=r"outside the valid range of \[0, 0\)"):
        L.sparse_softmax_cross_entropy(np.zeros(shape[:-1], np.int64), x)


# --- float16: accumulated in float32/64, returned as float16 -------------------------------------

def test_float16_sums_do_not_accumulate_in_float16():
    """20,480 float16 losses of 1.0 (below the parallel threshold): a float16 accumulator would
    stop at 2048 (2048 + 1 rounds back to 2048); lossforge sums in float64 and rounds once."""
    n = 20_480
    y, p = np.zeros(n, np.float16), np.ones(n, np.float16)
    for fn, each in ((L.mean_squared_error, 1.0), (L.absolute_difference, 1.0),
                     (L.huber_loss, 0.5)):
        assert fn(y, p) == np.float16(each) and fn(y, p).dtype == np.float16
        total = fn(y, p, reduction=R.SUM)
        assert total.dtype == np.float16 and total == np.float16(20_480 * each)
    assert L.absolute_difference(y, p, weights=np.float16(2.0 ** -10), reduction=R.SUM) == 20.0
    big = L.absolute_difference(y, np.full(n, 60_000, np.float16), reduction=R.SUM)
    assert big == np.inf and big.dtype == np.float16  # 1.2e9 is beyond float16: inf, as a cast


@pytest.mark.parametrize("name", registry.names())
def test_float16_inputs_of_every_registered_loss(name):
    spec = registry.get(name)
    rng = np.random.default_rng(12)
    y, p, kw = spec.example_inputs(rng, batch=6, classes=4)
    p16 = p.astype(np.float16)
    y16 = y if y.dtype.kind in "iu" else y.astype(np.float16)
    got = spec(y16, p16, **kw)
    want = spec(y16.astype(np.float64) if y16.dtype == np.float16 else y16,
                p16.astype(np.float64), **kw)
    assert got.dtype == np.float16
    np.testing.assert_allclose(float(got), float(want), rtol=2e-3, atol=1e-3)
    none = spec(y16, p16, reduction=R.NONE, **kw)
    assert none.dtype == np.float16
    if spec.grad is not None:
        _, grad = spec.value_and_grad(y16, p16, **kw)
        assert grad.dtype == np.float16 and grad.shape == p16.shape


# --- label smoothing of 0 and 1 -------------------------------------------------------------------

def test_label_smoothing_zero_is_exactly_no_smoothing():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(5, 4))
    onehot = np.eye(4)[rng.integers(0, 4, size=5)]
    for fn in (L.softmax_cross_entropy, L.sigmoid_cross_entropy):
        for r in REDUCTIONS:
            np.testing.assert_array_equal(fn(onehot, x, label_smoothing=0.0, reduction=r),
                                          fn(onehot, x, reduction=r))
    labels = onehot.argmax(-1)
    np.testing.assert_array_equal(L.sparse_softmax_cross_entropy(labels, x, label_smoothing=0.0),
                                  L.sparse_softmax_cross_entropy(labels, x))


def test_label_smoothing_one_makes_the_labels_uniform():
    """ls = 1: softmax labels become 1/K (TF), sigmoid labels 0.5 (TF), sparse PyTorch's uniform
    target; whatever the labels were."""
    rng = np.random.default_rng(14)
    x = rng.normal(size=(5, 4))
    onehot = np.eye(4)[rng.integers(0, 4, size=5)]
    uniform = np.full((5, 4), 0.25)
    for r in REDUCTIONS:
        np.testing.assert_allclose(L.softmax_cross_entropy(onehot, x, label_smoothing=1.0,
                                                           reduction=r),
                                   ref.reduce(ref.softmax_cross_entropy(uniform, x), 1.0, r.value),
                                   rtol=1e-12)
        np.testing.assert_allclose(L.sigmoid_cross_entropy(onehot, x, label_smoothing=1.0,
                                                           reduction=r),
                                   ref.reduce(ref.sigmoid_cross_entropy(np.full((5, 4), 0.5), x),
                                              1.0, r.value), rtol=1e-12)
        np.testing.assert_allclose(
            L.sparse_softmax_cross_entropy(onehot.argmax(-1), x, label_smoothing=1.0, reduction=r),
            ref.reduce(ref.softmax_cross_entropy(uniform, x), 1.0, r.value), rtol=1e-12)
    _, grad = registry.get("softmax_cross_entropy").value_and_grad(onehot, x, label_smoothing=1.0,
                                                                   reduction=R.SUM)
    soft = np.exp(ref.log_softmax(x))
    np.testing.assert_allclose(grad, soft - 0.25, atol=1e-12)


# --- Huber with delta = 0 --------------------------------------------------------------------------

def test_huber_with_delta_zero_is_zero_and_flat():
    """q = min(a, 0) = 0, so L = 0.5 * 0 + 0 * (a - 0) = 0 for every finite difference; an
    infinite difference gives 0 * inf = NaN (TF's formula), and the gradient is 0."""
    y = np.array([0.0, 1.0, -3.0, 0.0, 2.0])
    p = np.array([0.0, 1.5, 4.0, np.inf, np.nan])
    spec = registry.get("huber_loss")
    value, grad = spec.value_and_grad(y, p, 1.0, R.NONE, delta=0.0)
    np.testing.assert_array_equal(value[:3], [0.0, 0.0, 0.0])
    assert np.isnan(value[3:]).all()
    np.testing.assert_array_equal(ref.huber_loss(y[:4], p[:4], delta=0.0)[:3], value[:3])
    np.testing.assert_array_equal(grad[:3], [0.0, 0.0, 0.0])
    for r in REDUCTIONS[1:]:
        assert L.huber_loss(y[:3], p[:3], delta=0.0, reduction=r) == 0.0


# --- one-class softmax --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_class_softmax_is_zero(dtype):
    """With K = 1, softmax is 1 and its log 0: the loss is 0 for any finite logit, smoothing
    changes nothing (ls/K + (1 - ls) = 1), and the gradient is 0."""
    x = np.array([[3.0], [-1e4], [0.0], [1e30]], dtype)
    onehot = np.ones((4, 1), dtype)
    for ls in (0.0, 0.3, 1.0):
        none = L.softmax_cross_entropy(onehot, x, label_smoothing=ls, reduction=R.NONE)
        np.testing.assert_array_equal(none, np.zeros(4, dtype))
    np.testing.assert_array_equal(L.sparse_softmax_cross_entropy(np.zeros(4, np.int64), x,
                                                                 reduction=R.NONE), np.zeros(4))
    np.testing.assert_array_equal(
        lossforge.nn.softmax_cross_entropy_with_logits(onehot, x), np.zeros(4, dtype))
    for name, labels in (("softmax_cross_entropy", onehot),
                         ("sparse_softmax_cross_entropy", np.zeros(4, np.int64))):
        _, grad = registry.get(name).value_and_grad(labels, x, reduction=R.SUM)
        np.testing.assert_array_equal(grad, np.zeros((4, 1), dtype))
    assert np.isnan(L.softmax_cross_entropy(onehot[:1], np.array([[np.inf]], dtype)))


# --- cosine distance of zero vectors -------------------------------------------------------------

def test_cosine_distance_of_zero_vectors_is_one():
    """Nothing is normalised (TF): 1 - sum(0 * p) = 1, with gradient -labels = 0 (-0.0)."""
    zero = np.zeros((3, 4))
    p = np.random.default_rng(15).normal(size=(3, 4))
    for a, b in ((zero, p), (p, zero), (zero, zero)):
        np.testing.assert_array_equal(L.cosine_distance(a, b, axis=1, reduction=R.NONE),
                                      np.ones((3, 1)))
        for r in REDUCTIONS[1:]:
            assert L.cosine_distance(a, b, axis=1, reduction=r) == ref.reduce(
                np.ones((3, 1)), 1.0, r.value)
    _, grad = registry.get("cosine_distance").value_and_grad(zero, p, axis=1, reduction=R.SUM)
    np.testing.assert_array_equal(grad, zero)


# --- pairwise error with one element per sample ---------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 1), (5, 1, 1), (1, 1), (5,)])
def test_pairwise_with_one_element_per_sample_is_zero(shape):
    """n_b = 1: both divisions have denominator 0 (div_no_nan), so every sample's loss is 0,
    whatever the weights; the gradient is 0 too."""
    rng = np.random.default_rng(16)
    y, p = rng.normal(size=shape), rng.normal(size=shape)
    weight_forms = [1.0, 3.5, 0.0, rng.uniform(0.5, 2, size=shape)]
    if len(shape) > 1:
        weight_forms.append(rng.uniform(0.5, 2, size=shape[:1] + (1,) * (len(shape) - 1)))
    for w in weight_forms:
        got = L.mean_pairwise_squared_error(y, p, weights=w)
        assert got == 0.0 and got.dtype == np.float64
        assert ref.mean_pairwise_squared_error(y, p, w) == 0.0
    _, grad = registry.get("mean_pairwise_squared_error").value_and_grad(y, p)
    np.testing.assert_array_equal(grad, np.zeros(shape))
    assert math.isclose(float(L.mean_pairwise_squared_error(y[:, None] if y.ndim == 1 else y,
                                                            p[:, None] if p.ndim == 1 else p)), 0.0)
