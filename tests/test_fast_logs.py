"""`LossSpec.fast_logs`: float32 kernels that take every log as `vmath.log_or_nan` first, and
run again with the full log where the sum is not finite, give the numbers of the full log.

Each loss that declares it is checked against a copy of itself without it, on float32 inputs
where the logs' arguments meet every special case (0, subnormals, negatives, inf, NaN) and on
inputs where they meet none, bit for bit (NaN where NaN)."""
import dataclasses

import numpy as np
import pytest

from lossforge import registry
from lossforge.errors import InvalidArgumentError

FAST_LOGS = [spec.name for spec in registry.specs() if spec.fast_logs]
SPECIAL = np.float32([0.0, -0.0, 1e-45, 1e-39, -1e-45, -0.5, -2.0, 1.0, 1.0000001, 2.0, np.inf,
                      -np.inf, np.nan])


def test_the_built_in_log_losses_declare_it():
    assert {"log_loss", "binary_cross_entropy", "kl_divergence", "poisson"} <= set(FAST_LOGS)


def _inputs(rng, n, special=None, where="p"):
    """Labels and predictions in [0, 1], some labels hard; ``special`` (one value) in some
    predictions, or labels, alone: a second special value could trigger the rerun by itself
    and hide a wrong fast result for the first."""
    y = rng.random(n, dtype=np.float32)
    y[::5] = np.round(y[::5])  # some hard labels (0 * log terms)
    p = rng.random(n, dtype=np.float32)
    if special is not None:
        (p if where == "p" else y)[3::37] = special
    return y, p


def _same(a, b) -> bool:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    both = np.isnan(a) & np.isnan(b)
    return bool(np.array_equal(np.isnan(a), np.isnan(b))
                and np.array_equal(a[~both].view(np.int32), b[~both].view(np.int32)))


@pytest.mark.parametrize("name", FAST_LOGS)
@pytest.mark.parametrize("n", [1000, 200_000])  # the small-batch path and the parallel kernels
def test_fast_logs_give_the_full_logs_numbers(name, n):
    spec = registry.get(name)
    full = dataclasses.replace(spec, fast_logs=False)  # the same formulas, the full log only
    rng = np.random.default_rng(n)
    w = rng.random(n, dtype=np.float32)
    w[::11] = 0.0  # a zero weight at a NaN loss still leaves the sum NaN
    params = [{}] + ([{"epsilon": 0.0}] if "epsilon" in spec.param_names else [])
    cases = [(None, "p")] + [(v, "p") for v in SPECIAL] + [(v, "y") for v in SPECIAL[::2]]
    for special, where in cases:
        y, p = _inputs(rng, n, special, where)
        for kwargs in params:
            for reduction in ("none", "weighted_sum", "weighted_mean"):
                for weights in (1.0, w):
                    got = spec(y, p, weights=weights, reduction=reduction, **kwargs)
                    want = full(y, p, weights=weights, reduction=reduction, **kwargs)
                    assert _same(got, want), (special, where, reduction, kwargs)
            value, grad = spec.value_and_grad(y, p, weights=w, **kwargs)
            want_value, want_grad = full.value_and_grad(y, p, weights=w, **kwargs)
            assert _same(value, want_value) and _same(grad, want_grad), (special, where, kwargs)
    # the calls above took the fast path (`test_a_finite_sum_is_not_computed_twice`: which runs)
    assert "_cpu_kernels_fast_logs" in spec.__dict__ or \
        "_cpu_kernels_by_constants_fast_logs" in spec.__dict__


def test_a_finite_sum_is_not_computed_twice(monkeypatch):
    from lossforge import compute
    spec = dataclasses.replace(registry.get("log_loss"))  # a fresh spec: no kernels yet
    rng = np.random.default_rng(0)
    y, p = _inputs(rng, 200_000)
    spec(y, p)
    calls = []
    launch = compute._launch
    monkeypatch.setattr(compute, "_launch", lambda *a: calls.append(a[1]) or launch(*a))
    spec(y, p)
    assert len(calls) == 1 and calls[0] is spec.__dict__["_cpu_kernels_fast_logs"]
    p[7] = np.nan
    assert np.isnan(spec(y, p))
    assert len(calls) == 3 and calls[2] is spec.__dict__["_cpu_kernels"]


def test_fast_logs_is_for_elementwise_losses():
    with pytest.raises(InvalidArgumentError, match="fast_logs"):
        registry.LossSpec("rows", lambda y, p, j: 0.0, kind="rowwise", fast_logs=True)
