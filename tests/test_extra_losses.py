"""The built-ins beyond TF and the cross-entropies' PyTorch options, against float64 references.

The losses ``log_cosh``, ``poisson``, ``kl_divergence``, ``focal``, ``smooth_l1``,
``squared_hinge`` and ``binary_cross_entropy``, and the keyword options ``class_weights`` /
``ignore_index`` / ``label_smoothing`` (sparse), ``class_weights`` (softmax) and ``pos_weight``
(sigmoid). Every reference below is written in NumPy from the published definition (Keras and
PyTorch docs, torchvision's ``sigmoid_focal_loss``, Lin et al. 2017, PyTorch's
``cross_entropy_loss_label_smoothing`` in aten/src/ATen/native/LossNLL.cpp), not from
lossforge's formulas; neither torch nor optax is needed.
"""
import math

import numpy as np
import pytest

import lossforge
from lossforge import InvalidArgumentError, InvalidTypeError, Reduction, registry
from lossforge.builtins import EXTENDED, OptionsSpec
from cases import gradient_weights, weight_kinds

R = Reduction
L = lossforge.losses
REDUCTIONS = [R.NONE, R.SUM, R.MEAN, R.SUM_OVER_BATCH_SIZE, R.SUM_BY_NONZERO_WEIGHTS]
RIDS = [r.name for r in REDUCTIONS]


def f64(a):
    return np.asarray(a, dtype=np.float64)


def reduce(losses, weights, reduction, denominator_weights=None):
    """TF's reductions of ``losses * weights``; ``denominator_weights`` (default: ``weights``)
    are the weights MEAN and SUM_BY_NONZERO_WEIGHTS count."""
    losses = f64(losses)
    w = np.broadcast_to(f64(weights), losses.shape)
    d = w if denominator_weights is None else np.broadcast_to(f64(denominator_weights),
                                                               losses.shape)
    weighted = losses * w
    if reduction is R.NONE:
        return weighted
    total = weighted.sum()
    denominator = {R.SUM: 1.0, R.MEAN: d.sum(), R.SUM_OVER_BATCH_SIZE: float(losses.size),
                   R.SUM_BY_NONZERO_WEIGHTS: float(np.count_nonzero(d))}[reduction]
    return 0.0 if denominator == 0 else total / denominator


def softplus(x):
    return np.logaddexp(0.0, f64(x))


def sigmoid(x):
    return np.exp(-softplus(-f64(x)))  # accurate in both tails


def log_softmax(x):
    x = f64(x)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


# --- references of the extra losses ------------------------------------------------------------

def log_cosh_ref(y, p):
    """``log cosh a = -log(1 - tanh(a)**2) / 2`` below 1, ``log((e^a + e^-a) / 2)`` above."""
    a = np.abs(f64(p) - f64(y))
    small = -0.5 * np.log1p(-np.tanh(np.minimum(a, 1.0)) ** 2)
    return np.where(a < 1.0, small, np.logaddexp(a, -a) - math.log(2.0))


def poisson_ref(y, p, epsilon=1e-7):
    """Keras: ``y_pred - y_true * log(y_pred + epsilon)``; PyTorch's PoissonNLLLoss with
    log_input=False."""
    y, p = f64(y), f64(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return p - np.where(y == 0, 0.0, y * np.log(p + epsilon))


def kl_ref(y, p):
    """``y log(y / p)`` with 0 log 0 = 0 (scipy's rel_entr)."""
    y, p = f64(y), f64(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y == 0, 0.0, y * np.log(y / p))


def focal_ref(z, x, gamma=2.0, alpha=0.25):
    """torchvision.ops.sigmoid_focal_loss, reduction='none'."""
    z, x = f64(z), f64(x)
    p = sigmoid(x)
    ce = z * softplus(-x) + (1 - z) * softplus(x)  # -[z log p + (1 - z) log(1 - p)]
    one_minus_p_t = p * (1 - z) + sigmoid(-x) * z  # 1 - (p z + (1 - p)(1 - z))
    loss = ce * one_minus_p_t ** gamma
    if alpha >= 0:
        loss = loss * (alpha * z + (1 - alpha) * (1 - z))
    return loss


def smooth_l1_ref(y, p, beta=1.0):
    """torch.nn.SmoothL1Loss: 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta; beta=0 is L1."""
    a = np.abs(f64(p) - f64(y))
    if beta == 0:
        return a
    return np.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta)


def squared_hinge_ref(y, x):
    return np.maximum(0.0, 1.0 - (2 * f64(y) - 1) * f64(x)) ** 2


def bce_ref(y, p):
    """torch.nn.BCELoss: -(y log p + (1 - y) log(1 - p)), each log clamped at >= -100."""
    y, p = f64(y), f64(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -(y * np.maximum(np.log(p), -100.0) + (1 - y) * np.maximum(np.log(1 - p), -100.0))


def _normal_pair(rng, shape):
    return rng.normal(size=shape), 3 * rng.normal(size=shape)


def _binary_logits(rng, shape):
    return (rng.random(shape) > 0.5).astype(float), 3 * rng.normal(size=shape)


def _soft_logits(rng, shape):
    return rng.uniform(0, 1, size=shape), 3 * rng.normal(size=shape)


def _counts_rates(rng, shape):
    return rng.poisson(2.0, size=shape).astype(float), rng.uniform(0.05, 5.0, size=shape)


def _distributions(rng, shape):
    y = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    y[0, 0] = 0.0  # 0 log 0 = 0
    return y, rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])


def _soft_probabilities(rng, shape):
    return rng.uniform(0, 1, size=shape), rng.uniform(0.01, 0.99, size=shape)


# (id, loss name, reference, inputs maker, params)
EXTRA = [
    ("log_cosh", "log_cosh", log_cosh_ref, _normal_pair, {}),
    ("poisson", "poisson", poisson_ref, _counts_rates, {}),
    ("poisson_eps_torch", "poisson", lambda y, p: poisson_ref(y, p, 1e-8), _counts_rates,
     {"epsilon": 1e-8}),
    ("kl_divergence", "kl_divergence", kl_ref, _distributions, {}),
    ("focal", "focal", focal_ref, _binary_logits, {}),
    ("focal_soft_labels", "focal", focal_ref, _soft_logits, {}),
    ("focal_gamma0", "focal", lambda z, x: focal_ref(z, x, 0.0, 0.25), _binary_logits,
     {"gamma": 0.0}),
    ("focal_gamma_half_no_alpha", "focal", lambda z, x: focal_ref(z, x, 0.5, -1.0),
     _soft_logits, {"gamma": 0.5, "alpha": -1.0}),
    ("smooth_l1", "smooth_l1", smooth_l1_ref, _normal_pair, {}),
    ("smooth_l1_beta_0.5", "smooth_l1", lambda y, p: smooth_l1_ref(y, p, 0.5), _normal_pair,
     {"beta": 0.5}),
    ("smooth_l1_beta_0", "smooth_l1", lambda y, p: smooth_l1_ref(y, p, 0.0), _normal_pair,
     {"beta": 0.0}),
    ("squared_hinge", "squared_hinge", squared_hinge_ref, _binary_logits, {}),
    ("binary_cross_entropy", "binary_cross_entropy", bce_ref, _soft_probabilities, {}),
]
EXTRA_IDS = [e[0] for e in EXTRA]


