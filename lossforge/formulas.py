"""Loss formulas: the single source from which every kernel and gradient is generated.

Plain Python on ``math.*`` (no numpy scalar ufuncs: CUDA rejects them), so registering a loss
needs no numba; `lossforge.registry` compiles a formula with ``numba.njit(inline="always")``
when its kernels are first built. Two forms exist:

* elementwise ``value(y, p, *params) -> float`` and ``grad(y, p, *params) -> dvalue/dp`` on
  float64 scalars (label, prediction), for losses whose every element is independent;
* row-wise ``value(y, p, j, *params) -> float``, the loss of flat output element ``j`` read from
  whole arrays (a softmax row, a cosine fibre), and ``grad(y, p, j, scale, out, *params)``
  which writes ``scale * dvalue/dp`` into the row's entries of ``out``.

Each formula is written so NaN inputs give NaN: comparisons put NaN on the propagating branch.
"""
import math


# --- elementwise ------------------------------------------------------------------------------

def absolute_difference(y, p):
    """``|p - y|``"""
    return abs(p - y)


def absolute_difference_grad(y, p):
    d = p - y
    return 1.0 if d > 0.0 else (-1.0 if d < 0.0 else d * 0.0)  # sign, NaN stays NaN


def mean_squared_error(y, p):
    """``(p - y)**2``"""
    d = p - y
    return d * d


def mean_squared_error_grad(y, p):
    return 2.0 * (p - y)


def huber_loss(y, p, delta):
    """With ``a = |p - y|`` and ``q = min(a, delta)``: ``0.5 q**2 + delta (a - q)``."""
    a = abs(p - y)
    q = a if a < delta else delta
    return 0.5 * q * q + delta * (a - q)


def huber_loss_grad(y, p, delta):
    d = p - y
    if abs(d) < delta:
        return d
    return delta * absolute_difference_grad(y, p)


def log_loss(y, p, epsilon):
    """``-y log(p + eps) - (1 - y) log(1 - p + eps)``; nothing clipped (p outside [0, 1] is NaN)."""
    return -y * _log(p + epsilon) - (1.0 - y) * _log(1.0 - p + epsilon)


def log_loss_grad(y, p, epsilon):
    return -y / (p + epsilon) + (1.0 - y) / (1.0 - p + epsilon)


def _log(v):
    # the domain made explicit: log of a negative number is NaN, log(0) is -inf, as in TF
    if v < 0.0:
        return math.nan
    return math.log(v)


def hinge_loss(y, x):
    """``relu(1 - (2y - 1) x)``: labels {0, 1} mapped to {-1, +1}."""
    v = 1.0 - (2.0 * y - 1.0) * x
    return 0.0 if v <= 0.0 else v


def hinge_loss_grad(y, x):
    v = 1.0 - (2.0 * y - 1.0) * x
    if v > 0.0:
        return 1.0 - 2.0 * y
    return 0.0 if v <= 0.0 else v  # NaN stays NaN


def sigmoid_cross_entropy(z, x, label_smoothing):
    """``max(x, 0) - x z + log1p(exp(-|x|))``, labels smoothed to ``z (1 - ls) + ls / 2`` if ls > 0."""
    if label_smoothing > 0.0:
        z = z * (1.0 - label_smoothing) + 0.5 * label_smoothing
    relu = x if x >= 0.0 else 0.0
    return relu - x * z + math.log1p(math.exp(-abs(x)))


def sigmoid_cross_entropy_grad(z, x, label_smoothing):
    if label_smoothing > 0.0:
        z = z * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return _sigmoid(x) - z


def _sigmoid(x):
    # never exp of a large positive number
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def weighted_input(y, p):
    """The input itself: ``compute_weighted_loss(losses)`` weights and reduces given losses."""
    return p


def weighted_input_grad(y, p):
    return 1.0


# --- row-wise ---------------------------------------------------------------------------------

def _row_logsumexp(x, j):
    """``(max, log(sum(exp(x[j] - max))))`` of row ``j``: the max-shifted, stable form."""
    k_count = x.shape[1]
    m = -math.inf
    for k in range(k_count):
        v = float(x[j, k])
        if v > m:
            m = v
    s = 0.0
    for k in range(k_count):
        s += math.exp(float(x[j, k]) - m)
    return m, math.log(s)


def _smoothed(zk, label_smoothing, k_count):
    if label_smoothing > 0.0:
        return zk * (1.0 - label_smoothing) + label_smoothing / k_count
    return zk


def softmax_cross_entropy(z, x, j, label_smoothing):
    """Row ``j``: ``sum_k z_k (lse(x) - x_k)``; labels smoothed to ``z (1 - ls) + ls / K`` if ls > 0."""
    k_count = x.shape[1]
    m, lse = _row_logsumexp(x, j)
    loss = 0.0
    for k in range(k_count):
        loss += _smoothed(float(z[j, k]), label_smoothing, k_count) * (lse - (float(x[j, k]) - m))
    return loss


def softmax_cross_entropy_grad(z, x, j, scale, out, label_smoothing):
    """``d/dx_k = (sum_i z_i) softmax(x)_k - z_k``."""
    k_count = x.shape[1]
    m, lse = _row_logsumexp(x, j)
    total = 0.0
    for k in range(k_count):
        total += _smoothed(float(z[j, k]), label_smoothing, k_count)
    for k in range(k_count):
        zk = _smoothed(float(z[j, k]), label_smoothing, k_count)
        out[j, k] = scale * (total * math.exp(float(x[j, k]) - m - lse) - zk)


def sparse_softmax_cross_entropy(labels, x, j):
    """Row ``j``: ``lse(x) - x[label]``; an out-of-range label gives NaN and is never read."""
    label = labels[j]
    if label < 0 or label >= x.shape[1]:
        return math.nan
    m, lse = _row_logsumexp(x, j)
    return lse - (float(x[j, label]) - m)


def sparse_softmax_cross_entropy_grad(labels, x, j, scale, out):
    """``d/dx_k = softmax(x)_k - [k == label]``."""
    label = labels[j]
    m, lse = _row_logsumexp(x, j)
    for k in range(x.shape[1]):
        hit = 1.0 if k == label else 0.0
        out[j, k] = scale * (math.exp(float(x[j, k]) - m - lse) - hit)


def cosine_distance(y, p, j):
    """Fibre ``j`` of ``(outer, axis, inner)`` arrays: ``1 - sum_axis(y * p)``."""
    inner = y.shape[2]
    o = j // inner
    i = j - o * inner
    s = 0.0
    for d in range(y.shape[1]):
        s += float(y[o, d, i]) * float(p[o, d, i])
    return 1.0 - s


def cosine_distance_grad(y, p, j, scale, out):
    """``d/dp = -y`` along the fibre."""
    inner = y.shape[2]
    o = j // inner
    i = j - o * inner
    for d in range(y.shape[1]):
        out[o, d, i] = -scale * float(y[o, d, i])
