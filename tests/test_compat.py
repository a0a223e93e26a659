"""lossforge.compat.contrib / slim against float64 NumPy references of tf.contrib.losses.

TensorFlow 2.x no longer ships tf.contrib, so there is no TF parity here: each reference is
written below from TF 1.x's contrib/losses/python/losses/loss_ops.py (and the expected
numbers of its loss_ops_test.py), independently of the implementation's helpers.
"""
import warnings

import numpy as np
import pytest

import lossforge
from lossforge import InvalidArgumentError, InvalidTypeError, LossCollection
from lossforge.compat import contrib, slim

RTOL, ATOL = 1e-5, 1e-6
B, D = 4, 3
_rng = np.random.default_rng(20161230)
PROBS = _rng.uniform(0.05, 0.95, (B, D)).astype(np.float32)
BINARY = _rng.integers(0, 2, (B, D)).astype(np.float32)
REALS = _rng.normal(size=(B, D)).astype(np.float32)
LOGITS = (3 * _rng.normal(size=(B, D))).astype(np.float32)
ONEHOT = np.eye(D, dtype=np.float32)[[0, 2, 1, 2]]
SPARSE = np.array([0, 2, 1, 2])


def f64(x):
    return np.asarray(x, dtype=np.float64)


# --- references -------------------------------------------------------------------------------

def ref_weighted_mean(losses, weights):
    """contrib's mean by explicit tiling: a trailing 1 of the weights squeezed, the weights tiled
    over the losses' remaining trailing dims, ``sum(L * W) / count(W != 0)`` (0 if no count)."""
    losses, w = f64(losses), f64(weights)
    if w.ndim > 1 and w.shape[-1] == 1:
        w = w[..., 0]
    tiled = np.broadcast_to(w.reshape(w.shape + (1,) * (losses.ndim - w.ndim)), losses.shape)
    count = np.count_nonzero(tiled)
    return 0.0 if count == 0 else float(np.sum(losses * tiled) / count)


