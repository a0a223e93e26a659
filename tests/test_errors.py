"""Bad input gets a ValueError/TypeError naming the argument, never a crash or a numba error."""
import numpy as np
import pytest

import lossforge
from lossforge import InvalidArgumentError, InvalidTypeError

L = lossforge.losses
Y = np.zeros((3, 4), np.float32)


@pytest.mark.parametrize("call, match", [
    (lambda: L.mean_squared_error(Y, np.zeros((3, 1))), r"Shapes \(3, 1\).*\(3, 4\)"),
    (lambda: L.absolute_difference(None, Y), "`labels` must not be None"),
    (lambda: L.absolute_difference(Y, None), "`predictions` must not be None"),
    (lambda: L.mean_squared_error(Y, Y, weights=np.ones(3)), r"values.rank=2.*weights.rank=1"),
    (lambda: L.mean_squared_error(Y, Y, weights=np.ones((3, 2))), "Mismatch at dim 1"),
    (lambda: L.mean_squared_error(Y, Y, weights=None), "`weights` must not be None"),
    (lambda: L.mean_squared_error(Y, Y, reduction="mean"), "Invalid Reduction Key.*weighted_mean"),
    (lambda: L.mean_squared_error(Y, Y, reduction=3), "Invalid Reduction Key"),
    (lambda: L.softmax_cross_entropy(Y, Y, weights=np.ones((3, 4))), "values.rank=1"),
    (lambda: L.sparse_softmax_cross_entropy([0, 1, 4], Y), r"label value of 4 at index \(2,\)"),
    (lambda: L.sparse_softmax_cross_entropy([0, -1, 2], Y), r"label value of -1 at index \(1,\)"),
    (lambda: L.sparse_softmax_cross_entropy(np.array([0, 2**40, 1]), Y), "outside the valid range"),
    (lambda: L.sparse_softmax_cross_entropy([[0, 1, 2]], Y), "labels.shape.rank` must equal"),
    (lambda: L.sparse_softmax_cross_entropy([0, 1], Y), r"must have shape logits.shape\[:-1\]"),
    (lambda: L.sparse_softmax_cross_entropy([0, 1, 2], Y, weights=np.ones((3, 2))), "squeezed"),
    (lambda: L.cosine_distance(Y, Y), "You must specify argument `axis`"),
    (lambda: L.cosine_distance(Y, Y, axis=1, dim=1), "Cannot specify both 'dim' and 'axis'"),
    (lambda: L.cosine_distance(Y, Y, axis=2), r"`axis`=2 is out of range"),
    (lambda: L.cosine_distance(Y, Y, axis=1, weights=np.ones((3, 4))), "Mismatch at dim 1"),
    (lambda: L.log_loss([[1, 2], [3]], [1, 2]), "could not be converted"),
    (lambda: lossforge.nn.softmax_cross_entropy_with_logits(1.0, 1.0), "at least one dimension"),
    (lambda: L.mean_pairwise_squared_error(Y, Y, weights=np.ones(3)), "values.rank=2"),
])
def test_invalid_values_raise_value_error_naming_the_problem(call, match):
    with pytest.raises(InvalidArgumentError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("call, match", [
    (lambda: L.mean_squared_error(["a", "b"], ["c", "d"]), "`labels` must hold real numbers"),
    (lambda: L.mean_squared_error(Y, Y.astype(np.complex64)), "`predictions`.*complex64"),
    (lambda: L.mean_squared_error(Y, Y, weights="heavy"), "`weights`"),
    (lambda: L.mean_squared_error(np.array([{}, {}]), Y[0, :2]), "`labels`.*object"),
    (lambda: L.huber_loss(Y, Y, delta="wide"), "`delta` must be a real number"),
    (lambda: L.huber_loss(Y, Y, delta=True), "`delta` must be a number, got a bool"),
    (lambda: L.log_loss(Y, Y, epsilon=None), "`epsilon`"),
    (lambda: L.sparse_softmax_cross_entropy([0.0, 1.0, 2.0], Y), "integer class indices"),
    (lambda: L.sparse_softmax_cross_entropy([True, False, True], Y), "integer class indices"),
    (lambda: L.cosine_distance(Y, Y, axis=1.0), "`axis` must be an int"),
])
def test_invalid_types_raise_type_error_naming_the_argument(call, match):
    with pytest.raises(InvalidTypeError, match=match) as info:
        call()
    assert isinstance(info.value, TypeError)


def test_pairwise_has_no_reduction_argument():
    with pytest.raises(TypeError):
        L.mean_pairwise_squared_error(Y, Y, reduction="weighted_sum")


def test_out_of_range_sparse_labels_never_reach_memory_outside_the_logits():
    """The kernel guards its index too: a bypassed check yields NaN, not a wild read."""
    from lossforge import kernels
    k = kernels.loss_kernels(lossforge.registry.get("sparse_softmax_cross_entropy"))
    logits = np.zeros((3, 4))
    labels = np.array([0, 10**9, -10**9], dtype=np.int64)
    out = np.empty(3)
    w = np.broadcast_to(np.ones((1, 1, 1)), (1, 1, 3))
    k.SERIAL[1](labels, logits, w, (), 3, out, np.empty((0, 0)), 1)
    assert out[0] == pytest.approx(np.log(4)) and np.isnan(out[1:]).all()


def test_dim_is_a_deprecated_alias_of_axis():
    y = np.eye(3)
    with pytest.warns(DeprecationWarning, match="`dim` is deprecated"):
        got = L.cosine_distance(y, y, dim=1)
    assert got == pytest.approx(0.0)