# --- the extra losses: values -------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
@pytest.mark.parametrize("case", EXTRA, ids=EXTRA_IDS)
def test_extra_loss_matches_reference_for_every_weight_kind(case, reduction):
    _, name, reference, make, params = case
    spec = registry.get(name)
    rng = np.random.default_rng(0)
    y, p = make(rng, (4, 3))
    losses = reference(y, p)
    for kind, weights in weight_kinds(losses.shape, rng).items():
        got = spec(y, p, weights=weights, reduction=reduction, **params)
        want = reduce(losses, weights, reduction)
        assert np.shape(got) == np.shape(want), kind
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13, err_msg=f"weights={kind}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", EXTRA, ids=EXTRA_IDS)
def test_extra_loss_dtypes(case, dtype):
    _, name, reference, make, params = case
    spec = registry.get(name)
    y, p = (a.astype(dtype) for a in make(np.random.default_rng(1), (5, 4)))
    losses = reference(y, p)  # float64 reference of the same rounded inputs
    none = spec(y, p, reduction=R.NONE, **params)
    assert none.dtype == dtype and none.shape == (5, 4)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(none.astype(np.float64), losses, rtol=tol, atol=tol)
    got = spec(y, p, **params)
    assert got.dtype == dtype
    np.testing.assert_allclose(float(got), losses.mean(), rtol=tol)  # SUM_BY_NONZERO, weights 1
    value, grad = spec.value_and_grad(y, p, **params)
    assert grad.dtype == dtype and grad.shape == p.shape and np.isfinite(grad).all()


def test_extra_losses_are_registered_with_metadata_and_aliases():
    expected = {
        "log_cosh": (("logcosh",), ("labels", "predictions"), None, None),
        "poisson": (("poisson_loss",), ("labels", "predictions"), (0.0, math.inf), (0.0, math.inf)),
        "kl_divergence": (("kld", "kl_div", "kullback_leibler_divergence"),
                          ("labels", "predictions"), (0.0, 1.0), (0.0, 1.0)),
        "focal": (("focal_loss", "sigmoid_focal", "sigmoid_focal_loss"), ("labels", "logits"),
                  (0.0, 1.0), None),
        "smooth_l1": (("smoothl1", "smooth_l1_loss"), ("labels", "predictions"), None, None),
        "squared_hinge": (("squared_hinge_loss",), ("labels", "logits"), (0.0, 1.0), None),
        "binary_cross_entropy": (("bce", "binary_crossentropy"), ("labels", "predictions"),
                                 (0.0, 1.0), (0.0, 1.0)),
    }
    for name, (aliases, inputs, label_range, prediction_range) in expected.items():
        spec = registry.get(name)
        assert spec.name == name and spec.kind == "elementwise" and spec.grad is not None
        assert spec.aliases == aliases and spec.inputs == inputs
        assert spec.label_range == label_range and spec.prediction_range == prediction_range
        assert spec.reduction is R.SUM_BY_NONZERO_WEIGHTS
        assert spec.doc.startswith("``")  # the formula first (README table, `describe`)
        for alias in aliases:
            assert registry.get(alias) is spec
    params = {p.name: (p.default, p.low, p.high) for n in ("poisson", "focal", "smooth_l1")
              for p in registry.get(n).params}
    assert params == {"epsilon": (1e-7, 0.0, None), "gamma": (2.0, 0.0, None),
                      "alpha": (0.25, None, 1.0), "beta": (1.0, 0.0, None)}
    # TF's losses come first, untouched
    names = [s.name for s in lossforge.builtins.BUILTINS]
    assert names.index("cosine_distance") < names.index("log_cosh")


@pytest.mark.parametrize("name, params", [
    ("focal", {"gamma": -0.5}), ("focal", {"gamma": math.nan}), ("focal", {"alpha": 1.5}),
    ("focal", {"alpha": math.nan}), ("smooth_l1", {"beta": -1.0}), ("poisson", {"epsilon": -1e-3}),
])
def test_parameter_ranges_are_enforced(name, params):
    spec = registry.get(name)
    y, p, _ = spec.example_inputs(np.random.default_rng(0))
    with pytest.raises(InvalidArgumentError, match=f"`{next(iter(params))}`"):
        spec(y, p, **params)


def test_focal_negative_alpha_disables_alpha_weighting():
    rng = np.random.default_rng(3)
    z, x = _binary_logits(rng, (6, 2))
    spec = registry.get("focal")
    a = spec(z, x, reduction=R.NONE, alpha=-1.0)
    b = spec(z, x, reduction=R.NONE, alpha=-0.01)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, focal_ref(z, x, 2.0, -1.0), rtol=1e-13)
    # alpha = 0.5 is half of it
    np.testing.assert_allclose(spec(z, x, reduction=R.NONE, alpha=0.5), 0.5 * a, rtol=1e-13)


def test_hand_computed_values():
    """Values worked out by hand from the papers' / docs' definitions."""
    get = registry.get
    none = {"reduction": R.NONE}
    # focal at x = 0, z = 1: p_t = 1/2, CE = log 2 -> 0.25 * 0.5**2 * log 2
    assert get("focal")([1.0], [0.0], **none)[0] == pytest.approx(0.25 * 0.25 * math.log(2),
                                                                  rel=1e-15)
    # smooth_l1 (beta = 1): d = 0.5 -> 0.125; d = 3 -> 2.5
    np.testing.assert_allclose(get("smooth_l1")([0.0, 0.0], [0.5, -3.0], **none), [0.125, 2.5])
    # log_cosh(1) = log(cosh 1)
    assert get("log_cosh")([0.0], [1.0], **none)[0] == pytest.approx(math.log(math.cosh(1.0)),
                                                                     rel=1e-15)
    # poisson: p - y log(p + eps)
    assert get("poisson")([3.0], [2.0], **none)[0] == pytest.approx(
        2.0 - 3.0 * math.log(2.0 + 1e-7))
    # kl: 0.5 log(0.5 / 0.25)
    assert get("kl_divergence")([0.5], [0.25], **none)[0] == pytest.approx(0.5 * math.log(2.0))
    # squared hinge: label 0 -> -1: (1 + 0.5)^2; label 1 at margin 2 -> 0
    np.testing.assert_array_equal(get("squared_hinge")([0.0, 1.0], [0.5, 2.0], **none), [2.25, 0.0])
    # bce: -log(0.8)
    assert get("bce")([1.0], [0.8], **none)[0] == pytest.approx(-math.log(0.8), rel=1e-15)


# --- the extra losses: extreme inputs ------------------------------------------------------------

def test_log_cosh_is_stable_for_large_and_tiny_differences():
    spec = registry.get("log_cosh")
    d = np.array([1e-300, 1e-8, 1e-3, 0.5, 1.0, 20.0, 1e4, 1e300, -1e300, np.inf])
    value = spec(np.zeros_like(d), d, reduction=R.NONE)
    _, grad = spec.value_and_grad(np.zeros_like(d), d, reduction=R.SUM)
    np.testing.assert_allclose(value[:-1], log_cosh_ref(0 * d[:-1], d[:-1]), rtol=1e-14, atol=0)
    assert value[1] == pytest.approx(5e-17, rel=1e-12)  # full relative precision near 0
    assert value[6] == 1e4 - math.log(2.0) and value[7] == 1e300 == value[8]
    assert value[-1] == np.inf
    np.testing.assert_allclose(grad, np.tanh(d), rtol=1e-15)
    # float32 predictions never overflow (cosh(100) does in float32)
    got = spec(np.float32([0.0]), np.float32([100.0]), reduction=R.NONE)
    assert got.dtype == np.float32 and got[0] == np.float32(100.0 - math.log(2.0))