def ref_log_softmax(x):
    x = f64(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def ref_sigmoid_ce(x, z, smoothing=0.0):
    x, z = f64(x), f64(z)
    if smoothing > 0:
        z = z * (1 - smoothing) + 0.5 * smoothing
    return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


def ref_softmax_ce(x, z):
    return -(f64(z) * ref_log_softmax(x)).sum(axis=-1)


def ref_pairwise(predictions, labels, sample_weights):
    """``sum_b w_b * sum_{i,j} ((p_i - p_j) - (l_i - l_j))**2 / n**2`` over ordered pairs."""
    p = f64(predictions).reshape(len(predictions), -1)
    y = f64(labels).reshape(len(labels), -1)
    w = np.broadcast_to(f64(sample_weights), (len(p),))
    total = 0.0
    for b in range(len(p)):
        n = p.shape[1]
        pairs = sum(((p[b, i] - p[b, j]) - (y[b, i] - y[b, j])) ** 2
                    for i in range(n) for j in range(n))
        total += w[b] * pairs / n ** 2
    return total


def weights_for(kind, shape):
    """Weights of one kind for losses of ``shape`` ([B] or [B, D])."""
    per_sample = np.array([1.2, 0.0, 3.4, -0.5])
    return {"scalar": 2.5, "zero": 0.0, "negative": -1.5, "batch": per_sample,
            "batch1": per_sample.reshape(B, 1),
            "elem": np.resize([1.0, 0.0, -0.5, 2.0, 3.0], shape)}[kind]


KINDS = ["scalar", "zero", "negative", "batch", "batch1", "elem"]


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# --- contrib semantics, function by function --------------------------------------------------

REGRESSION = {
    "absolute_difference": (lambda p, y: np.abs(p - y), REALS),
    "mean_squared_error": (lambda p, y: (p - y) ** 2, REALS),
    "log_loss": (lambda p, y: -y * np.log(p + 1e-7) - (1 - y) * np.log(1 - p + 1e-7), PROBS),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_regression_losses_match_reference(name, kind):
    ref, predictions = REGRESSION[name]
    w = weights_for(kind, (B, D))
    got = getattr(contrib, name)(predictions, BINARY, w)
    assert got.dtype == np.float32 and np.ndim(got) == 0
    close(got, ref_weighted_mean(ref(f64(predictions), f64(BINARY)), w))


@pytest.mark.parametrize("kind", KINDS)
def test_compute_weighted_loss_matches_reference(kind):
    w = weights_for(kind, (B, D))
    close(contrib.compute_weighted_loss(REALS ** 2, w), ref_weighted_mean(f64(REALS) ** 2, w))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sigmoid_cross_entropy_matches_reference(kind, smoothing):
    w = weights_for(kind, (B, D))
    got = contrib.sigmoid_cross_entropy(LOGITS, BINARY, w, label_smoothing=smoothing)
    close(got, ref_weighted_mean(ref_sigmoid_ce(LOGITS, BINARY, smoothing), w))


@pytest.mark.parametrize("kind", ["scalar", "zero", "negative", "batch", "batch1"])
def test_softmax_cross_entropy_matches_reference(kind):
    w = weights_for(kind, (B,))
    close(contrib.softmax_cross_entropy(LOGITS, ONEHOT, w),
          ref_weighted_mean(ref_softmax_ce(LOGITS, ONEHOT), w))


@pytest.mark.parametrize("kind", ["scalar", "zero", "negative", "batch", "batch1"])
@pytest.mark.parametrize("labels", [SPARSE, SPARSE.reshape(B, 1)], ids=["[B]", "[B,1]"])
def test_sparse_softmax_cross_entropy_matches_reference(kind, labels):
    w = weights_for(kind, (B,))
    want = -ref_log_softmax(LOGITS)[np.arange(B), SPARSE]
    close(contrib.sparse_softmax_cross_entropy(LOGITS, labels, w), ref_weighted_mean(want, w))


def test_sparse_softmax_squeezes_weights_fully():
    want = -ref_log_softmax(LOGITS)[np.arange(B), SPARSE].mean()
    close(contrib.sparse_softmax_cross_entropy(LOGITS, SPARSE, [[2.0]]), 2 * want)


@pytest.mark.parametrize("kind", ["scalar", "zero", "negative", "batch", "batch1"])
def test_cosine_distance_reduces_dim_without_keepdims(kind):
    unit_p = f64(REALS) / np.linalg.norm(REALS, axis=1, keepdims=True)
    unit_y = f64(LOGITS) / np.linalg.norm(LOGITS, axis=1, keepdims=True)
    w = weights_for(kind, (B,))  # [B] weights fit [B, D] inputs: the losses are [B]
    want = ref_weighted_mean(1 - (unit_p * unit_y).sum(axis=1), w)
    close(contrib.cosine_distance(unit_p, unit_y, 1, w), want)
    close(contrib.cosine_distance(unit_p, unit_y, dim=-1, weights=w), want)


def test_cosine_distance_3d_with_sample_weights():
    # contrib's CosineDistanceLossTest data: [3, 2, 3] inputs, dim=2 -> [3, 2] losses
    p = np.array([[1, 0, 0], [0, 0, -1], [1, 0, 0], [1, 0, 0], [0, 0, -1], [1, 0, 0]],
                 np.float32).reshape(3, 2, 3)
    y = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]],
                 np.float32).reshape(3, 2, 3)
    w = np.array([1.0, 0.0, 0.0])
    close(contrib.cosine_distance(p, y, dim=2, weights=w),
          ref_weighted_mean(1 - (f64(p) * f64(y)).sum(axis=2), w))
    close(contrib.cosine_distance(p, y, dim=2, weights=w), 1.0)  # losses [0, 2] / 2 present


