"""Analytic gradients of every registered loss against central finite differences (float64).

Parametrised over the registry: a newly registered loss is tested here at once.
"""
import dataclasses

import numpy as np
import pytest
from numba import njit

import lossforge
from cases import gradient_weights
from lossforge import Reduction
from lossforge.kernels import PARALLEL_THRESHOLD

SPECS = lossforge.registry.specs()
REDUCTIONS = [Reduction.NONE, Reduction.SUM, Reduction.MEAN, Reduction.SUM_OVER_BATCH_SIZE,
              Reduction.SUM_BY_NONZERO_WEIGHTS]


def _reduced(spec, y, p, w, r, kw):
    value = spec(y, p, weights=w, reduction=r, **kw)
    return float(np.sum(value, dtype=np.float64))  # NONE: the gradient is of sum(L * W)


def _finite_differences(spec, y, p, w, r, kw, h=1e-6):
    grad = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        up, down = p.copy(), p.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (_reduced(spec, y, up, w, r, kw) - _reduced(spec, y, down, w, r, kw)) / (2 * h)
    return grad


@pytest.mark.parametrize("weights", ["scalar", "per_sample", "per_element"])
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=[r.name for r in REDUCTIONS])
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_gradient_matches_finite_differences(spec, reduction, weights):
    if spec.grad is None:
        pytest.skip(f"{spec.name} registers no gradient formula")
    rng = np.random.default_rng(abs(hash((spec.name, reduction.name, weights))) % 2**32)
    y, p, kw = spec.example_inputs(rng, batch=3, classes=4)
    loss_shape = np.shape(spec(y, p, reduction=Reduction.NONE, **kw))
    w = gradient_weights(weights, loss_shape, rng)
    value, grad = spec.value_and_grad(y, p, weights=w, reduction=reduction, **kw)
    assert grad.shape == p.shape and grad.dtype == np.float64
    np.testing.assert_allclose(value, spec(y, p, weights=w, reduction=reduction, **kw), rtol=1e-13)
    np.testing.assert_allclose(grad, _finite_differences(spec, y, p, w, reduction, kw),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_gradient_is_finite_where_the_value_is(spec):
    """At extreme logits (+-1e4) and probabilities of exactly 0 and 1."""
    if spec.grad is None:
        pytest.skip(f"{spec.name} registers no gradient formula")
    rng = np.random.default_rng(0)
    y, p, kw = spec.example_inputs(rng, batch=4, classes=3)
    if spec.prediction_range is None:
        extremes = np.resize([1e4, -1e4, 0.0], p.size).reshape(p.shape)
    else:
        extremes = np.resize(list(spec.prediction_range), p.size).reshape(p.shape)
    p = np.where(rng.random(p.shape) < 0.5, extremes, p)
    values = spec(y, p, reduction=Reduction.NONE, **kw)
    _, grad = spec.value_and_grad(y, p, reduction=Reduction.SUM, **kw)
    finite_rows = np.isfinite(values).reshape(values.shape[0], -1).all(axis=1)
    assert np.isfinite(grad.reshape(grad.shape[0], -1)[finite_rows]).all()


def test_float32_gradients_are_float32_and_close():
    spec = lossforge.registry.get("sigmoid_cross_entropy")
    rng = np.random.default_rng(1)
    y, p, _ = spec.example_inputs(rng)
    _, g64 = spec.value_and_grad(y, p)
    _, g32 = spec.value_and_grad(y.astype(np.float32), p.astype(np.float32))
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-5, atol=1e-7)


def test_all_zero_weights_give_zero_gradient_not_nan():
    spec = lossforge.registry.get("mean_squared_error")
    value, grad = spec.value_and_grad(np.zeros(3), np.ones(3), weights=0.0)
    assert value == 0.0 and np.array_equal(grad, np.zeros(3))


def test_value_and_grad_without_a_gradient_formula_is_a_clear_error():
    spec = lossforge.registry.LossSpec("no_grad_loss", lambda y, p: abs(p - y))
    assert spec(np.zeros(2), np.ones(2)) == 1.0
    with pytest.raises(ValueError, match="has no gradient formula"):
        spec.value_and_grad(np.zeros(2), np.ones(2))