def test_poisson_zero_counts_and_zero_rates():
    spec = registry.get("poisson")
    y = np.array([0.0, 0.0, 2.0, 2.0])
    p = np.array([0.0, 1.5, 0.0, 1.5])
    value = spec(y, p, reduction=R.NONE, epsilon=0.0)  # y = 0 gives p exactly: 0 log 0 = 0
    np.testing.assert_array_equal(value[:2], [0.0, 1.5])
    assert value[2] == np.inf and value[3] == pytest.approx(1.5 - 2 * math.log(1.5))
    _, grad = spec.value_and_grad(y, p, reduction=R.SUM, epsilon=0.0)  # no ZeroDivisionError
    np.testing.assert_array_equal(grad[:3], [1.0, 1.0, -np.inf])
    # with the default epsilon everything is finite at p = 0
    value, grad = spec.value_and_grad(y, p, reduction=R.NONE)
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    assert np.isnan(spec([1.0], [-1.0], reduction=R.NONE)).all()  # a negative rate


def test_kl_divergence_zero_probabilities():
    spec = registry.get("kl_divergence")
    y = np.array([0.0, 0.0, 0.5, 0.5])
    p = np.array([0.0, 0.3, 0.0, 0.5])
    value = spec(y, p, reduction=R.NONE)
    np.testing.assert_array_equal(value, [0.0, 0.0, np.inf, 0.0])
    _, grad = spec.value_and_grad(y, p, reduction=R.SUM)  # no ZeroDivisionError at p = 0
    np.testing.assert_array_equal(grad, [0.0, 0.0, -np.inf, -1.0])
    assert np.isnan(spec([-0.1, 0.5], [0.5, -0.1], reduction=R.NONE)).all()
    _, grad = spec.value_and_grad([-0.1, 0.5], [0.5, -0.1])
    assert np.isnan(grad).all()


@pytest.mark.parametrize("alpha", [0.25, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_focal_at_extreme_logits_and_gamma_zero(gamma, alpha):
    spec = registry.get("focal")
    x = np.array([1e4, 1e4, -1e4, -1e4, 1e4, -1e4, 40.0, -40.0, 0.0])
    z = np.array([1.0, 0.0, 1.0, 0.0, 0.3, 0.7, 1.0, 1.0, 1.0])
    kw = {"gamma": gamma, "alpha": alpha}
    value = spec(z, x, reduction=R.NONE, **kw)
    assert np.isfinite(value).all()
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(value, focal_ref(z, x, gamma, alpha), rtol=1e-12, atol=1e-300)
    a_pos, a_neg = (alpha, 1 - alpha) if alpha >= 0 else (1.0, 1.0)
    assert value[0] == 0.0  # CE(1e4, 1) is exactly 0
    assert value[1] == a_neg * 1e4 and value[2] == a_pos * 1e4 and value[3] == 0.0
    value_g, grad = spec.value_and_grad(z, x, reduction=R.SUM, **kw)
    assert np.isfinite(grad).all() and np.isfinite(value_g)
    assert grad[1] == pytest.approx(a_neg) and grad[2] == pytest.approx(-a_pos)
    assert grad[0] == 0.0 and grad[3] == 0.0


def test_focal_with_gamma_zero_is_alpha_weighted_sigmoid_cross_entropy():
    rng = np.random.default_rng(4)
    z, x = _soft_logits(rng, (5, 3))
    x[0] = [1e4, -1e4, 0.0]
    alpha_t = 0.25 * z + 0.75 * (1 - z)
    focal = registry.get("focal")
    sce = registry.get("sigmoid_cross_entropy")
    np.testing.assert_allclose(focal(z, x, reduction=R.NONE, gamma=0.0),
                               alpha_t * sce(z, x, reduction=R.NONE), rtol=1e-14)
    _, grad = focal.value_and_grad(z, x, reduction=R.SUM, gamma=0.0)
    np.testing.assert_allclose(grad, alpha_t * (sigmoid(x) - z), rtol=1e-12, atol=1e-15)


def test_focal_gradient_is_finite_where_gamma_below_one_meets_saturation():
    """q**(gamma - 1) is infinite at q = 0: the gradient uses its bounded form."""
    spec = registry.get("focal")
    x = np.array([800.0, -800.0, 1e4, -1e4, 745.0])
    z = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    for gamma in (0.1, 0.5, 0.999):
        value, grad = spec.value_and_grad(z, x, reduction=R.SUM, gamma=gamma)
        assert value == 0.0 and np.array_equal(grad, np.zeros(5)), gamma


def test_bce_at_probabilities_exactly_zero_and_one():
    spec = registry.get("binary_cross_entropy")
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.3, 0.3])
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    value = spec(y, p, reduction=R.NONE)
    np.testing.assert_allclose(value, [100.0, 100.0, 0.0, 0.0, 30.0, 70.0], rtol=1e-15)
    np.testing.assert_allclose(value, bce_ref(y, p), rtol=1e-15)
    _, grad = spec.value_and_grad(y, p, reduction=R.SUM)
    # the exact derivative of the clamped value: where a log is clamped its term is flat, the
    # other term is -y / p or (1 - y) / (1 - p) at p = 1 or 0
    np.testing.assert_allclose(grad, [0.0, 0.0, 1.0, -1.0, 0.7, -0.3], rtol=1e-15)
    # next to the clamp the derivative is the unclamped one, large but finite
    _, grad = spec.value_and_grad([1.0, 0.0], [1e-40, 1 - 1e-15], reduction=R.SUM)
    np.testing.assert_allclose(grad, [-1e40, 1 / (1 - (1 - 1e-15))], rtol=1e-12)
    # float32: still finite
    v32, g32 = spec.value_and_grad(y.astype(np.float32), p.astype(np.float32), reduction=R.NONE)
    assert v32.dtype == np.float32 and np.isfinite(v32).all() and np.isfinite(g32).all()
    # outside [0, 1] is NaN (PyTorch raises), value and gradient
    bad, gbad = spec.value_and_grad([1.0, 0.0], [-0.1, 1.1], reduction=R.NONE)
    assert np.isnan(bad).all() and np.isnan(gbad).all()


def test_smooth_l1_with_beta_zero_is_absolute_difference():
    rng = np.random.default_rng(5)
    y, p = _normal_pair(rng, (4, 3))
    p[0, 0] = y[0, 0]  # d = 0: gradient 0 (sign)
    sl1, mae = registry.get("smooth_l1"), registry.get("absolute_difference")
    for r in REDUCTIONS:
        np.testing.assert_array_equal(sl1(y, p, reduction=r, beta=0.0), mae(y, p, reduction=r))
        np.testing.assert_array_equal(sl1.value_and_grad(y, p, reduction=r, beta=0.0)[1],
                                      mae.value_and_grad(y, p, reduction=r)[1])


@pytest.mark.parametrize("case", EXTRA, ids=EXTRA_IDS)
def test_nan_propagates_to_its_element_only(case):
    _, name, _, make, params = case
    spec = registry.get(name)
    y, p = make(np.random.default_rng(6), (3, 2))
    for target in ("labels", "predictions"):
        yy, pp = y.copy(), p.copy()
        (yy if target == "labels" else pp)[1, 1] = np.nan
        value, grad = spec.value_and_grad(yy, pp, reduction=R.NONE, **params)
        values = spec(yy, pp, reduction=R.NONE, **params)
        assert np.isnan(values[1, 1]) and np.isnan(grad[1, 1]), target
        mask = np.ones_like(values, dtype=bool)
        mask[1, 1] = False
        assert np.isfinite(values[mask]).all() and np.isfinite(grad[mask]).all(), target


# --- gradients against central finite differences ---------------------------------------------

def _finite_differences(f, p, h=1e-6):
    grad = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        up, down = p.copy(), p.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2 * h)
    return grad