def test_cosine_distance_middle_dim_takes_per_element_weights_of_the_reduced_shape():
    p, y = _rng.normal(size=(3, 2, 4)), _rng.normal(size=(3, 2, 4))
    w = np.resize([1.0, 0.0, 2.0, -1.0, 0.5], (3, 4))  # losses are [3, 4] (core: [3, 1, 4])
    close(contrib.cosine_distance(p, y, dim=1, weights=w),
          ref_weighted_mean(1 - (p * y).sum(axis=1), w))


def test_zero_weights_give_zero_even_for_nan_losses():
    # contrib's _safe_div: 0 when nothing is present, whatever the (NaN) numerator
    assert contrib.compute_weighted_loss([np.nan, 1.0], 0.0) == 0.0
    # but a zero weight next to present losses does not mask a NaN: 0 * NaN = NaN
    assert np.isnan(contrib.compute_weighted_loss([[np.nan, 1.0], [2.0, 3.0]], [0.0, 1.0]))
    assert contrib.log_loss([[2.0]], [[1.0]], 0.0) == 0.0  # log of a negative: NaN loss


def test_prefix_weights_on_3d_losses():
    losses = _rng.normal(size=(2, 3, 4))
    w = np.array([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]])  # [B, d1] of [B, d1, d2]
    got = contrib.compute_weighted_loss(losses, w)
    close(got, ref_weighted_mean(losses, w))
    close(got, np.sum(losses.sum(axis=2) * w) / (4 * 4))  # 4 non-zero weights x d2=4
    assert got.dtype == np.float64


def test_per_sample_vector_is_legal_in_contrib_but_not_in_core():
    w = [1.0, 2.0, 0.0, 4.0]
    with pytest.raises(InvalidArgumentError):
        lossforge.losses.compute_weighted_loss(REALS, w)
    close(contrib.compute_weighted_loss(REALS, w), ref_weighted_mean(REALS, w))


def test_broadcast_weight_dim_of_one_is_counted_once_as_contrib_did():
    # weights [1, D] for [B, D] losses: num_present = count(W != 0) * 1 = 2, not B * D = 4
    losses = [[1.0, 2.0], [3.0, 4.0]]
    assert contrib.compute_weighted_loss(losses, [[1.0, 1.0]]) == pytest.approx(10.0 / 2)
    assert lossforge.losses.compute_weighted_loss(losses, [[1.0, 1.0]]) == pytest.approx(10.0 / 4)


def test_seed_000_weighting_example():
    got = contrib.compute_weighted_loss([4.0, 1.0, 2.0, 3.0], [1.0, 0.5, 3.0, 9.0])
    assert got == pytest.approx((4 * 1 + 1 * 0.5 + 2 * 3 + 3 * 9) / 4)


@pytest.mark.parametrize("weights, want", [
    (1.0, 5.5), (2.3, 5.5 * 2.3), ([1.2, 0.0], 5.6), ([[1.2], [0.0]], 5.6),
    ([[3, 6, 5], [0, 4, 2]], 16.6), ([[0, 0, 0], [0, 0, 2]], 6.0), (np.zeros((2, 3)), 0.0)])
def test_contrib_test_values_absolute_difference(weights, want):
    predictions = np.array([[4, 8, 12], [8, 1, 3]])  # int inputs, as in loss_ops_test.py
    labels = np.array([[1, 9, 2], [-5, -2, 6]])
    got = contrib.absolute_difference(predictions, labels, weights)
    assert got.dtype == np.float32
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("weights, want", [
    (1.0, 49.5), ([1.2, 3.4], 767.8 / 6), ([[1.2], [3.4]], 767.8 / 6),
    ([[3, 6, 5], [0, 4, 2]], 587 / 5.0), ([[0, 0, 0], [0, 0, 2]], 18.0)])
def test_contrib_test_values_mean_squared_error(weights, want):
    got = contrib.mean_squared_error([[4, 8, 12], [8, 1, 3]], [[1, 9, 2], [-5, -2, 6]], weights)
    assert got == pytest.approx(want, rel=1e-6)


