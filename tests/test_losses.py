"""Every loss x every reduction x every kind of weights, against float64 NumPy references."""
import numpy as np
import pytest

import lossforge
import reference as ref
from cases import CASE_IDS, CASES, REDUCTIONS, weight_kinds

R = lossforge.Reduction


def _loss_shape(case, inputs):
    return ref.f64(case.expected(inputs)).shape


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=[r.name for r in REDUCTIONS])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_weight_kind_matches_reference(case, reduction):
    rng = np.random.default_rng(0)
    inputs = case.make(rng, np.float64)
    losses = case.expected(inputs)
    for kind, weights in weight_kinds(losses.shape, rng).items():
        got = case.call(inputs, weights=weights, reduction=reduction)
        want = ref.reduce(losses, weights, reduction.value)
        assert np.shape(got) == np.shape(want), kind
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"weights={kind}")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_output_dtype_follows_input_and_values_match(case, dtype):
    rng = np.random.default_rng(1)
    inputs = case.make(rng, dtype)
    losses = case.expected(inputs)  # float64 reference from the same rounded inputs
    got = case.call(inputs)
    assert got.dtype == dtype
    tol = {np.float16: 1e-3, np.float32: 1e-6, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(float(got), ref.reduce(losses, 1.0, ref.R_NONZERO), rtol=tol)
    none = case.call(inputs, reduction=R.NONE)
    assert none.dtype == dtype and none.shape == losses.shape
    np.testing.assert_allclose(none.astype(np.float64), losses, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_inputs_are_never_modified_and_any_memory_order_works(case):
    rng = np.random.default_rng(2)
    inputs = case.make(rng, np.float32)
    want = case.call(inputs)
    # F-ordered copies, and read-only, non-contiguous views over a doubled buffer
    fortran = tuple(np.asfortranarray(a) for a in inputs)
    strided = []
    for a in inputs:
        big = np.repeat(a[..., None], 2, axis=-1)[..., 0]
        assert not big.flags.c_contiguous or a.ndim == 0 or a.size <= 1
        big.flags.writeable = False
        strided.append(big)
    for variant in (fortran, tuple(strided)):
        before = [v.copy() for v in variant]
        np.testing.assert_allclose(case.call(variant), want, rtol=1e-6)
        for b, v in zip(before, variant):
            np.testing.assert_array_equal(b, v)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_lists_and_integer_inputs(case):
    rng = np.random.default_rng(3)
    inputs = case.make(rng, np.float64)
    as_lists = tuple(a.tolist() for a in inputs)
    np.testing.assert_allclose(case.call(as_lists), case.call(inputs), rtol=1e-6)


def test_integer_and_bool_inputs_compute_as_float32():
    y = np.array([[0, 1, 2]], dtype=np.int64)
    p = np.array([[1, 1, 0]], dtype=np.int32)
    got = lossforge.losses.mean_squared_error(y, p)
    assert got.dtype == np.float32 and got == pytest.approx(5 / 3)
    b = lossforge.losses.absolute_difference(np.array([True, False]), np.array([False, False]))
    assert b.dtype == np.float32 and b == pytest.approx(0.5)
    # unlike TF, integer losses are not truncated back to int
    assert lossforge.losses.compute_weighted_loss([1, 2, 4]) == pytest.approx(7 / 3)


def test_mixed_float_precision_promotes():
    got = lossforge.losses.mean_squared_error(np.float64([0.1, 0.2]), np.float32([0.3, 0.1]))
    assert got.dtype == np.float64


@pytest.mark.parametrize("shape", [(), (1,), (0,), (0, 3), (3, 0), (2, 1, 3)])
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=[r.name for r in REDUCTIONS])
def test_scalar_empty_and_size_one_shapes(shape, reduction):
    rng = np.random.default_rng(4)
    y, p = rng.normal(size=shape), rng.normal(size=shape)
    got = lossforge.losses.mean_squared_error(y, p, reduction=reduction)
    want = ref.reduce(ref.mean_squared_error(y, p), 1.0, reduction.value)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.shape(got) == np.shape(want)


@pytest.mark.parametrize("weights_shape", [(1, 1, 1, 1), (2, 1, 4, 1), (1, 3, 1, 5),
                                           (2, 3, 4, 5), (2, 1, 1, 5), (1, 3, 4, 1)])
def test_every_broadcast_pattern_of_weights(weights_shape):
    """Patterns with up to four runs of broadcast/full dims, incl. ones materialised."""
    rng = np.random.default_rng(5)
    y, p = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    w = rng.uniform(-1, 2, size=weights_shape)
    w.flat[::2] = 0
    for r in REDUCTIONS:
        got = lossforge.losses.huber_loss(y, p, weights=w, reduction=r, delta=0.5)
        np.testing.assert_allclose(got, ref.reduce(ref.huber_loss(y, p, 0.5), w, r.value),
                                   rtol=1e-12, atol=1e-12)


def test_parallel_kernels_agree_with_serial(monkeypatch):
    """Inputs past the threshold take the prange kernels; the numbers stay the same."""
    from lossforge import kernels
    rng = np.random.default_rng(6)
    y, p = rng.normal(size=(300, 257)), rng.normal(size=(300, 257))
    w = rng.uniform(0, 2, size=(300, 1))
    want = {r: lossforge.losses.huber_loss(y, p, weights=w, reduction=r) for r in REDUCTIONS}
    monkeypatch.setattr(kernels, "PARALLEL_THRESHOLD", 1000)
    for r in REDUCTIONS:
        got = lossforge.losses.huber_loss(y, p, weights=w, reduction=r)
        np.testing.assert_allclose(got, want[r], rtol=1e-13)
        np.testing.assert_allclose(got, ref.reduce(ref.huber_loss(y, p), w, r.value), rtol=1e-12)


def test_float32_reductions_accumulate_in_float64():
    """A float32 accumulator would lose ~1e-3 relative here; float64 keeps float32 rounding."""
    n = 1 << 22
    y = np.zeros(n, np.float32)
    p = np.full(n, 0.1, np.float32)
    got = lossforge.losses.absolute_difference(y, p, reduction=lossforge.Reduction.SUM)
    assert got == pytest.approx(float(np.float32(0.1)) * n, rel=1e-7)


def test_weights_are_not_required_to_be_float():
    y, p = np.ones((2, 2)), np.zeros((2, 2))
    got = lossforge.losses.mean_squared_error(y, p, weights=np.array([[True], [False]]))
    assert got == pytest.approx(1.0)
    got = lossforge.losses.mean_squared_error(y, p, weights=[[3], [0]], reduction="weighted_sum")
    assert got == pytest.approx(6.0)


def test_every_tf_function_keeps_tf_positional_signature_and_adds_keyword_only_device():
    """TF's positional arguments first and unchanged; lossforge's additions keyword-only."""
    import inspect
    tf_order = {
        "absolute_difference": ["labels", "predictions", "weights", "scope", "loss_collection", "reduction"],
        "mean_squared_error": ["labels", "predictions", "weights", "scope", "loss_collection", "reduction"],
        "huber_loss": ["labels", "predictions", "weights", "delta", "scope", "loss_collection", "reduction"],
        "log_loss": ["labels", "predictions", "weights", "epsilon", "scope", "loss_collection", "reduction"],
        "hinge_loss": ["labels", "logits", "weights", "scope", "loss_collection", "reduction"],
        "sigmoid_cross_entropy": ["multi_class_labels", "logits", "weights", "label_smoothing", "scope",
                                  "loss_collection", "reduction"],
        "softmax_cross_entropy": ["onehot_labels", "logits", "weights", "label_smoothing", "scope",
                                  "loss_collection", "reduction"],
        "sparse_softmax_cross_entropy": ["labels", "logits", "weights", "scope", "loss_collection",
                                         "reduction"],
        "cosine_distance": ["labels", "predictions", "axis", "weights", "scope", "loss_collection",
                            "reduction", "dim"],
        "compute_weighted_loss": ["losses", "weights", "scope", "loss_collection", "reduction"],
        "mean_pairwise_squared_error": ["labels", "predictions", "weights", "scope", "loss_collection"],
    }
    for name, order in tf_order.items():
        parameters = inspect.signature(getattr(lossforge.losses, name)).parameters.values()
        positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        keyword_only = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
        assert positional == order, name
        assert "device" in keyword_only, name
