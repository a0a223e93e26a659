"""Reduction enum, partial states and finalize."""
import math

import numpy as np
import pytest

import lossforge
from lossforge import LossState, Reduction
from lossforge.reduction import div_no_nan, finalize, resolve_reduction


def test_reduction_keys_match_tensorflow():
    assert [r.value for r in Reduction.all()] == [
        "none", "weighted_sum", "weighted_mean", "weighted_sum_over_batch_size",
        "weighted_sum_by_nonzero_weights", "weighted_sum_by_nonzero_weights"]
    assert Reduction.SUM_OVER_NONZERO_WEIGHTS is Reduction.SUM_BY_NONZERO_WEIGHTS
    assert Reduction.MEAN == "weighted_mean"
    for r in Reduction.all():
        assert resolve_reduction(r.value) is r and resolve_reduction(r) is r
        Reduction.validate(r.value)


@pytest.mark.parametrize("bad", ["mean", "SUM", "", None, 1, 2.0])
def test_invalid_reduction_lists_valid_ones(bad):
    with pytest.raises(ValueError, match="Invalid Reduction Key.*weighted_sum_over_batch_size"):
        Reduction.validate(bad)


def test_div_no_nan():
    assert div_no_nan(math.nan, 0.0) == 0.0
    assert div_no_nan(math.inf, 0) == 0.0
    assert div_no_nan(3.0, -2.0) == -1.5


def test_finalize_each_reduction():
    s = LossState(weighted_sum=6.0, weight_sum=4.0, nonzero_count=3.0, element_count=12)
    assert finalize(s, Reduction.SUM) == 6.0
    assert finalize(s, "weighted_mean") == 1.5
    assert finalize(s, Reduction.SUM_OVER_BATCH_SIZE) == 0.5
    assert s.finalize(Reduction.SUM_BY_NONZERO_WEIGHTS) == 2.0
    with pytest.raises(ValueError, match="NONE"):
        finalize(s, Reduction.NONE)


def test_states_add_so_chunks_reduce_exactly():
    """The kernels' states of two halves add up to the state of the whole."""
    from lossforge import compute
    from lossforge.registry import Prepared
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=1000), rng.normal(size=1000)
    w = rng.uniform(-1, 2, size=1000)
    w[::7] = 0

    spec = lossforge.registry.get("mean_squared_error")
    f64 = np.dtype(np.float64)

    def state(lo, hi):
        prepared = Prepared(y[lo:hi], p[lo:hi], w[lo:hi], (hi - lo,), (hi - lo,), f64, f64)
        return compute.run(spec, prepared, (), Reduction.SUM)[2]

    whole, halves = state(0, 1000), state(0, 400) + state(400, 1000)
    assert halves.element_count == whole.element_count == 1000
    assert halves.nonzero_count == whole.nonzero_count == np.count_nonzero(w)
    for r in Reduction.all()[1:]:
        direct = lossforge.losses.mean_squared_error(y, p, weights=w, reduction=r)
        assert finalize(halves, r) == pytest.approx(finalize(whole, r), rel=1e-13)
        assert finalize(whole, r) == pytest.approx(float(direct), rel=1e-15)