def test_contrib_test_values_cross_entropies():
    logits = np.float32([[10, 0, 0], [0, 10, 0], [0, 0, 10]])
    wrong = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    assert contrib.softmax_cross_entropy(logits, wrong) == pytest.approx(10.0, abs=1e-3)
    assert contrib.softmax_cross_entropy(logits, wrong, [1.2, 3.4, 5.6]) == pytest.approx(
        (1.2 + 3.4 + 5.6) * 10.0 / 3.0, abs=1e-3)
    assert contrib.softmax_cross_entropy(logits, wrong, [1.2, 0, 0]) == pytest.approx(12.0, abs=1e-3)
    big = np.float32(200 * np.eye(3) - 100)  # [[100, -100, -100], ...]
    assert contrib.sigmoid_cross_entropy(big, wrong, [[3, 4, 5], [2, 6, 0], [8, 0, 1]]) == \
        pytest.approx(1700.0 / 7.0, rel=1e-5)
    ls = 0.1
    sig = contrib.sigmoid_cross_entropy(np.float32([[100, -100, -100]]), [[1, 0, 1]],
                                        label_smoothing=ls)
    soft = contrib.softmax_cross_entropy(np.float32([[0, 100], [100, 0], [100, 0]]),
                                         [[0, 1], [1, 0], [0, 1]], label_smoothing=ls)
    assert sig == pytest.approx((100.0 + 50.0 * ls) / 3.0, rel=1e-5)
    assert soft == pytest.approx(sig, rel=1e-4)
    assert contrib.softmax_cross_entropy(np.float32([[100, -100, -100]]), [[1, 0, 0]],
                                         label_smoothing=ls) == pytest.approx(400 * ls / 3, rel=1e-5)


def test_softmax_smoothing_uses_shape_1_as_contrib_did():
    logits = _rng.normal(size=(2, 5, 3))  # shape[1] = 5 differs from the class count 3
    onehot = np.eye(3)[_rng.integers(0, 3, (2, 5))]
    ls = 0.3
    want = ref_softmax_ce(logits, onehot * (1 - ls) + ls / 5).mean()
    core_k = ref_softmax_ce(logits, onehot * (1 - ls) + ls / 3).mean()
    got = contrib.softmax_cross_entropy(logits, onehot, label_smoothing=ls)
    close(got, want)
    assert abs(got - core_k) > 1e-3
    close(lossforge.losses.softmax_cross_entropy(onehot, logits, label_smoothing=ls), core_k)


# --- pairwise ---------------------------------------------------------------------------------

TF_3D_LABELS = np.array([[[1, 9, 2], [12, 11, 10], [9, 8, 7]],
                         [[-5, -5, 7], [6, 5, 4], [3, 2, 1]]])
TF_3D_PREDICTIONS = np.array([[[4, 8, 12], [1, 2, 3], [4, 5, 6]],
                              [[8, 1, 3], [7, 8, 9], [10, 11, 12]]])


def test_pairwise_3d_uses_contrib_normalisation():
    # TF's test3d data: 122.22222 with ordered pairs / n**2, 137.5 with core's C(n, 2)
    got = contrib.mean_pairwise_squared_error(TF_3D_PREDICTIONS, TF_3D_LABELS)
    assert got == pytest.approx(122.22222, rel=1e-6)
    assert contrib.mean_pairwise_squared_error(TF_3D_PREDICTIONS, TF_3D_LABELS, 3.0) == \
        pytest.approx(3 * 122.22222, rel=1e-6)
    assert lossforge.losses.mean_pairwise_squared_error(TF_3D_LABELS, TF_3D_PREDICTIONS) == \
        pytest.approx(137.5, rel=1e-6)


@pytest.mark.parametrize("weights", [1.0, 2.3, 0.0, -1.5, [2.0, 1.0], [1.2, 0.0], [0.0, 0.0]])
def test_pairwise_matches_ordered_pairs_reference(weights):
    predictions = np.array([[4, 8, 12], [8, 1, 3]])
    labels = np.array([[1, 9, 2], [-5, -5, 7]])
    close(contrib.mean_pairwise_squared_error(predictions, labels, weights),
          ref_pairwise(predictions, labels, weights))


