"""lossforge.nn: per-example cross-entropies, stability at extremes, NaN/inf propagation."""
import numpy as np
import pytest

import lossforge
import reference as ref

nn = lossforge.nn
L = lossforge.losses
SEED_LOGITS = np.array([[1, 2, 7], [3, 5, 2], [6, 1, 3], [8, 2, 0], [3, 6, 1]], np.float32)
SEED_CLASSES = np.array([2, 1, 0, 0, 1])
SEED_ONEHOT = np.eye(3, dtype=np.float32)[SEED_CLASSES]
# printed by TensorFlow (float32 arithmetic) in seed 002; lossforge is float64-accurate,
# so the last printed digit may differ by TF's float32 rounding (~1e-7 absolute)
SEED_PER_EXAMPLE = [0.00917445, 0.16984604, 0.05498521, 0.00281022, 0.05498521]


def test_seed_002_per_example_sparse_and_onehot_agree():
    dense = nn.softmax_cross_entropy_with_logits(labels=SEED_ONEHOT, logits=SEED_LOGITS)
    sparse = nn.sparse_softmax_cross_entropy_with_logits(labels=SEED_CLASSES, logits=SEED_LOGITS)
    assert dense.dtype == sparse.dtype == np.float32
    np.testing.assert_allclose(dense, SEED_PER_EXAMPLE, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(dense, sparse)
    np.testing.assert_allclose(dense, ref.softmax_cross_entropy(SEED_ONEHOT, SEED_LOGITS), rtol=1e-6)


def test_seed_002_reduced_values():
    assert L.softmax_cross_entropy(SEED_ONEHOT, SEED_LOGITS) == pytest.approx(0.0583602, abs=1e-7)
    assert L.sparse_softmax_cross_entropy(SEED_CLASSES, SEED_LOGITS) == pytest.approx(0.0583602, abs=1e-7)
    assert L.softmax_cross_entropy(SEED_ONEHOT, SEED_LOGITS, weights=0.2) == pytest.approx(0.011672, abs=1e-6)
    mean = np.mean(nn.softmax_cross_entropy_with_logits(SEED_ONEHOT, SEED_LOGITS).astype(np.float64))
    assert L.softmax_cross_entropy(SEED_ONEHOT, SEED_LOGITS) == pytest.approx(mean, rel=1e-6)


def test_seed_000_weighting_example():
    got = L.compute_weighted_loss([4.0, 1.0, 2.0, 3.0], weights=[1.0, 0.5, 3.0, 9.0])
    assert got == pytest.approx((4 * 1 + 1 * 0.5 + 2 * 3 + 3 * 9) / 4)


@pytest.mark.parametrize("x", [1e4, -1e4, 88.8, -88.8, 1e30, -1e30, 0.0])
@pytest.mark.parametrize("z", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_sigmoid_is_stable_at_extreme_logits(x, z, dtype):
    x = float(np.clip(x, -np.finfo(dtype).max, np.finfo(dtype).max))
    logits = np.array([x], dtype)
    got = nn.sigmoid_cross_entropy_with_logits(labels=np.array([z], dtype), logits=logits)
    want = ref.sigmoid_cross_entropy(np.array([z], dtype), logits)
    if dtype == np.float32:  # a subnormal float32 result is 0, as TF's (vmath.exp_at_most_0)
        want = np.where(np.abs(want) < np.finfo(np.float32).tiny, 0.0, want)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-3 if dtype == np.float16 else 1e-6,
                               atol=1e-7 if dtype == np.float16 else 0)


@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4, 1e30])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_at_extreme_logits(scale, dtype):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(6, 5)) * scale).astype(dtype)
    onehot = np.eye(5, dtype=dtype)[rng.integers(0, 5, size=6)]
    got = nn.softmax_cross_entropy_with_logits(onehot, logits)
    want = ref.softmax_cross_entropy(onehot, logits)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-6)
    np.testing.assert_allclose(nn.sparse_softmax_cross_entropy_with_logits(
        onehot.argmax(-1), logits).astype(np.float64), want, rtol=1e-6)