SCALED = [Reduction.MEAN, Reduction.SUM_OVER_BATCH_SIZE, Reduction.SUM_BY_NONZERO_WEIGHTS]
WITH_GRAD = [s for s in SPECS if s.grad is not None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", WITH_GRAD, ids=[s.name for s in WITH_GRAD])
def test_scalar_weight_gradient_is_the_weighted_gradient_over_the_denominator(spec, dtype):
    """With a scalar weight the kernel applies the reduction's denominator itself (one pass),
    elementwise and row-wise: the result must be the SUM gradient (denominator 1) divided by
    that denominator, within the rounding of the two orders of multiplication, on both sides
    of the threshold between the serial and the multi-threaded kernels."""
    rng = np.random.default_rng(7)
    for rows in (16, PARALLEL_THRESHOLD // 4 + 3):
        y, p, kw = spec.example_inputs(rng, rows, 4)
        y, p = (np.asarray(a).astype(dtype) if np.asarray(a).dtype.kind == "f" else a
                for a in (y, p))
        n = np.size(spec(y, p, reduction=Reduction.NONE, **kw))  # loss elements (rows)
        for w in (0.5, 3.0):
            unscaled = spec.value_and_grad(y, p, w, Reduction.SUM, **kw)[1].astype(np.float64)
            for reduction in SCALED:
                denom = w * n if reduction is Reduction.MEAN else n
                grad = spec.value_and_grad(y, p, w, reduction, **kw)[1]
                assert grad.dtype == dtype
                np.testing.assert_allclose(grad, unscaled / denom, rtol=4 * np.finfo(dtype).eps,
                                           atol=np.finfo(dtype).tiny, err_msg=reduction.name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_scalar_weight_gives_zero_gradient_even_at_nan(dtype):
    """div_no_nan's gradient: 0 where the denominator is 0, whatever dL/dp is (here NaN)."""
    spec = lossforge.registry.get("log_loss")
    p = np.array([0.2, np.nan, 0.7], dtype=dtype)
    for reduction in (Reduction.MEAN, Reduction.SUM_BY_NONZERO_WEIGHTS):
        value, grad = spec.value_and_grad(np.array([0.0, 1.0, 1.0], dtype), p, 0.0, reduction)
        assert value == 0.0 and np.array_equal(grad, np.zeros(3, dtype)), reduction


EXTENDED = list(lossforge.builtins.EXTENDED.values())
FUSED = [s for s in SPECS + EXTENDED if s.fused_grad is not None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", FUSED, ids=[s.name for s in FUSED])
def test_fused_formula_gives_the_two_formulas_numbers(spec, dtype):
    """A loss's ``fused_grad`` (value and gradient from one pass over a row) gives bit for bit
    the values of its ``value`` formula and the gradient of its ``grad`` formula: the same loss
    without it (which calls the two in turn) is the reference, at ordinary, extreme (+-1e4),
    infinite and NaN logits, and with label smoothing where the loss has it."""
    assert FUSED, "no built-in loss has a fused formula"
    twin = dataclasses.replace(spec, fused_grad=None)
    rng = np.random.default_rng(3)
    y, p, kw = spec.example_inputs(rng, batch=6, classes=7)
    p = np.array(p, dtype=dtype)
    p[1, 2], p[2, 0], p[3, 1], p[4, 4] = 1e4, -1e4, np.inf, np.nan
    p[5, :] = -np.inf
    if np.asarray(y).dtype.kind == "f":
        y = np.asarray(y).astype(dtype)
    w = gradient_weights("per_sample", np.shape(spec(y, p, reduction=Reduction.NONE, **kw)), rng)
    for params in [{}] + ([{"label_smoothing": 0.2}] if "label_smoothing" in spec.param_names
                          else []):
        for reduction in (Reduction.NONE, Reduction.SUM_BY_NONZERO_WEIGHTS):
            fused = spec.value_and_grad(y, p, w, reduction, **kw, **params)
            two = twin.value_and_grad(y, p, w, reduction, **kw, **params)
            np.testing.assert_array_equal(fused[0], two[0])
            np.testing.assert_array_equal(fused[1], two[1])
            np.testing.assert_array_equal(fused[0], spec(y, p, w, reduction, **kw, **params))


FUSED_BY_DEFAULT = [s for s in SPECS if s.kind == "elementwise" and s.grad is not None
                    and s.fused_grad is None and lossforge.registry.calls_math(s.value)]


@njit
def _grad_at_each(grad, y, p, params, out):
    for i in range(p.shape[0]):
        out[i] = grad(y[i], p[i], *params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", FUSED_BY_DEFAULT, ids=[s.name for s in FUSED_BY_DEFAULT])
def test_a_math_formula_and_its_gradient_share_one_loop_and_keep_their_bits(spec, dtype):
    """An elementwise loss whose value calls ``math`` (compute-bound) and that has no
    ``fused_grad`` gets value-and-gradient kernels that call its two formulas in one loop: the
    value is the value-only kernel's, bit for bit, and the gradient is its ``grad`` formula's
    at each element (the formula compiled alone, its float32 variant for float32 inputs), at
    ordinary and boundary inputs, NaN and inf, serial and multi-threaded sizes."""
    assert {"log_loss", "poisson", "kl_divergence"} <= {s.name for s in FUSED_BY_DEFAULT}
    assert lossforge.kernels.loss_kernels(spec).FUSED
    assert not lossforge.kernels.loss_kernels(lossforge.registry.get("mean_squared_error")).FUSED
    rng = np.random.default_rng(11)
    float32 = dtype == np.float32
    grad = lossforge.registry.jitted_formula(spec.fingerprint, "grad", float32=float32)
    params = tuple(dtype(p.default) for p in spec.params)
    for size in (1000, PARALLEL_THRESHOLD * 3 + 17):
        y, p, kw = spec.example_inputs(rng, batch=size // 10, classes=10)
        y, p = y.astype(dtype).ravel(), p.astype(dtype).ravel()
        low, high = spec.prediction_range or (-1e4, 1e4)
        p[:6] = [low, high, np.nan, np.inf, -np.inf, 0.0]
        y[6:9] = [0.0, np.nan, 1.0]
        value, got = spec.value_and_grad(y, p, reduction=Reduction.SUM, **kw)
        assert got.dtype == dtype
        np.testing.assert_array_equal(value, spec(y, p, reduction=Reduction.SUM, **kw))
        want = np.empty_like(p)
        _grad_at_each(grad, y, p, params, want)
        np.testing.assert_array_equal(got, want)


SPECIALIZED = [s for s in SPECS + EXTENDED if any(p.specialize for p in s.params)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", SPECIALIZED, ids=[s.name for s in SPECIALIZED])
def test_specialized_kernels_give_the_general_kernels_numbers(spec, dtype):
    """A kernel compiled with a parameter's value as a constant (`Param.specialize`) gives the
    general kernel's values and gradients at that value: float32 bit for bit; float64 within
    two ulps (LLVM folds libm's ``pow(x, 2.0)`` into ``x * x``, correctly rounded; glibc's pow
    is an ulp off in about 1 of 1000 draws, which a product may round to two). Ordinary, extreme, infinite and NaN inputs, on
    both sides of the threshold of the multi-threaded kernels."""
    assert SPECIALIZED, "no built-in loss specializes a parameter"
    general = dataclasses.replace(spec, params=tuple(
        dataclasses.replace(p, specialize=()) for p in spec.params))
    rng = np.random.default_rng(5)
    for rows in (6, PARALLEL_THRESHOLD // 4 + 3):
        y, p, kw = spec.example_inputs(rng, batch=rows, classes=4)
        p = np.array(p, dtype=dtype)
        p[1, 2], p[2, 0], p[3, 1], p[4, 2], p[5, 3] = 1e4, -1e4, np.inf, -np.inf, np.nan
        if np.asarray(y).dtype.kind == "f":
            y = np.asarray(y).astype(dtype)
        for param in spec.params:
            for value in param.specialize:
                for reduction in (Reduction.NONE, Reduction.SUM_BY_NONZERO_WEIGHTS):
                    args = (y, p, 0.5, reduction)
                    fast = spec.value_and_grad(*args, **kw, **{param.name: value})
                    slow = general.value_and_grad(*args, **kw, **{param.name: value})
                    for a, b in zip(fast, slow):
                        if dtype == np.float32:
                            np.testing.assert_array_equal(a, b)
                        else:
                            np.testing.assert_allclose(a, b, rtol=4.5e-16, atol=0)
        constants = spec.constants(spec.resolve_params({})[0])
        assert constants in spec.__dict__["_cpu_kernels_by_constants"]


def test_a_specialized_value_selects_a_kernel_with_the_value_as_a_constant():
    spec = lossforge.registry.get("focal")
    assert spec.constants((2.0, 0.25)) == ((0, 2.0),)
    assert spec.constants((2.5, 0.25)) == () and spec.constants((np.nan, 0.25)) == ()
    rng = np.random.default_rng(0)
    y, x = (rng.random((8, 3)) < 0.5).astype(np.float32), rng.normal(size=(8, 3)).astype(np.float32)
    at_2, at_2_5 = spec(y, x), spec(y, x, gamma=2.5)  # the small-call path
    assert spec.value_and_grad(y, x)[0] == at_2  # the general path
    modules = spec.__dict__["_cpu_kernels_by_constants"]
    fixed = open(modules[((0, 2.0),)].__file__).read()
    assert "float32(2.0), float32(params[1])" in fixed and "params[0]" not in fixed
    assert "float32(params[0]), float32(params[1])" in open(modules[()].__file__).read()
    p_t = np.where(y == 1, 1 / (1 + np.exp(-x.astype(np.float64))),
                   1 / (1 + np.exp(x.astype(np.float64))))
    alpha_t = np.where(y == 1, 0.25, 0.75)
    for gamma, got in ((2.0, at_2), (2.5, at_2_5)):
        want = np.mean(alpha_t * (1 - p_t) ** gamma * -np.log(p_t))
        assert got == pytest.approx(want, rel=1e-5)


WITH_GRAD = [s for s in SPECS if s.grad is not None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", WITH_GRAD, ids=[s.name for s in WITH_GRAD])
def test_grad_out_receives_the_same_gradient(spec, dtype):
    """``grad_out=`` (filled with NaN) gets the bits of a fresh gradient, and is the array
    returned: a row-wise loss's buffer is cleared first, as its formula may write only some
    entries, unless it declares ``grad_fills_rows`` (then a NaN left would fail here)."""
    rng = np.random.default_rng(11)
    y, p, kw = spec.example_inputs(rng, batch=5, classes=4)
    p = np.asarray(p).astype(dtype)
    if np.asarray(y).dtype.kind == "f":
        y = np.asarray(y).astype(dtype)
    for reduction in (Reduction.NONE, Reduction.MEAN, Reduction.SUM):
        for weights in (1.0, 0.5):
            fresh = spec.value_and_grad(y, p, weights, reduction, **kw)
            buffer = np.full(p.shape, np.nan, dtype=dtype)
            value, grad = spec.value_and_grad(y, p, weights, reduction, grad_out=buffer, **kw)
            assert grad is buffer
            np.testing.assert_array_equal(value, fresh[0])
            np.testing.assert_array_equal(grad, fresh[1])


def test_grad_out_that_cannot_hold_the_gradient_is_a_clear_error():
    spec = lossforge.registry.get("mean_squared_error")
    y, p = np.zeros((4, 3), np.float32), np.ones((4, 3), np.float32)
    cases = [(np.empty((3, 4), np.float32), r"shape \(3, 4\), not the predictions' \(4, 3\)"),
             (np.empty((4, 3)), "dtype float64, not the gradient's float32"),
             (np.empty((4, 6), np.float32)[:, ::2], "not C-contiguous"),
             (p, "shares memory with the inputs"),
             (np.empty((4, 3), np.float32).T.copy().T, "not C-contiguous")]
    readonly = np.empty((4, 3), np.float32)
    readonly.flags.writeable = False
    cases.append((readonly, "read-only"))
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            spec.value_and_grad(y, p, grad_out=bad)
    assert (p == 1).all()
    with pytest.raises(TypeError, match="`grad_out` must be a numpy array; got list"):
        spec.value_and_grad(y, p, grad_out=[0.0] * 12)
    with pytest.raises(ValueError, match="needs float32 or float64 inputs.*float16"):
        spec.value_and_grad(y.astype(np.float16), p.astype(np.float16),
                            grad_out=np.empty((4, 3), np.float16))
    # device="cuda" takes device arrays: test_cuda_sim.py::test_grad_out_on_the_cuda_path