def test_pairwise_random_3d_and_1d():
    p, y = _rng.normal(size=(3, 2, 4)), _rng.normal(size=(3, 2, 4))
    close(contrib.mean_pairwise_squared_error(p, y, [0.5, 2.0, -1.0]),
          ref_pairwise(p, y, [0.5, 2.0, -1.0]))
    # the [2, 2, 3] data of the task brief (its 122.2 was test3d's): ordered pairs give 92.94
    brief_y = [[[1, 9, 2], [-5, -5, 7]], [[-5, -2, 6], [1, -2, 3]]]
    brief_p = [[[4, 8, 12], [1, 2, 3]], [[8, 1, 3], [4, 5, 6]]]
    close(contrib.mean_pairwise_squared_error(brief_p, brief_y),
          ref_pairwise(np.array(brief_p), np.array(brief_y), 1.0))
    assert contrib.mean_pairwise_squared_error([1.0, 5.0, -2.0], [0.0, 0.0, 0.0]) == 0.0


@pytest.mark.parametrize("weights", [[[2.0], [1.0]], np.ones((2, 3)), [1.0, 2.0, 3.0]])
def test_pairwise_rejects_weights_contrib_could_not_apply(weights):
    with pytest.raises(InvalidArgumentError, match="weights"):
        contrib.mean_pairwise_squared_error([[4, 8, 12], [8, 1, 3]], [[1, 9, 2], [-5, -5, 7]],
                                            weights)


# --- hinge ------------------------------------------------------------------------------------

def test_hinge_loss_is_unreduced_unweighted_and_not_collected():
    logits = np.float32([[-0.7], [-1.4], [1.4], [0.6]])
    labels = np.float32([[0.0], [0.0], [1.0], [1.0]])
    with LossCollection() as c:
        got = contrib.hinge_loss(logits, labels)
    assert got.shape == (4, 1) and got.dtype == np.float32
    close(got, np.maximum(0, 1 - (2 * f64(labels) - 1) * f64(logits)))
    close(got, [[0.3], [0.0], [0.0], [0.4]])
    assert len(c) == 0
    with pytest.raises(TypeError):
        contrib.hinge_loss(logits, labels, weights=2.0)


# --- deprecated names and keywords ------------------------------------------------------------

@pytest.mark.parametrize("old, new", [("sum_of_squares", "mean_squared_error"),
                                      ("sum_of_pairwise_squares", "mean_pairwise_squared_error"),
                                      ("log", "log_loss")])
def test_deprecated_names_warn_and_match(old, new):
    with pytest.warns(DeprecationWarning, match=old):
        got = getattr(contrib, old)(PROBS, BINARY, [1.0, 2.0, 0.0, 3.0])
    assert got == getattr(contrib, new)(PROBS, BINARY, [1.0, 2.0, 0.0, 3.0])
    assert getattr(contrib, old).__name__ == old


@pytest.mark.parametrize("name", ["absolute_difference", "mean_squared_error", "log_loss",
                                  "mean_pairwise_squared_error"])
def test_deprecated_keywords_weight_and_targets(name):
    fn = getattr(contrib, name)
    want = fn(PROBS, BINARY, weights=[1.0, 2.0, 0.0, 3.0])
    with pytest.warns(DeprecationWarning, match="`weight`"):
        assert fn(PROBS, BINARY, weight=[1.0, 2.0, 0.0, 3.0]) == want
    with pytest.warns(DeprecationWarning, match="`targets`"):
        assert fn(PROBS, targets=BINARY, weights=[1.0, 2.0, 0.0, 3.0]) == want
    with pytest.raises(InvalidArgumentError, match="weight"):
        fn(PROBS, BINARY, 2.0, weight=3.0)
    with pytest.raises(InvalidArgumentError, match="targets"):
        fn(PROBS, labels=BINARY, targets=BINARY)


