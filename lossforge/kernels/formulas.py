"""Loss formulas: the single source from which every kernel is generated.

Two forms exist:

* elementwise ``f(y, p, params) -> float`` on float64 scalars (label, prediction), for losses
  whose every element is independent;
* row-wise ``f(y, p, j, params) -> float``: the loss of flat output element ``j`` read from
  whole arrays (a softmax row, a cosine fibre), for losses that reduce an axis.

``params`` is a tuple of float64 loss parameters (``delta``, ``epsilon``, ``label_smoothing``).
Formulas use ``math.*`` only (never numpy scalar ufuncs: CUDA rejects them) and are
``inline="always"`` so the drivers in ``template.py`` compile them into their loops. Each is
written so NaN inputs give NaN (comparisons are arranged so NaN takes the propagating branch).
"""
import math

from numba import float64, njit

_inline = njit(inline="always")


@_inline
def absolute_difference(y, p, params):
    """``|p - y|``"""
    return abs(p - y)


@_inline
def mean_squared_error(y, p, params):
    """``(p - y)**2``"""
    d = p - y
    return d * d


@_inline
def huber_loss(y, p, params):
    """With ``a = |p - y|`` and ``q = min(a, delta)``: ``0.5 q**2 + delta (a - q)``."""
    delta = params[0]
    a = abs(p - y)
    q = a if a < delta else delta
    return 0.5 * q * q + delta * (a - q)


@_inline
def log_loss(y, p, params):
    """``-y log(p + eps) - (1 - y) log(1 - p + eps)``; no clipping, as TF (p outside [0, 1] is NaN)."""
    eps = params[0]
    return -y * _log(p + eps) - (1.0 - y) * _log(1.0 - p + eps)


@_inline
def hinge_loss(y, x, params):
    """``relu(1 - (2y - 1) x)``: labels {0, 1} mapped to {-1, +1}."""
    v = 1.0 - (2.0 * y - 1.0) * x
    return 0.0 if v <= 0.0 else v


@_inline
def sigmoid_cross_entropy(z, x, params):
    """``max(x, 0) - x z + log1p(exp(-|x|))``, labels smoothed to ``z (1 - ls) + ls / 2`` if ls > 0."""
    ls = params[0]
    if ls > 0.0:
        z = z * (1.0 - ls) + 0.5 * ls
    relu = x if x >= 0.0 else 0.0
    return relu - x * z + math.log1p(math.exp(-abs(x)))


@_inline
def _log(v):
    # math.log raises nothing in nopython mode but is explicit about the domain here:
    # log(v < 0) is NaN and log(0) is -inf, as in TF.
    if v < 0.0:
        return math.nan
    return math.log(v)


@_inline
def weighted_input(y, p, j, params):
    """The input itself: ``compute_weighted_loss(losses)`` weights and reduces given losses."""
    return float64(p[j])


@_inline
def _row_logsumexp(x, j):
    """``(max, log(sum(exp(x[j] - max))))`` of row ``j``: the max-shifted, stable form."""
    k_count = x.shape[1]
    m = -math.inf
    for k in range(k_count):
        v = float64(x[j, k])
        if v > m:
            m = v
    s = 0.0
    for k in range(k_count):
        s += math.exp(float64(x[j, k]) - m)
    return m, math.log(s)


@_inline
def softmax_cross_entropy(z, x, j, params):
    """Row ``j``: ``sum_k z_k (lse(x) - x_k)``; labels smoothed to ``z (1 - ls) + ls / K`` if ls > 0."""
    ls = params[0]
    k_count = x.shape[1]
    m, lse = _row_logsumexp(x, j)
    loss = 0.0
    for k in range(k_count):
        zk = float64(z[j, k])
        if ls > 0.0:
            zk = zk * (1.0 - ls) + ls / k_count
        loss += zk * (lse - (float64(x[j, k]) - m))
    return loss


@_inline
def sparse_softmax_cross_entropy(labels, x, j, params):
    """Row ``j``: ``lse(x) - x[label]``; an out-of-range label gives NaN and is never read."""
    label = labels[j]
    if label < 0 or label >= x.shape[1]:
        return math.nan
    m, lse = _row_logsumexp(x, j)
    return lse - (float64(x[j, label]) - m)


@_inline
def cosine_distance(y, p, j, params):
    """Fibre ``j`` of ``(outer, axis, inner)`` arrays: ``1 - sum_axis(y * p)``."""
    inner = y.shape[2]
    o = j // inner
    i = j - o * inner
    s = 0.0
    for d in range(y.shape[1]):
        s += float64(y[o, d, i]) * float64(p[o, d, i])
    return 1.0 - s