def _check_gradient(spec, y, p, weights, reduction, h=1e-6, **kw):
    def reduced(pp):
        value = spec(y, pp, weights=weights, reduction=reduction, **kw)
        return float(np.sum(value, dtype=np.float64))  # NONE: the gradient is of sum(L * W)
    value, grad = spec.value_and_grad(y, p, weights=weights, reduction=reduction, **kw)
    np.testing.assert_allclose(value, spec(y, p, weights=weights, reduction=reduction, **kw),
                               rtol=1e-13)
    assert grad.shape == np.shape(p) and grad.dtype == np.float64
    np.testing.assert_allclose(grad, _finite_differences(reduced, np.array(p, dtype=float), h),
                               rtol=1e-5, atol=1e-7)


WEIGHT_KINDS = ["scalar", "per_sample", "per_element"]


@pytest.mark.parametrize("weights", WEIGHT_KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
@pytest.mark.parametrize("case", EXTRA, ids=EXTRA_IDS)
def test_extra_loss_gradient_matches_finite_differences(case, reduction, weights):
    _, name, _, make, params = case
    rng = np.random.default_rng(7)
    y, p = make(rng, (3, 4))
    if name == "kl_divergence":
        p = np.clip(p, 0.05, None)  # keep h off p = 0
    _check_gradient(registry.get(name), y, p, gradient_weights(weights, y.shape, rng), reduction,
                    **params)


# --- the cross-entropies' options: references -------------------------------------------------

def torch_cross_entropy(x, t, weight=None, ignore_index=-100, label_smoothing=0.0,
                        reduction="mean"):
    """PyTorch's F.cross_entropy for class-index targets (LossNLL.cpp), in float64.

    'none': ``(1 - ls) w[t] nll_t + (ls / K) sum_k w_k nll_k`` (0 where ignored);
    'mean': the sum divided by ``sum w[t]`` over the samples not ignored (NaN if none).
    """
    x, t = f64(x), np.asarray(t)
    classes = x.shape[-1]
    w = np.ones(classes) if weight is None else f64(weight)
    logp = log_softmax(x)
    keep = t != ignore_index
    tt = np.where(keep, t, 0)
    nll = -np.take_along_axis(logp, tt[..., None], axis=-1)[..., 0]
    w_t = np.where(keep, w[tt], 0.0)
    smooth = np.where(keep, -(logp * w).sum(axis=-1), 0.0)
    per_sample = (1 - label_smoothing) * w_t * nll + label_smoothing / classes * smooth
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_sample.sum() / w_t.sum()


def sparse_reference(x, t, weights, reduction, class_weights=None, ignore_index=None,
                     label_smoothing=0.0):
    """lossforge's documented semantics: PyTorch's per-sample loss times ``weights``, with the
    effective weights ``weights * class_weights[t]`` (0 where ignored) as denominators."""
    t = np.asarray(t)
    per_sample = torch_cross_entropy(x, t, class_weights,
                                     -100 if ignore_index is None else ignore_index,
                                     label_smoothing, "none")
    keep = t != (-100 if ignore_index is None else ignore_index)
    cw = np.ones(x.shape[-1]) if class_weights is None else f64(class_weights)
    w = np.broadcast_to(f64(weights), t.shape)
    effective = np.where(keep, w * cw[np.where(keep, t, 0)], 0.0)
    # per_sample already holds w[t]: divide it out where it is non-zero (never 0 here)
    losses = np.where(effective != 0, per_sample * w / np.where(effective != 0, effective, 1), 0.0)
    return reduce(losses, effective, reduction)


def softmax_reference(z, x, class_weights=None, label_smoothing=0.0):
    """``-sum_k w_k z'_k log softmax(x)_k``, ``z'`` the TF-smoothed labels (smoothing first)."""
    z = f64(z)
    if label_smoothing > 0:
        z = z * (1 - label_smoothing) + label_smoothing / z.shape[-1]
    w = np.ones(z.shape[-1]) if class_weights is None else f64(class_weights)
    return -(w * z * log_softmax(x)).sum(axis=-1)


def sigmoid_reference(z, x, pos_weight=1.0, label_smoothing=0.0):
    """``-[pos_weight z' log sigmoid(x) + (1 - z') log(1 - sigmoid(x))]``, ``z'`` smoothed first."""
    z = f64(z)
    if label_smoothing > 0:
        z = z * (1 - label_smoothing) + 0.5 * label_smoothing
    log_sig, log_one_minus = -softplus(-f64(x)), -softplus(f64(x))
    return -(f64(pos_weight) * z * log_sig + (1 - z) * log_one_minus)


def _sparse_inputs(rng, shape=(6, 5), ignored=(1, 4), ignore_index=-100):
    t = rng.integers(0, shape[-1], size=shape[:-1])
    t.flat[list(ignored)] = ignore_index
    return t, 3 * rng.normal(size=shape)


CLASS_WEIGHTS = np.array([0.5, 2.0, 1.0, 3.0, 0.25])
SPARSE_COMBOS = [  # (class_weights, ignore_index, label_smoothing)
    (None, -100, 0.0), (CLASS_WEIGHTS, None, 0.0), (CLASS_WEIGHTS, -100, 0.0),
    (None, None, 0.2), (None, -100, 0.1), (CLASS_WEIGHTS, None, 0.3),
    (CLASS_WEIGHTS, -100, 0.1), (CLASS_WEIGHTS, 2, 0.1), (CLASS_WEIGHTS, -100, 1.0),
]
SPARSE_IDS = [f"cw={cw is not None}-ignore={ii}-ls={ls}" for cw, ii, ls in SPARSE_COMBOS]


def _options(cw, ii, ls):
    kw = {}
    if cw is not None:
        kw["class_weights"] = cw
    if ii is not None:
        kw["ignore_index"] = ii
    if ls:
        kw["label_smoothing"] = ls
    return kw


# --- sparse: class_weights, ignore_index, label_smoothing -------------------------------------

@pytest.mark.parametrize("combo", SPARSE_COMBOS, ids=SPARSE_IDS)
def test_sparse_options_match_pytorch_none_sum_mean(combo):
    cw, ii, ls = combo
    rng = np.random.default_rng(8)
    t, x = _sparse_inputs(rng, ignore_index=-100 if ii is None else ii)
    if ii is None:
        t = np.where(t < 0, 0, t)
    spec = registry.get("sparse_softmax_cross_entropy")
    kw = _options(cw, ii, ls)
    torch_ii = -100 if ii is None else ii
    for ours, theirs in ((R.NONE, "none"), (R.SUM, "sum"), (R.MEAN, "mean")):
        np.testing.assert_allclose(spec(t, x, reduction=ours, **kw),
                                   torch_cross_entropy(x, t, cw, torch_ii, ls, theirs),
                                   rtol=1e-12, atol=1e-14, err_msg=ours.name)
    # the functional API is the same computation
    np.testing.assert_allclose(L.sparse_softmax_cross_entropy(t, x, reduction=R.MEAN, **kw),
                               torch_cross_entropy(x, t, cw, torch_ii, ls, "mean"), rtol=1e-12)


@pytest.mark.parametrize("combo", SPARSE_COMBOS, ids=SPARSE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
def test_sparse_options_with_sample_weights_every_reduction(combo, reduction):
    cw, ii, ls = combo
    rng = np.random.default_rng(9)
    t, x = _sparse_inputs(rng, shape=(3, 4, 5), ignore_index=-100 if ii is None else ii)
    if ii is None:
        t = np.where(t < 0, 0, t)
    spec = registry.get("sparse_softmax_cross_entropy")
    for kind, weights in weight_kinds(t.shape, rng, np.float64).items():
        got = spec(t, x, weights=weights, reduction=reduction, **_options(cw, ii, ls))
        want = sparse_reference(x, t, weights, reduction, cw, ii, ls)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=kind)


@pytest.mark.parametrize("combo", SPARSE_COMBOS, ids=SPARSE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
def test_sparse_options_gradient_matches_finite_differences(combo, reduction):
    cw, ii, ls = combo
    rng = np.random.default_rng(10)
    t, x = _sparse_inputs(rng, shape=(5, 4), ignored=(2,),
                          ignore_index=-100 if ii is None else ii)
    if ii is None:
        t = np.where(t < 0, 0, t)
    cw = None if cw is None else cw[:4]
    spec = registry.get("sparse_softmax_cross_entropy")
    for kind in WEIGHT_KINDS:
        w = gradient_weights(kind, t.shape, rng)
        _check_gradient(spec, t, x, w, reduction, **_options(cw, ii, ls))


def test_sparse_all_ignored_batch_is_zero_not_nan():
    rng = np.random.default_rng(11)
    x = 3 * rng.normal(size=(4, 3))
    x[1] = [np.nan, np.inf, -np.inf]  # an ignored row is never read
    t = np.full(4, -100)
    spec = registry.get("sparse_softmax_cross_entropy")
    for kw in ({"ignore_index": -100}, {"ignore_index": -100, "class_weights": [1.0, 2.0, 3.0]},
               {"ignore_index": -100, "class_weights": [1.0, 2.0, 3.0], "label_smoothing": 0.2}):
        for r in REDUCTIONS:
            value, grad = spec.value_and_grad(t, x, weights=[1.0, 2.0, np.nan, 3.0],
                                              reduction=r, **kw)
            assert np.array_equal(value, np.zeros(4) if r is R.NONE else 0.0), (kw, r)
            assert np.array_equal(grad, np.zeros_like(x)), (kw, r)
    # PyTorch's mean is 0/0 = NaN here (pytorch#70348); lossforge's is div_no_nan's 0
    assert np.isnan(torch_cross_entropy(x[[0, 2, 3]], t[:3], reduction="mean"))


def test_sparse_ignored_rows_never_read_and_partial_batches():
    rng = np.random.default_rng(12)
    t, x = _sparse_inputs(rng, shape=(5, 3), ignored=(0, 3))
    poisoned = x.copy()
    poisoned[[0, 3]] = [[np.nan, np.inf, -np.inf], [np.inf, np.inf, np.inf]]
    spec = registry.get("sparse_softmax_cross_entropy")
    for kw in ({}, {"class_weights": [2.0, 1.0, 0.5]}, {"label_smoothing": 0.3}):
        for r in REDUCTIONS:
            a, ga = spec.value_and_grad(t, x, reduction=r, ignore_index=-100, **kw)
            b, gb = spec.value_and_grad(t, poisoned, reduction=r, ignore_index=-100, **kw)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ga, gb)
            assert np.array_equal(gb[[0, 3]], np.zeros((2, 3)))
        # ignoring samples equals dropping them under MEAN / SUM / SUM_BY_NONZERO_WEIGHTS
        kept = np.array([1, 2, 4])
        for r in (R.MEAN, R.SUM, R.SUM_BY_NONZERO_WEIGHTS):
            np.testing.assert_allclose(spec(t, x, reduction=r, ignore_index=-100, **kw),
                                       spec(t[kept], x[kept], reduction=r, **kw), rtol=1e-14)


def test_sparse_ignore_index_inside_the_class_range():
    rng = np.random.default_rng(13)
    t, x = _sparse_inputs(rng, shape=(8, 4), ignored=())
    t[:3] = 0
    spec = registry.get("sparse_softmax_cross_entropy")
    kept = t != 0
    np.testing.assert_allclose(spec(t, x, ignore_index=0, reduction=R.MEAN),
                               spec(t[kept], x[kept], reduction=R.MEAN), rtol=1e-14)
    # with class weights: class 0's weight is irrelevant once it is ignored
    a = spec(t, x, ignore_index=0, class_weights=[5.0, 1.0, 2.0, 3.0], reduction=R.MEAN)
    b = spec(t, x, ignore_index=0, class_weights=[0.0, 1.0, 2.0, 3.0], reduction=R.MEAN)
    assert a == b


def test_sparse_label_range_is_still_checked_for_samples_not_ignored():
    spec = registry.get("sparse_softmax_cross_entropy")
    x = np.zeros((3, 4))
    spec([5, 1, 2], x, ignore_index=5)  # an ignored label may lie outside [0, K)
    spec([-100, 1, 2], x, ignore_index=-100)
    with pytest.raises(InvalidArgumentError, match=r"label value of -100 at index \(0,\)"):
        spec([-100, 5, 1], x, ignore_index=5)
    with pytest.raises(InvalidArgumentError, match=r"label value of 4 at index \(2,\)"):
        spec([-100, 1, 4], x, ignore_index=-100)
    with pytest.raises(InvalidArgumentError, match="outside the valid range"):
        spec([-100, 1, 2], x)  # without ignore_index -100 is a bad label, as in TF


def test_sparse_label_smoothing_alone_is_softmax_cross_entropy_on_one_hot():
    """PyTorch's smoothing of class indices = TF's smoothing of the one-hot labels."""
    rng = np.random.default_rng(14)
    t, x = _sparse_inputs(rng, shape=(6, 5), ignored=())
    onehot = np.eye(5)[t]
    w = rng.uniform(0.5, 2, size=6)
    sparse = registry.get("sparse_softmax_cross_entropy")
    dense = registry.get("softmax_cross_entropy")
    for r in REDUCTIONS:
        np.testing.assert_allclose(sparse(t, x, w, r, label_smoothing=0.15),
                                   dense(onehot, x, w, r, label_smoothing=0.15), rtol=1e-13)
        np.testing.assert_allclose(sparse.value_and_grad(t, x, w, r, label_smoothing=0.15)[1],
                                   dense.value_and_grad(onehot, x, w, r, label_smoothing=0.15)[1],
                                   rtol=1e-12, atol=1e-15)


def test_sparse_and_dense_class_weights_share_numerators_not_denominators():
    """Sparse: MEAN divides by sum(w[t] W) (PyTorch, class indices); dense: by sum(W) (PyTorch,
    probability targets). NONE and SUM agree, smoothing included."""
    rng = np.random.default_rng(15)
    t, x = _sparse_inputs(rng, shape=(6, 5), ignored=())
    onehot = np.eye(5)[t]
    sparse = registry.get("sparse_softmax_cross_entropy")
    dense = registry.get("softmax_cross_entropy")
    for ls in (0.0, 0.2):
        kw = {"class_weights": CLASS_WEIGHTS, "label_smoothing": ls}
        for r in (R.NONE, R.SUM):
            np.testing.assert_allclose(sparse(t, x, reduction=r, **kw),
                                       dense(onehot, x, reduction=r, **kw), rtol=1e-13)
        total = dense(onehot, x, reduction=R.SUM, **kw)
        assert sparse(t, x, reduction=R.MEAN, **kw) == pytest.approx(total / CLASS_WEIGHTS[t].sum(),
                                                                     rel=1e-13)
        assert dense(onehot, x, reduction=R.MEAN, **kw) == pytest.approx(total / 6, rel=1e-13)


def test_sparse_zero_class_weight_excludes_the_sample_even_with_smoothing():
    """A documented difference: PyTorch still adds such a sample's smoothing term to the sum
    (while leaving it out of the denominator); lossforge leaves the sample out entirely."""
    rng = np.random.default_rng(16)
    t, x = _sparse_inputs(rng, shape=(6, 3), ignored=())
    t[:2] = 0
    cw = np.array([0.0, 1.0, 2.0])
    spec = registry.get("sparse_softmax_cross_entropy")
    kept = t != 0
    for ls in (0.0, 0.3):
        none, grad = spec.value_and_grad(t, x, reduction=R.NONE, class_weights=cw,
                                         label_smoothing=ls)
        assert np.array_equal(none[:2], [0.0, 0.0]) and np.array_equal(grad[:2], np.zeros((2, 3)))
        for r in (R.MEAN, R.SUM, R.SUM_BY_NONZERO_WEIGHTS):
            np.testing.assert_allclose(
                spec(t, x, reduction=r, class_weights=cw, label_smoothing=ls),
                spec(t[kept], x[kept], reduction=r, class_weights=cw, label_smoothing=ls),
                rtol=1e-14)
    # without smoothing this is exactly PyTorch (w[t] = 0 in both sum and denominator)
    assert spec(t, x, reduction=R.MEAN, class_weights=cw) == pytest.approx(
        torch_cross_entropy(x, t, cw), rel=1e-13)
    # with smoothing PyTorch's numerator differs by the excluded samples' smoothing terms
    ours = spec(t, x, reduction=R.SUM, class_weights=cw, label_smoothing=0.3)
    extra = 0.3 / 3 * -(log_softmax(x[t == 0]) * cw).sum()
    assert torch_cross_entropy(x, t, cw, label_smoothing=0.3, reduction="sum") == pytest.approx(
        ours + extra, rel=1e-13)


def test_sparse_options_float32_and_trailing_label_dim():
    rng = np.random.default_rng(17)
    t, x = _sparse_inputs(rng, shape=(6, 5))
    kw = {"class_weights": CLASS_WEIGHTS, "ignore_index": -100, "label_smoothing": 0.1}
    spec = registry.get("sparse_softmax_cross_entropy")
    got = spec(t[:, None], x.astype(np.float32), weights=np.ones((6, 1)), reduction=R.MEAN, **kw)
    assert got.dtype == np.float32
    want = torch_cross_entropy(x.astype(np.float32), t, CLASS_WEIGHTS, -100, 0.1)
    assert float(got) == pytest.approx(want, rel=2e-6)
    _, grad = spec.value_and_grad(t.astype(np.int32), x.astype(np.float32), **kw)
    assert grad.dtype == np.float32 and np.isfinite(grad).all()
    # an empty batch
    assert spec(np.zeros(0, int), np.zeros((0, 5)), reduction=R.MEAN, **kw) == 0.0


def test_sparse_options_on_a_sequence_batch():
    rng = np.random.default_rng(18)
    t, x = _sparse_inputs(rng, shape=(2, 7, 5), ignored=(0, 6, 9, 13))
    kw = {"class_weights": CLASS_WEIGHTS, "ignore_index": -100, "label_smoothing": 0.1}
    np.testing.assert_allclose(
        registry.get("sparse_softmax_cross_entropy")(t, x, reduction=R.MEAN, **kw),
        torch_cross_entropy(x.reshape(14, 5), t.reshape(14), CLASS_WEIGHTS, -100, 0.1), rtol=1e-13)


# --- softmax: class_weights with label_smoothing -------------------------------------------------

def _soft_labels(rng, shape=(6, 5)):
    z = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    z[0] = np.eye(shape[-1])[2]
    return z, 3 * rng.normal(size=shape)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
def test_softmax_class_weights_match_reference(reduction, label_smoothing):
    rng = np.random.default_rng(19)
    z, x = _soft_labels(rng)
    losses = softmax_reference(z, x, CLASS_WEIGHTS, label_smoothing)
    spec = registry.get("softmax_cross_entropy")
    for kind, weights in weight_kinds(losses.shape, rng, np.float64).items():
        got = spec(z, x, weights=weights, reduction=reduction, label_smoothing=label_smoothing,
                   class_weights=CLASS_WEIGHTS)
        np.testing.assert_allclose(got, reduce(losses, weights, reduction), rtol=1e-12,
                                   atol=1e-14, err_msg=kind)
        np.testing.assert_allclose(
            L.softmax_cross_entropy(z, x, weights, label_smoothing, reduction=reduction,
                                    class_weights=CLASS_WEIGHTS), got, rtol=1e-15)


def test_softmax_smoothing_comes_before_class_weights():
    rng = np.random.default_rng(20)
    z, x = _soft_labels(rng)
    ls, K = 0.3, 5
    spec = registry.get("softmax_cross_entropy")
    got = spec(z, x, reduction=R.NONE, label_smoothing=ls, class_weights=CLASS_WEIGHTS)
    # smoothing first: coefficients w_k (z_k (1 - ls) + ls / K)
    right = -(CLASS_WEIGHTS * (z * (1 - ls) + ls / K) * log_softmax(x)).sum(-1)
    # the other order would be (w_k z_k)(1 - ls) + ls / K
    wrong = -((CLASS_WEIGHTS * z) * (1 - ls) + ls / K) * log_softmax(x)
    np.testing.assert_allclose(got, right, rtol=1e-13)
    assert not np.allclose(got, wrong.sum(-1), rtol=1e-3)
    # one-hot row with the smoothed mass: (1 - ls) w_t nll_t + (ls / K) sum_k w_k nll_k
    nll = -log_softmax(x[0])
    assert got[0] == pytest.approx((1 - ls) * CLASS_WEIGHTS[2] * nll[2]
                                   + ls / K * (CLASS_WEIGHTS * nll).sum(), rel=1e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
def test_softmax_class_weights_gradient_matches_finite_differences(reduction):
    rng = np.random.default_rng(21)
    z, x = _soft_labels(rng, (4, 5))
    spec = registry.get("softmax_cross_entropy")
    for ls in (0.0, 0.2):
        for kind in WEIGHT_KINDS:
            _check_gradient(spec, z, x, gradient_weights(kind, (4,), rng), reduction,
                            class_weights=CLASS_WEIGHTS, label_smoothing=ls)


def test_softmax_unit_class_weights_equal_tf_and_zero_terms_are_exactly_zero():
    rng = np.random.default_rng(22)
    z, x = _soft_labels(rng)
    spec = registry.get("softmax_cross_entropy")
    for ls in (0.0, 0.1):
        for r in REDUCTIONS:
            np.testing.assert_allclose(
                spec(z, x, reduction=r, label_smoothing=ls, class_weights=np.ones(5)),
                spec(z, x, reduction=r, label_smoothing=ls), rtol=1e-13)
    # a -inf logit where the coefficient w_k z'_k is 0 adds 0, not 0 * inf = NaN
    onehot = np.eye(3)[[0, 1]]
    x = np.array([[2.0, -np.inf, 0.0], [1.0, 3.0, -np.inf]])
    value, grad = spec.value_and_grad(onehot, x, reduction=R.NONE, class_weights=[1.0, 2.0, 0.5])
    finite = np.where(np.isinf(x), -1e300, x)  # exp(-1e300) = exp(-inf) = 0
    np.testing.assert_allclose(value, [1.0, 2.0] * -log_softmax(finite)[[0, 1], [0, 1]],
                               rtol=1e-13)
    assert np.isfinite(grad).all()
    # a zero class weight zeroes a class even under smoothing
    value = spec(onehot, x, reduction=R.NONE, class_weights=[1.0, 0.0, 0.0], label_smoothing=0.1)
    assert np.isfinite(value).all()


def test_softmax_class_weights_float32_and_3d():
    rng = np.random.default_rng(23)
    z, x = _soft_labels(rng, (2, 3, 5))
    got = registry.get("softmax_cross_entropy")(z.astype(np.float32), x.astype(np.float32),
                                                 class_weights=CLASS_WEIGHTS, label_smoothing=0.1,
                                                 reduction=R.NONE)
    assert got.dtype == np.float32 and got.shape == (2, 3)
    want = softmax_reference(z.astype(np.float32), x.astype(np.float32),
                             CLASS_WEIGHTS.astype(np.float32), 0.1)
    np.testing.assert_allclose(got, want, rtol=2e-6)


# --- sigmoid: pos_weight ---------------------------------------------------------------------

POS_WEIGHTS = {"scalar": 3.0, "length_1": [0.5], "per_class": [0.5, 1.0, 2.0, 4.0],
               "per_class_2d": [[0.5, 1.0, 2.0, 4.0]], "zero": [0.0, 1.0, 0.0, 2.0]}


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("pos_weight", list(POS_WEIGHTS), ids=list(POS_WEIGHTS))
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
def test_sigmoid_pos_weight_matches_reference(reduction, pos_weight, label_smoothing):
    rng = np.random.default_rng(24)
    z, x = _soft_logits(rng, (5, 4))
    z[0] = [0.0, 1.0, 1.0, 0.0]
    pw = POS_WEIGHTS[pos_weight]
    losses = sigmoid_reference(z, x, np.reshape(pw, (-1,)) if np.ndim(pw) else pw, label_smoothing)
    spec = registry.get("sigmoid_cross_entropy")
    for kind, weights in weight_kinds(losses.shape, rng, np.float64).items():
        got = spec(z, x, weights=weights, reduction=reduction, label_smoothing=label_smoothing,
                   pos_weight=pw)
        np.testing.assert_allclose(got, reduce(losses, weights, reduction), rtol=1e-12,
                                   atol=1e-14, err_msg=kind)
    np.testing.assert_allclose(
        L.sigmoid_cross_entropy(z, x, 1.0, label_smoothing, reduction=reduction, pos_weight=pw),
        reduce(losses, 1.0, reduction), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
def test_sigmoid_pos_weight_gradient_matches_finite_differences(reduction):
    rng = np.random.default_rng(25)
    z, x = _soft_logits(rng, (3, 4))
    spec = registry.get("sigmoid_cross_entropy")
    for pw in (2.5, [0.5, 1.0, 2.0, 4.0]):
        for ls in (0.0, 0.2):
            for kind in WEIGHT_KINDS:
                _check_gradient(spec, z, x, gradient_weights(kind, z.shape, rng), reduction,
                                pos_weight=pw, label_smoothing=ls)


def test_sigmoid_pos_weight_per_class_broadcasts_over_the_last_axis():
    rng = np.random.default_rng(26)
    z, x = _binary_logits(rng, (2, 3, 4))
    pw = np.array([0.5, 1.0, 2.0, 4.0])
    spec = registry.get("sigmoid_cross_entropy")
    want = sigmoid_reference(z, x, pw)
    for shape in ((4,), (1, 4), (1, 1, 4)):
        np.testing.assert_allclose(spec(z, x, reduction=R.NONE, pos_weight=pw.reshape(shape)),
                                   want, rtol=1e-13)
    # element [..., c] uses pos_weight[c]: positives scale by it, negatives do not
    positives = spec(np.ones((1, 4)), np.zeros((1, 4)), reduction=R.NONE, pos_weight=pw)
    np.testing.assert_allclose(positives, pw[None] * math.log(2.0), rtol=1e-15)
    negatives = spec(np.zeros((1, 4)), np.zeros((1, 4)), reduction=R.NONE, pos_weight=pw)
    np.testing.assert_allclose(negatives, np.full((1, 4), math.log(2.0)), rtol=1e-15)
    # a scalar logit takes a scalar or length-1 pos_weight
    assert spec(1.0, 0.0, pos_weight=[2.0]) == pytest.approx(2 * math.log(2.0))


def test_sigmoid_pos_weight_does_not_change_denominators():
    rng = np.random.default_rng(27)
    z, x = _binary_logits(rng, (5, 4))
    w = rng.uniform(0.5, 2.0, size=(5, 1))
    spec = registry.get("sigmoid_cross_entropy")
    total = spec(z, x, w, R.SUM, pos_weight=[0.5, 1.0, 2.0, 4.0])
    assert spec(z, x, w, R.MEAN, pos_weight=[0.5, 1.0, 2.0, 4.0]) == pytest.approx(
        total / (4 * w.sum()))
    assert spec(z, x, w, R.SUM_BY_NONZERO_WEIGHTS, pos_weight=[0.0, 0.0, 0.0, 0.0]) == \
        pytest.approx(spec(z, x, w, R.SUM, pos_weight=[0.0] * 4) / 20)


def test_sigmoid_pos_weight_one_equals_tf_and_extreme_logits_are_finite():
    rng = np.random.default_rng(28)
    z, x = _soft_logits(rng, (4, 3))
    spec = registry.get("sigmoid_cross_entropy")
    for ls in (0.0, 0.1):
        for r in REDUCTIONS:
            np.testing.assert_allclose(spec(z, x, reduction=r, label_smoothing=ls, pos_weight=1.0),
                                       spec(z, x, reduction=r, label_smoothing=ls), rtol=1e-13)
            np.testing.assert_allclose(
                spec.value_and_grad(z, x, reduction=r, label_smoothing=ls, pos_weight=1.0)[1],
                spec.value_and_grad(z, x, reduction=r, label_smoothing=ls)[1],
                rtol=1e-12, atol=1e-16)
    x = np.array([1e4, -1e4, 1e4, -1e4, -40.0, 40.0])
    z = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    value, grad = spec.value_and_grad(z, x, reduction=R.NONE, pos_weight=3.0)
    np.testing.assert_allclose(value, [0.0, 3e4, 1e4, 0.0, math.exp(-40.0), 3 * math.exp(-40.0)],
                               rtol=1e-14)  # full precision for tiny losses too
    np.testing.assert_allclose(grad, [0.0, -3.0, 1.0, 0.0, math.exp(-40.0), -3 * math.exp(-40.0)],
                               rtol=1e-14)
    v32, g32 = spec.value_and_grad(z.astype(np.float32), x.astype(np.float32), pos_weight=3.0)
    assert v32.dtype == np.float32 and np.isfinite(v32) and np.isfinite(g32).all()


def test_sigmoid_pos_weight_large_batch_uses_the_parallel_kernel():
    from lossforge import kernels
    rng = np.random.default_rng(29)
    n = kernels.PARALLEL_THRESHOLD // 8 + 3
    z, x = _binary_logits(rng, (n, 8))
    pw = [0.5, 1.0, 2.0, 4.0, 1.0, 1.0, 3.0, 0.1]
    got = registry.get("sigmoid_cross_entropy")(z, x, reduction=R.MEAN, pos_weight=pw)
    assert got == pytest.approx(sigmoid_reference(z, x, np.array(pw)).mean(), rel=1e-12)
    t = rng.integers(0, 8, size=kernels.PARALLEL_THRESHOLD + 5)
    t[::7] = -1
    logits = rng.normal(size=(t.size, 8))
    got = registry.get("sparse_softmax_cross_entropy")(t, logits, reduction=R.MEAN, ignore_index=-1,
                                                      class_weights=np.arange(1.0, 9.0),
                                                      label_smoothing=0.1)
    assert got == pytest.approx(torch_cross_entropy(logits, t, np.arange(1.0, 9.0), -1, 0.1),
                                rel=1e-12)


# --- the options: routing, validation, documentation -------------------------------------------

def test_options_left_at_none_are_tf_bit_for_bit():
    rng = np.random.default_rng(30)
    t, x = _sparse_inputs(rng, ignored=())
    z, xs = _soft_logits(rng, (5, 3))
    calls = [("sparse_softmax_cross_entropy", t, x,
              {"class_weights": None, "ignore_index": None, "label_smoothing": None}),
             ("softmax_cross_entropy", np.eye(5)[t], x, {"class_weights": None}),
             ("sigmoid_cross_entropy", z, xs, {"pos_weight": None})]
    for name, labels, logits, none_options in calls:
        spec = registry.get(name)
        assert isinstance(spec, OptionsSpec) and spec.extended is EXTENDED[name]
        assert spec.route(none_options) == (spec, {})
        for r in REDUCTIONS:
            np.testing.assert_array_equal(spec(labels, logits, reduction=r, **none_options),
                                          spec(labels, logits, reduction=r))
            np.testing.assert_array_equal(
                spec.value_and_grad(labels, logits, reduction=r, **none_options)[1],
                spec.value_and_grad(labels, logits, reduction=r)[1])
        func = getattr(L, name)
        np.testing.assert_array_equal(func(labels, logits), spec(labels, logits))


def test_options_are_listed_as_parameters_and_unknown_ones_are_named():
    from lossforge.registry import _prepare_arguments, markdown_table
    assert _prepare_arguments(registry.get("sparse_softmax_cross_entropy")) == [
        "class_weights", "ignore_index", "label_smoothing"]
    assert _prepare_arguments(registry.get("softmax_cross_entropy")) == ["class_weights"]
    assert _prepare_arguments(registry.get("sigmoid_cross_entropy")) == ["pos_weight"]
    assert "`pos_weight`" in markdown_table() and "`ignore_index`" in markdown_table()
    with pytest.raises(TypeError, match=r"class_weight'\].*class_weights"):
        registry.get("sparse_softmax_cross_entropy")([0], [[1.0, 2.0]], class_weight=[1.0, 2.0])


def test_bypassing_the_routing_is_a_clear_error():
    spec = registry.get("sparse_softmax_cross_entropy")
    with pytest.raises(InvalidArgumentError, match="extended spec.*route"):
        spec._prepare([0], [[1.0, 2.0]], 1.0, {"ignore_index": -100})
    extended, params = spec.route({"ignore_index": -100, "class_weights": None})
    assert extended is EXTENDED["sparse_softmax_cross_entropy"] and params == {"ignore_index": -100}
    prepared, kernel_params = extended._prepare([0, -100], [[1.0, 2.0], [3.0, 4.0]], 1.0, params)
    assert kernel_params == (0.0,) and prepared.weights.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"class_weights": [1.0, 2.0]}, InvalidArgumentError, r"`class_weights`.*length 3.*\(2,\)"),
    ({"class_weights": [[1.0, 2.0, 3.0]]}, InvalidArgumentError, r"`class_weights` must be a 1-d"),
    ({"class_weights": [1.0, np.nan, 3.0]}, InvalidArgumentError, r"finite.*\[1\] is nan"),
    ({"class_weights": [1.0, 2.0, np.inf]}, InvalidArgumentError, r"finite.*\[2\] is inf"),
    ({"class_weights": ["a", "b", "c"]}, InvalidTypeError, r"`class_weights`"),
    ({"ignore_index": -100.0}, InvalidTypeError, r"`ignore_index` must be an int"),
    ({"ignore_index": True}, InvalidTypeError, r"`ignore_index` must be an int"),
    ({"ignore_index": "-100"}, InvalidTypeError, r"`ignore_index` must be an int"),
    ({"label_smoothing": 1.5}, InvalidArgumentError, r"`label_smoothing`=1.5 is outside"),
    ({"label_smoothing": -0.1}, InvalidArgumentError, r"`label_smoothing`"),
])
def test_sparse_option_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        L.sparse_softmax_cross_entropy([0, 1], np.zeros((2, 3)), **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"class_weights": [1.0, 2.0]}, r"`class_weights`.*length 3"),
    ({"class_weights": [1.0, 2.0, np.nan]}, r"`class_weights`.*finite"),
])
def test_softmax_option_errors(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        L.softmax_cross_entropy(np.eye(3)[[0, 1]], np.zeros((2, 3)), **kwargs)


@pytest.mark.parametrize("pos_weight, message", [
    ([1.0, 2.0], r"`pos_weight`.*length 1 or 3.*\(2,\)"),
    ([[1.0], [2.0]], r"`pos_weight`.*last axis"),
    (np.ones((1, 1, 3)), r"`pos_weight`"),
    ([1.0, -1.0, 2.0], r"`pos_weight` must be finite and >= 0.*\[1\] is -1"),
    ([1.0, np.nan, 2.0], r"`pos_weight` must be finite"),
    (np.inf, r"`pos_weight` must be finite"),
])
def test_sigmoid_pos_weight_errors(pos_weight, message):
    with pytest.raises(InvalidArgumentError, match=message):
        L.sigmoid_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=pos_weight)