def test_deprecated_keywords_on_the_other_functions():
    with pytest.warns(DeprecationWarning):
        assert contrib.hinge_loss(LOGITS, targets=BINARY).shape == (B, D)
    with pytest.warns(DeprecationWarning):
        got = contrib.softmax_cross_entropy(LOGITS, ONEHOT, weight=[1.0, 0.0, 2.0, 1.0])
    assert got == contrib.softmax_cross_entropy(LOGITS, ONEHOT, [1.0, 0.0, 2.0, 1.0])
    with pytest.warns(DeprecationWarning):
        assert contrib.compute_weighted_loss([1.0, 3.0], weight=2.0) == pytest.approx(4.0)
    with pytest.warns(DeprecationWarning):
        assert contrib.cosine_distance(ONEHOT, targets=ONEHOT, dim=1) == pytest.approx(0.0)


def test_current_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        contrib.mean_squared_error(PROBS, BINARY, weights=2.0)
        contrib.cosine_distance(ONEHOT, ONEHOT, dim=1)
        contrib.sparse_softmax_cross_entropy(LOGITS, SPARSE)


def test_seed_000_log_and_sum_of_squares_in_a_collection():
    with LossCollection() as c:
        with pytest.warns(DeprecationWarning):
            log = contrib.log(PROBS, BINARY, weight=2.0)
        with pytest.warns(DeprecationWarning):
            sos = contrib.sum_of_squares(PROBS, BINARY)
        collected = contrib.get_losses()
        total = contrib.get_total_loss()
    ref_log = -f64(BINARY) * np.log(f64(PROBS) + 1e-7) - (1 - f64(BINARY)) * np.log(
        1 - f64(PROBS) + 1e-7)
    close(log, 2 * ref_log.mean())
    close(sos, ((f64(PROBS) - f64(BINARY)) ** 2).mean())
    assert collected == [log, sos]
    close(total, log + sos)
    assert [e.name for e in c.items()] == ["log_loss/value", "mean_squared_error/value"]


# --- collections and slim ---------------------------------------------------------------------

def test_reduced_losses_are_collected_under_scope_names():
    with LossCollection() as c:
        contrib.mean_squared_error(REALS, LOGITS, scope="depth")
        contrib.softmax_cross_entropy(LOGITS, ONEHOT)
        contrib.compute_weighted_loss(REALS)
        contrib.mean_pairwise_squared_error(REALS, LOGITS)
        assert len(contrib.get_losses(scope="depth")) == 1
    assert [e.name for e in c.items()] == [
        "depth/value", "softmax_cross_entropy_loss/value", "weighted_loss/value",
        "mean_pairwise_squared_error/value"]
    assert contrib.get_losses() == []  # outside the block nothing is collected


def test_slim_exposes_contrib_as_losses_and_at_module_level():
    assert slim.losses is contrib
    for name in contrib.__all__:
        assert getattr(slim, name) is getattr(contrib, name)
    close(slim.softmax_cross_entropy(LOGITS, ONEHOT), ref_softmax_ce(LOGITS, ONEHOT).mean())


@pytest.mark.parametrize("module", [slim.losses, slim], ids=["slim.losses", "slim"])
def test_seed_003_multitask_workflow(module):
    depth_labels = _rng.normal(size=(B, 2, 2)).astype(np.float32)
    depth_predictions = _rng.normal(size=(B, 2, 2)).astype(np.float32)
    pose_loss = np.float32(0.75)
    with LossCollection():
        classification_loss = module.softmax_cross_entropy(LOGITS, ONEHOT)
        with pytest.warns(DeprecationWarning):
            sum_of_squares_loss = module.sum_of_squares(depth_predictions, depth_labels)
        close(module.get_total_loss(add_regularization_losses=False),
              classification_loss + sum_of_squares_loss)
        module.add_loss(pose_loss)
        module.add_loss(np.float32(0.125), loss_collection=lossforge.REGULARIZATION_LOSSES)
        module.add_loss(np.float32(0.5), loss_collection=lossforge.REGULARIZATION_LOSSES)
        regularization_loss = sum(module.get_regularization_losses())
        total_loss1 = classification_loss + sum_of_squares_loss + pose_loss + regularization_loss
        total_loss2 = module.get_total_loss()
        no_reg = module.get_total_loss(add_regularization_losses=False)
    close(classification_loss, ref_softmax_ce(LOGITS, ONEHOT).mean())
    close(sum_of_squares_loss, ((f64(depth_predictions) - f64(depth_labels)) ** 2).mean())
    assert regularization_loss == pytest.approx(0.625)
    close(total_loss2, total_loss1)
    close(no_reg, total_loss1 - regularization_loss)


