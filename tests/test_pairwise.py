"""mean_pairwise_squared_error: TF's documented (graph-mode) semantics."""
import numpy as np
import pytest

import lossforge
import reference as ref
from cases import weight_kinds

mpse = lossforge.losses.mean_pairwise_squared_error
LABELS_3D = np.array([[[1, 9, 2], [-5, -5, 7]], [[-5, -2, 6], [1, -2, 3]]], np.float32)
PREDICTIONS_3D = np.array([[[4, 8, 12], [1, 2, 3]], [[8, 1, 3], [4, 5, 6]]], np.float32)


def test_tf_graph_mode_value_3d():
    # TF 2.21 in graph mode (tf.function) prints 111.53333; eager mode's scalar-weight bug
    # counts elements over the whole batch and gives 67.621216
    assert mpse(LABELS_3D, PREDICTIONS_3D) == pytest.approx(111.53333, rel=1e-6)


def test_tf_test3d_value():
    """TF's losses_test.py test3d data: 137.5 (contrib's 2/n**2 normalisation gave 122.22)."""
    labels = [[[1, 9, 2], [12, 11, 10], [9, 8, 7]], [[-5, -5, 7], [6, 5, 4], [3, 2, 1]]]
    predictions = [[[4, 8, 12], [1, 2, 3], [4, 5, 6]], [[8, 1, 3], [7, 8, 9], [10, 11, 12]]]
    assert mpse(np.float32(labels), np.float32(predictions)) == pytest.approx(137.5, rel=1e-6)


def test_equals_mean_over_unordered_pairs_summed_over_samples():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3, 4))
    assert mpse(y, p) == pytest.approx(ref.pairwise_by_pairs(y, p), rel=1e-12)


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5)])
def test_every_weight_kind_matches_reference(shape):
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=shape), rng.normal(size=shape)
    for kind, w in weight_kinds(shape, rng).items():
        assert mpse(y, p, weights=w) == pytest.approx(ref.mean_pairwise_squared_error(y, p, w),
                                                      rel=1e-12, abs=1e-12), kind


def test_is_a_sum_over_the_batch_not_a_mean():
    """TF's testLossIsAssociativeAcrossBatchElements: loss(concat) == loss0 + loss1."""
    rng = np.random.default_rng(2)
    y, p = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    assert mpse(y, p) == pytest.approx(mpse(y[:2], p[:2]) + mpse(y[2:], p[2:]), rel=1e-12)


def test_zero_weights_lower_n_but_their_elements_still_count():
    y = np.zeros((1, 3))
    p = np.array([[1.0, 2.0, 4.0]])
    w = np.array([[1.0, 1.0, 0.0]])
    # n = 2, SS = 21, S = 7: 2*21/1 - 2*49/2 = -7
    assert mpse(y, p, weights=w) == pytest.approx(-7.0 * 2.0)  # times sum(w_b) = 2


def test_one_dimensional_inputs_and_zero_weights_give_zero():
    assert mpse([1.0, 2.0, 3.0], [3.0, 1.0, 0.0]) == 0.0
    assert mpse(LABELS_3D, PREDICTIONS_3D, weights=0.0) == 0.0
    assert mpse(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


def test_scalar_weight_scales_and_dtype_follows_inputs():
    got = mpse(LABELS_3D, PREDICTIONS_3D, weights=2.5)
    assert got.dtype == np.float32 and got == pytest.approx(2.5 * 111.533333)
    assert mpse(LABELS_3D.astype(np.float64), PREDICTIONS_3D.astype(np.float64)).dtype == np.float64


def test_labels_are_copied_only_to_pack_the_counts_of_zero_weights():
    """Where no weight is 0 every sample counts all its elements: the kernels read the labels
    as given (no copy); a zero weight packs each sample's count after its labels."""
    spec = lossforge.registry.get("mean_pairwise_squared_error")
    rng = np.random.default_rng(4)
    y, p = rng.normal(size=(2, 6, 5)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=(6, 1))
    unpacked = spec._prepare(y, p, w, {})[0].y
    assert unpacked.shape == (6, 5) and np.shares_memory(unpacked, y)
    w[2] = 0.0
    packed = spec._prepare(y, p, w, {})[0].y
    assert packed.shape == (6, 6) and not np.shares_memory(packed, y)
    assert list(packed[:, -1]) == [5, 5, 0, 5, 5, 5] and not packed.flags.writeable
    for weights in (w, w + 1.0):  # the same numbers through either layout
        want = sum(float(weights[b, 0]) * ((2 * np.sum((p[b] - y[b]).astype(np.float64) ** 2) / 4
                                             - 2 * np.sum((p[b] - y[b]).astype(np.float64)) ** 2
                                             / 20) if weights[b, 0] else 0.0) for b in range(6))
        assert spec(y, p, weights) == pytest.approx(want, rel=1e-5)