def test_options_never_modify_inputs():
    rng = np.random.default_rng(31)
    t, x = _sparse_inputs(rng)
    cw = CLASS_WEIGHTS.copy()
    w = rng.uniform(size=6)
    args = [a.copy() for a in (t, x, cw, w)]
    registry.get("sparse_softmax_cross_entropy").value_and_grad(
        t, x, w, class_weights=cw, ignore_index=-100, label_smoothing=0.1)
    for before, after in zip(args, (t, x, cw, w)):
        np.testing.assert_array_equal(before, after)


def test_options_are_keyword_only_in_the_functional_api():
    import inspect
    for name, options in (("sparse_softmax_cross_entropy", ["class_weights", "ignore_index",
                                                             "label_smoothing"]),
                          ("softmax_cross_entropy", ["class_weights"]),
                          ("sigmoid_cross_entropy", ["pos_weight"])):
        parameters = inspect.signature(getattr(L, name)).parameters
        keyword_only = [p for p in parameters
                        if parameters[p].kind is inspect.Parameter.KEYWORD_ONLY]
        assert keyword_only == options + ["device"]
        assert all(parameters[p].default is None for p in options)


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=RIDS)
@pytest.mark.parametrize("name", list(EXTENDED))
def test_extended_specs_have_example_inputs_and_exact_gradients(name, reduction):
    """The extended specs (what gpu-check / the simulator would compile) on their own examples."""
    spec = EXTENDED[name]
    rng = np.random.default_rng(32)
    y, p, kw = spec.example_inputs(rng, batch=3, classes=4)
    assert set(kw) <= set(registry.get(name).options)
    np.testing.assert_array_equal(spec(y, p, reduction=reduction, **kw),
                                  registry.get(name)(y, p, reduction=reduction, **kw))
    loss_shape = np.shape(spec(y, p, reduction=R.NONE, **kw))
    for kind in WEIGHT_KINDS:
        _check_gradient(spec, y, p, gradient_weights(kind, loss_shape, rng), reduction, **kw)


def test_unsigned_labels_with_a_negative_ignore_index():
    rng = np.random.default_rng(33)
    x = rng.normal(size=(3, 4))
    spec = registry.get("sparse_softmax_cross_entropy")
    labels = np.array([1, 2, 255], dtype=np.uint8)
    assert spec(labels, x, ignore_index=255) == spec(labels[:2], x[:2])
    assert spec(labels[:2], x[:2], ignore_index=-100) == spec(labels[:2], x[:2])