# --- dtypes and errors ------------------------------------------------------------------------

def test_output_dtypes():
    assert contrib.mean_squared_error(f64(REALS), f64(LOGITS)).dtype == np.float64
    assert contrib.mean_squared_error([[1, 2]], [[0, 0]]).dtype == np.float32
    assert contrib.compute_weighted_loss(np.array([1, 2, 4])).dtype == np.float32
    assert contrib.compute_weighted_loss(np.array([1, 2, 4])) == pytest.approx(7 / 3)
    assert contrib.mean_pairwise_squared_error(REALS, LOGITS).dtype == np.float32
    assert contrib.softmax_cross_entropy(f64(LOGITS), ONEHOT).dtype == np.float64


def test_invalid_weight_shapes_name_weights_and_both_shapes():
    with pytest.raises(InvalidArgumentError, match=r"weights.*\(2, 4\).*\(2, 3\)"):
        contrib.log_loss(PROBS[:2], BINARY[:2], np.ones((2, 4)))
    with pytest.raises(InvalidArgumentError, match="weights"):  # rank above the losses'
        contrib.softmax_cross_entropy(LOGITS, ONEHOT, np.ones((B, D)))
    with pytest.raises(InvalidArgumentError, match="weights"):  # 4 weights, 3 samples
        contrib.sparse_softmax_cross_entropy(LOGITS[:3], SPARSE[:3], [1.2, 3.4, 5.6, 7.8])
    with pytest.raises(InvalidArgumentError, match="weights"):
        contrib.compute_weighted_loss(REALS, [1.0, 2.0, 3.0])  # [D] is not a prefix of [B, D]
    with pytest.raises(InvalidArgumentError, match="weights"):
        contrib.mean_squared_error(REALS, LOGITS, weights=None)


def test_invalid_inputs():
    with pytest.raises(InvalidArgumentError):
        contrib.absolute_difference(REALS, REALS[:, :2])
    with pytest.raises(InvalidArgumentError, match="labels"):
        contrib.mean_squared_error(REALS)
    with pytest.raises(InvalidArgumentError):
        contrib.hinge_loss([[-1.0], [2.1]], [0.0, 1.0])
    with pytest.raises(InvalidTypeError):
        contrib.mean_squared_error([["a", "b"]], [["c", "d"]])
    with pytest.raises(InvalidArgumentError, match="dim"):
        contrib.cosine_distance(ONEHOT, ONEHOT)
    with pytest.raises(InvalidArgumentError):
        contrib.cosine_distance(ONEHOT, ONEHOT, dim=2)
    with pytest.raises(InvalidArgumentError, match="labels"):
        contrib.sparse_softmax_cross_entropy(LOGITS, np.zeros((B, 2), int))
    with pytest.raises(InvalidArgumentError, match="label value"):
        contrib.sparse_softmax_cross_entropy(LOGITS, [0, 1, 2, 3])
    with pytest.raises(InvalidTypeError):
        contrib.sparse_softmax_cross_entropy(LOGITS, f64(SPARSE))
    with pytest.raises(InvalidArgumentError, match="shape"):
        contrib.softmax_cross_entropy(LOGITS[0], ONEHOT[0], label_smoothing=0.1)
    with pytest.raises(InvalidArgumentError):
        contrib.get_total_loss()  # outside a LossCollection