def test_nan_and_inf_propagate():
    logits = np.array([[0.0, np.nan, 1.0], [0.0, np.inf, 1.0], [0.0, -np.inf, 1.0]])
    onehot = np.eye(3)[[0, 0, 0]]
    got = nn.softmax_cross_entropy_with_logits(onehot, logits)
    # NaN anywhere in the row -> NaN; +inf -> inf - inf = NaN; -inf in an unused class is
    # ignored by the log-sum-exp but 0 * inf makes it NaN (TF's formula gives the same)
    assert np.isnan(got).all()
    sig = nn.sigmoid_cross_entropy_with_logits(np.ones(3), np.array([np.nan, np.inf, -np.inf]))
    # x = +inf: inf - inf * 1 is NaN (TF gives NaN too); x = -inf: 0 + inf + 0 = inf
    assert np.isnan(sig[0]) and np.isnan(sig[1]) and sig[2] == np.inf
    y = np.array([0.0, 1.0, 2.0])
    p = np.array([np.nan, np.inf, 1.0])
    assert np.isnan(L.mean_squared_error(y, p))
    assert np.isnan(L.mean_squared_error(y, p, weights=[0.0, 1.0, 1.0]))  # NaN * 0 = NaN, as TF
    none = L.absolute_difference(y, p, reduction="none")
    assert np.isnan(none[0]) and none[1] == np.inf and none[2] == 1.0
    assert np.isnan(L.hinge_loss([1.0], [np.nan]))
    assert np.isnan(L.huber_loss([0.0], [np.nan]))
    assert L.huber_loss([0.0], [np.inf]) == np.inf


def test_all_zero_weights_give_zero_even_with_nan_losses():
    """div_no_nan(x, 0) = 0 whatever x is."""
    y, p = np.array([0.0, 1.0]), np.array([np.nan, np.inf])
    for r in ("weighted_mean", "weighted_sum_by_nonzero_weights"):
        assert L.mean_squared_error(y, p, weights=0.0, reduction=r) == 0.0
    assert np.isnan(L.mean_squared_error(y, p, weights=0.0, reduction="weighted_sum"))


@pytest.mark.parametrize("p, y, eps, expect", [
    (0.0, 0.0, 1e-7, 0.0), (1.0, 1.0, 1e-7, 0.0),
    (1.0, 0.0, 0.0, np.inf), (0.0, 1.0, 0.0, np.inf),
    (1.0, 1.0, 0.0, np.nan),   # -(1 * log 1) - 0 * log 0 = 0 * -inf = NaN, as TF
    (1.5, 1.0, 1e-7, np.nan),  # outside [0, 1]: no clipping, as TF
])
def test_log_loss_at_probabilities_zero_and_one(p, y, eps, expect):
    got = float(L.log_loss([y], [p], epsilon=eps))
    want = float(ref.log_loss([y], [p], eps)[0])
    np.testing.assert_equal(np.isnan(got), np.isnan(expect))
    if not np.isnan(expect):
        assert got == pytest.approx(want, abs=1e-6)
        if np.isinf(expect):
            assert got == expect


def test_softmax_axis_argument():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 3, 5))
    labels = np.eye(3)[rng.integers(0, 3, size=(4, 5))].transpose(0, 2, 1)
    got = nn.softmax_cross_entropy_with_logits(labels, logits, axis=1)
    want = ref.softmax_cross_entropy(np.moveaxis(labels, 1, -1), np.moveaxis(logits, 1, -1))
    assert got.shape == (4, 5)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_sparse_squeezes_trailing_label_and_weight_dims():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 3))
    labels = rng.integers(0, 3, size=4)
    w = rng.uniform(size=(4, 1))
    want = ref.reduce(ref.sparse_softmax_cross_entropy(labels, logits), w[:, 0], ref.R_NONZERO)
    assert L.sparse_softmax_cross_entropy(labels[:, None], logits, weights=w) == pytest.approx(want)
    assert L.sparse_softmax_cross_entropy(labels.astype(np.uint8), logits,
                                          weights=w) == pytest.approx(want)
