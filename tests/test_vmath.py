"""The vectorised float32 math of `lossforge.kernels.vmath` and the float32 formula variants.

Accuracy is measured against float64 libm in ulps over a strided sweep of all 2**32 float32
bit patterns (every 8191st: ~520K inputs per function, each sign and exponent); the exhaustive
sweep is ``python -m lossforge.kernels.vmath`` (max 0.83 / 1.01 / 1.44 / 1.33 / 2.48 ulp for
log / exp / log1p / tanh / sinh when last run, no NaN/inf mismatch).
"""
import math

import numpy as np
import pytest

from lossforge import formulas, registry

vmath = pytest.importorskip("lossforge.kernels.vmath")  # imports numba

ULP_BOUND = 3.0  # the issue asks for <= 4; the exhaustive sweep measured <= 2.48 (sinh)


@pytest.mark.parametrize("name", vmath.FUNCTIONS)
def test_strided_sweep_of_every_float32_is_within_the_ulp_bound(name):
    results = vmath.sweep(step=8191)
    worst, mismatches = results[name]
    assert mismatches == 0, f"{name}: NaN/inf results differ from libm's"
    assert worst <= ULP_BOUND, f"{name}: {worst:.3f} ulp"


SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.1754944e-38,
                    3.4028235e38, -3.4028235e38, 88.72, 88.73, -103.9, -104.0, 0.625, 9.02,
                    -0.99999994, 1e-30], dtype=np.float32)


def _mapped(fn):
    from numba import njit

    @njit
    def kernel(a):
        out = np.empty_like(a)
        for i in range(a.size):
            out[i] = fn(a[i])
        return out
    return kernel


@pytest.mark.parametrize("name, reference", [
    ("log", np.log), ("exp", np.exp), ("log1p", np.log1p), ("tanh", np.tanh)])
def test_special_values_match_numpy_float64(name, reference):
    got = _mapped(getattr(vmath, name))(SPECIAL)
    with np.errstate(all="ignore"):
        want = reference(SPECIAL.astype(np.float64)).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    infinite = np.isinf(want)
    np.testing.assert_array_equal(got[infinite], want[infinite])
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=3e-7, atol=3e-45)


def test_float64_arguments_are_libm():
    from numba import njit

    @njit
    def both(x):
        return vmath.log(x), vmath.exp(x), vmath.log1p(x), vmath.tanh(x)
    assert both(0.3) == (math.log(0.3), math.exp(0.3), math.log1p(0.3), math.tanh(0.3))


def test_row_helpers_match_their_formula_namesakes():
    rng = np.random.default_rng(1)
    for row in (rng.normal(size=1000).astype(np.float32) * 30,
                np.array([-np.inf, 0.5, 2.0], np.float32),
                np.array([1e4, 1e4 - 1, -1e4], np.float32)):
        z = rng.random(row.size).astype(np.float32)
        m, lse = vmath.row_logsumexp(row)
        m_ref, lse_ref = formulas._row_logsumexp(row.astype(np.float64))
        assert m == m_ref
        assert lse == pytest.approx(lse_ref, rel=1e-6, abs=1e-7)
        assert vmath.row_sum(z) == pytest.approx(formulas._row_sum(z), rel=1e-12)
        # (m - x_k is rounded to float32 there: one rounding per term, all terms >= 0)
        assert vmath.row_shifted_dot(z, row, np.float32(m)) == pytest.approx(
            formulas._row_shifted_dot(z, row, m), rel=1e-7)
        assert vmath.row_shifted_sum(row[np.isfinite(row)], np.float32(m)) == pytest.approx(
            formulas._row_shifted_sum(row[np.isfinite(row)], m), rel=1e-7)
    # a NaN anywhere in the row makes the log-sum-exp NaN (maxnum alone would skip it)
    row = np.array([1.0, np.nan, 3.0], np.float32)
    assert math.isnan(vmath.row_logsumexp(row)[1])


def test_float32_variant_reads_constants_and_math_as_float32():
    from numba import njit

    eps = 0.25

    def formula(y, p):
        return -y * math.log(p + eps) + 1.5 * float(p)

    variant = registry.float32_variant(formula)
    assert variant.__closure__[0].cell_contents == np.float32(0.25)
    compiled = njit(variant)
    f32 = np.float32
    assert compiled(f32(1.0), f32(0.5)) == pytest.approx(formula(1.0, 0.5), rel=1e-6)
    from numba import types
    assert compiled.nopython_signatures[0].return_type == types.float32
    assert formula.__closure__[0].cell_contents == 0.25  # the original is untouched


def test_float32_kernels_stay_within_float32_rounding_of_float64_ones():
    """Every elementwise loss: float32 inputs (float32 math) vs the same inputs in float64."""
    rng = np.random.default_rng(3)
    for spec in registry.specs():
        if spec.kind != "elementwise" or not spec.float32_math:
            continue
        labels, predictions, kwargs = spec.example_inputs(rng, 4096, 5)
        y32, p32 = np.asarray(labels, np.float32), np.asarray(predictions, np.float32)
        got = spec(y32, p32, reduction="none", **kwargs)
        want = spec(y32.astype(np.float64), p32.astype(np.float64), reduction="none", **kwargs)
        assert got.dtype == np.float32, spec.name
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=spec.name)
