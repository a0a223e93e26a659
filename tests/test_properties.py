"""Property tests: random shapes, values and weight shapes, against the float64 references."""
import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lossforge
import reference as ref

L = lossforge.losses
REDUCTIONS = lossforge.Reduction.all()
ELEMENTWISE = {
    "absolute_difference": (L.absolute_difference, ref.absolute_difference),
    "mean_squared_error": (L.mean_squared_error, ref.mean_squared_error),
    "huber_loss": (L.huber_loss, ref.huber_loss),
    "hinge_loss": (L.hinge_loss, ref.hinge_loss),
    "sigmoid_cross_entropy": (L.sigmoid_cross_entropy, ref.sigmoid_cross_entropy),
}
finite = st.floats(-1e3, 1e3, allow_nan=False, width=64)


@st.composite
def shape_and_weights(draw, max_dims=4):
    """A loss shape and weights valid for it: scalar, or each dim 1 or equal."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    if draw(st.booleans()) or not shape:
        return shape, draw(st.sampled_from([0.0, 1.0, -2.0, 3.5]))
    wshape = tuple(draw(st.sampled_from([1, d])) for d in shape)
    w = draw(hnp.arrays(np.float64, wshape, elements=st.sampled_from([0.0, 0.5, 1.0, -1.0, 2.0])))
    return shape, w


@given(name=st.sampled_from(sorted(ELEMENTWISE)), sw=shape_and_weights(), data=st.data(),
       reduction=st.sampled_from(REDUCTIONS), dtype=st.sampled_from([np.float32, np.float64]))
def test_elementwise_losses_match_reference(name, sw, data, reduction, dtype):
    shape, w = sw
    fn, reference = ELEMENTWISE[name]
    y = data.draw(hnp.arrays(dtype, shape, elements=finite))
    p = data.draw(hnp.arrays(dtype, shape, elements=finite))
    got = fn(y, p, weights=w, reduction=reduction)
    want = ref.reduce(reference(y, p), w, reduction.value)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    scale = np.max(np.abs(reference(y, p)) * np.max(np.abs(w), initial=0.0), initial=1.0)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=rtol * scale)
    assert np.shape(got) == np.shape(want)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6), data=st.data(),
       smoothing=st.sampled_from([0.0, 0.1]), reduction=st.sampled_from(REDUCTIONS))
def test_softmax_and_sparse_agree_with_reference(shape, data, smoothing, reduction):
    logits = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e4, 1e4)))
    classes = data.draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, shape[-1] - 1)))
    onehot = np.eye(shape[-1])[classes]
    want = ref.softmax_cross_entropy(onehot, logits, smoothing)
    got = L.softmax_cross_entropy(onehot, logits, label_smoothing=smoothing, reduction=reduction)
    np.testing.assert_allclose(got, ref.reduce(want, 1.0, reduction.value), rtol=1e-9, atol=1e-9)
    if smoothing == 0.0:
        sparse = L.sparse_softmax_cross_entropy(classes, logits, reduction=reduction)
        np.testing.assert_allclose(sparse, got, rtol=1e-9, atol=1e-9)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), data=st.data())
def test_cosine_distance_any_axis(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    y = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
    p = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
    got = L.cosine_distance(y, p, axis=axis, reduction=lossforge.Reduction.NONE)
    np.testing.assert_allclose(got, ref.cosine_distance(y, p, axis), rtol=1e-12, atol=1e-12)


@given(sw=shape_and_weights(max_dims=3), data=st.data())
def test_pairwise_matches_reference(sw, data):
    shape, w = sw
    assume(len(shape) >= 1)
    y = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-10, 10)))
    p = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-10, 10)))
    want = ref.mean_pairwise_squared_error(y, p, w)
    got = L.mean_pairwise_squared_error(y, p, weights=w)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * max(1.0, abs(want)) * 100)


@given(data=st.data())
def test_sparse_labels_out_of_range_always_raise(data):
    classes = data.draw(st.integers(1, 5))
    labels = data.draw(hnp.arrays(np.int64, (4,), elements=st.integers(-10, 10)))
    logits = np.zeros((4, classes))
    if ((labels < 0) | (labels >= classes)).any():
        try:
            L.sparse_softmax_cross_entropy(labels, logits)
        except ValueError as e:
            assert "outside the valid range" in str(e)
        else:
            raise AssertionError("out-of-range label accepted")
    else:
        assert np.isclose(L.sparse_softmax_cross_entropy(labels, logits), np.log(classes))
