"""Loss formulas: the single source from which every kernel and gradient is generated.

Plain Python on ``math.*`` (no numpy scalar ufuncs: CUDA rejects them), so registering a loss
needs no numba; `lossforge.registry` compiles a formula with ``numba.njit(inline="always")``
when its kernels are first built. Two forms exist:

* elementwise ``value(y, p, *params) -> float`` and ``grad(y, p, *params) -> dvalue/dp`` on
  float64 scalars (label, prediction), for losses whose every element is independent;
* row-wise ``value(y, p, j, *params) -> float``, the loss of flat output element ``j`` read from
  whole arrays (a softmax row, a cosine fibre), and ``grad(y, p, j, scale, out, *params)``
  which writes ``scale * dvalue/dp`` into the row's entries of ``out``; optionally
  ``fused_grad(y, p, j, scale, out, *params)``, which does what ``grad`` does and returns what
  ``value`` returns, computing the row's reductions once (built from the same helpers). Row
  loops use ``row_range`` and ``across_lanes_sum``/``across_lanes_max`` (see "row-wise"
  below), which let a warp of GPU threads share a row.

Each formula is written so NaN inputs give NaN: comparisons put NaN on the propagating branch.
No formula divides by zero (the CPU kernels use numba's Python error model, which raises
ZeroDivisionError): a division whose denominator can be 0 is guarded by a branch.
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
    z = _smoothed_binary(z, label_smoothing)
    return _sigmoid_ce(z, x, _exp_at_most_0(-abs(x)))


def sigmoid_cross_entropy_grad(z, x, label_smoothing):
    return _sigmoid(x) - _smoothed_binary(z, label_smoothing)


def sigmoid_cross_entropy_fused(z, x, label_smoothing):
    """``(loss, gradient)`` from one ``exp(-|x|)``."""
    z = _smoothed_binary(z, label_smoothing)
    e = _exp_at_most_0(-abs(x))
    return _sigmoid_ce(z, x, e), _sigmoid_of(x, e) - z


def _smoothed_binary(z, label_smoothing):
    if label_smoothing > 0.0:
        return z * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return z


def _sigmoid_ce(z, x, e):
    """The loss, given ``e = exp(-|x|)``."""
    relu = x if x >= 0.0 else 0.0
    return relu - x * z + _log1p_at_most_1(e)


def _sigmoid(x):
    return _sigmoid_of(x, _exp_at_most_0(-abs(x)))


def _sigmoid_of(x, e):
    # given e = exp(-|x|): never exp of a large positive number; one exp and one division for
    # either sign (a vectorised kernel evaluates both sides of an `if`), the same numbers as
    # 1 / (1 + exp(-x)) for x >= 0 and exp(x) / (1 + exp(x)) below
    return (1.0 if x >= 0.0 else e) / (1.0 + e)


def weighted_input(y, p):
    """The input itself: ``compute_weighted_loss(losses)`` weights and reduces given losses."""
    return p


def weighted_input_grad(y, p):
    return 1.0


# --- row-wise ---------------------------------------------------------------------------------
#
# A row loop runs over ``row_range(n)`` and hands each sum it accumulates to
# ``across_lanes_sum`` (a maximum to ``across_lanes_max``) before using it. Here they are
# ``range`` and the identity, so the CPU kernels compile the plain loops. On the GPU
# (`lossforge.kernels.warp`) a warp of 32 threads shares a row: lane ``i`` visits ``k = i,
# i + 32, ...`` (neighbouring lanes read neighbouring addresses) and the lanes' partial results
# are combined across the warp, so that every lane holds the row's sum. A row formula of your
# own that loops with plain ``range`` is still correct on the GPU: each lane then reads the
# whole row (one thread per row).

row_range = range


def across_lanes_sum(s):
    """The sum of ``s`` over the lanes sharing a row (one lane on the CPU: ``s``)."""
    return s


def across_lanes_max(m):
    """The maximum of ``m`` over the lanes sharing a row (one lane on the CPU: ``m``)."""
    return m


def _row_max(row):
    """``max(row)`` in float64 (-inf for an empty row; a NaN entry never wins: the sums that
    use ``m`` carry it)."""
    m = -math.inf
    for k in row_range(row.shape[0]):
        v = float(row[k])
        if v > m:
            m = v
    return across_lanes_max(m)


def _row_logsumexp(row):
    """``(m, log(sum(exp(row - m))))`` with ``m = max(row)``: the max-shifted, stable form."""
    m = _row_max(row)
    s = 0.0
    for k in row_range(row.shape[0]):
        s += math.exp(float(row[k]) - m)
    return m, math.log(across_lanes_sum(s))


def _row_logsumexp_keeping_exps(row, out):
    """`_row_logsumexp` of a row whose softmax is wanted next, with ``out`` (the row's gradient,
    about to be written) as scratch: vmath's float32 stand-in leaves ``exp(row - m)`` in it for
    `_row_softmax_at`, so a CPU kernel takes each ``exp`` once; as written (float64, and the
    CUDA kernels, which were measured only with the ``exp`` taken again) it is not touched."""
    return _row_logsumexp(row)


def _row_softmax_at(row, exps, k, m, lse):
    """``softmax(row)_k = exp((row_k - m) - lse')`` from the row's ``m`` and ``lse'`` (``exps``:
    the scratch `_row_logsumexp_keeping_exps` was given)."""
    return math.exp((float(row[k]) - m) - lse)


def _row_sum(row):
    """``sum(row)``."""
    s = 0.0
    for k in row_range(row.shape[0]):
        s += float(row[k])
    return across_lanes_sum(s)


def _row_sum_and_shifted_dot(z, x, m):
    """``(sum_k z_k, sum_k z_k (m - x_k))`` in one pass over the rows: with ``m = max(x)`` and
    ``z >= 0`` the second is a sum of terms >= 0, so it never cancels (``m + lse - x_k``
    rounded ``m + lse`` first: 5e-4 off at logits of 1e4)."""
    total = 0.0
    s = 0.0
    for k in row_range(x.shape[0]):
        zk = float(z[k])
        total += zk
        s += zk * (m - float(x[k]))
    return across_lanes_sum(total), across_lanes_sum(s)


def _row_shifted_sum(x, m):
    """``sum_k (m - x_k)``."""
    s = 0.0
    for k in row_range(x.shape[0]):
        s += m - float(x[k])
    return across_lanes_sum(s)


def softmax_cross_entropy(z, x, j, label_smoothing):
    """Row ``j``: ``sum_k z_k (lse(x) - x_k)``; labels smoothed to ``z (1 - ls) + ls / K`` if ls > 0.

    Evaluated as ``lse' sum(z) + sum_k z_k (m - x_k)`` with ``m = max(x)``, ``lse' = lse(x) - m``:
    row sums that vectorise, and no cancellation at large logits.
    """
    xr = x[j]
    if xr.shape[0] == 0:  # no classes: a sum over nothing is 0 (TF), not lse = -inf times 0
        return 0.0
    m, lse = _row_logsumexp(xr)
    return _softmax_row(z[j], xr, m, lse, label_smoothing)[0]


def _softmax_row(zr, xr, m, lse, label_smoothing):
    """``(loss, sum_k z'_k)`` of a row with at least one class and its ``m``, ``lse'`` (see
    softmax_cross_entropy): the loss and the sum its gradient needs."""
    total, shifted = _row_sum_and_shifted_dot(zr, xr, m)
    if label_smoothing > 0.0:
        k_count = xr.shape[0]
        total = total * (1.0 - label_smoothing) + label_smoothing
        shifted = shifted * (1.0 - label_smoothing) + \
            _row_shifted_sum(xr, m) * (label_smoothing / k_count)
    loss = lse * total + shifted
    if loss != loss:  # NaN: maybe only inf * 0 of an infinite label at the max logit, which
        loss = _row_nll_dot(zr, xr, m, lse, label_smoothing)  # TF's term-by-term sum has not
    return loss, total


def _row_nll_dot(z, x, m, lse, label_smoothing):
    """``sum_k z'_k ((m - x_k) + lse)`` term by term (softmax_cross_entropy's NaN fallback)."""
    keep, spread = _smoothing(label_smoothing, x.shape[0])
    s = 0.0
    for k in row_range(x.shape[0]):
        s += (float(z[k]) * keep + spread) * ((m - float(x[k])) + lse)
    return across_lanes_sum(s)


def _smoothing(label_smoothing, k_count):
    """``(keep, spread)``: labels smoothed to ``z' = z keep + spread``, ``z (1 - ls) + ls / K``
    if ls > 0, else ``z 1 + 0``, which is ``z``. Taken once per row, out of the loops."""
    if label_smoothing > 0.0:
        return 1.0 - label_smoothing, label_smoothing / k_count
    return 1.0, 0.0


def softmax_cross_entropy_grad(z, x, j, scale, out, label_smoothing):
    """``d/dx_k = (sum_i z'_i) softmax(x)_k - z'_k``."""
    xr = x[j]
    zr = z[j]
    m, lse = _row_logsumexp_keeping_exps(xr, out[j])
    total = _row_sum(zr)
    if label_smoothing > 0.0:
        total = total * (1.0 - label_smoothing) + label_smoothing
    _softmax_row_grad(zr, xr, out[j], scale, m, lse, total, label_smoothing)


def softmax_cross_entropy_fused(z, x, j, scale, out, label_smoothing):
    """softmax_cross_entropy's value, returned, and its gradient, written as
    softmax_cross_entropy_grad writes it, from one log-sum-exp of the row."""
    xr = x[j]
    if xr.shape[0] == 0:
        return 0.0
    zr = z[j]
    outr = out[j]
    m, lse = _row_logsumexp_keeping_exps(xr, outr)
    loss, total = _softmax_row(zr, xr, m, lse, label_smoothing)
    _softmax_row_grad(zr, xr, outr, scale, m, lse, total, label_smoothing)
    return loss


def _softmax_row_grad(zr, xr, outr, scale, m, lse, total, label_smoothing):
    """``outr_k = scale ((sum_i z'_i) softmax(x)_k - z'_k)`` from the row's ``m``, ``lse'`` and
    ``total = sum_i z'_i``."""
    # float(): a float32 kernel computes the exps in float32 (m is a logit, so exact in it)
    m, lse, total = float(m), float(lse), float(total)
    keep, spread = _smoothing(label_smoothing, xr.shape[0])
    spread = float(spread)  # (ls / K, an int K, would widen a float32 kernel's lanes to float64)
    for k in row_range(xr.shape[0]):
        zk = float(zr[k]) * keep + spread
        outr[k] = scale * (total * _row_softmax_at(xr, outr, k, m, lse) - zk)


def sparse_softmax_cross_entropy(labels, x, j):
    """Row ``j``: ``lse(x) - x[label]``; an out-of-range label gives NaN and is never read."""
    m, lse = _row_logsumexp(x[j])
    return _sparse_row_loss(labels[j], x[j], m, lse)


def _sparse_row_loss(label, xr, m, lse):
    """``lse' + (m - x[label])``, or NaN for a label outside the row (never read)."""
    if label < 0 or label >= xr.shape[0]:
        return math.nan
    return lse + (m - float(xr[label]))


def sparse_softmax_cross_entropy_grad(labels, x, j, scale, out):
    """``d/dx_k = softmax(x)_k - [k == label]``."""
    m, lse = _row_logsumexp_keeping_exps(x[j], out[j])
    _sparse_row_grad(labels[j], x[j], out[j], scale, m, lse)


def sparse_softmax_cross_entropy_fused(labels, x, j, scale, out):
    """sparse_softmax_cross_entropy's value, returned, and its gradient, written as
    sparse_softmax_cross_entropy_grad writes it, from one log-sum-exp of the row."""
    xr = x[j]
    outr = out[j]
    m, lse = _row_logsumexp_keeping_exps(xr, outr)
    _sparse_row_grad(labels[j], xr, outr, scale, m, lse)
    return _sparse_row_loss(labels[j], xr, m, lse)


def _sparse_row_grad(label, xr, outr, scale, m, lse):
    """``outr_k = scale (softmax(x)_k - [k == label])`` from the row's ``m`` and ``lse'``."""
    m, lse = float(m), float(lse)  # (see _softmax_row_grad)
    for k in row_range(xr.shape[0]):
        hit = 1.0 if k == label else 0.0
        outr[k] = scale * (_row_softmax_at(xr, outr, k, m, lse) - hit)


def cosine_distance(y, p, j):
    """Fibre ``j`` of ``(outer, axis, inner)`` arrays: ``1 - sum_axis(y * p)``."""
    return 1.0 - _fibre_dot(y, p, j)


def _fibre_dot(y, p, j):
    """``sum_axis(y * p)`` along fibre ``j`` of ``(outer, axis, inner)`` arrays, in float64."""
    inner = y.shape[2]
    o = j // inner
    i = j - o * inner
    s = 0.0
    for d in row_range(y.shape[1]):
        s += float(y[o, d, i]) * float(p[o, d, i])
    return across_lanes_sum(s)


def cosine_distance_grad(y, p, j, scale, out):
    """``d/dp = -y`` along the fibre."""
    inner = y.shape[2]
    o = j // inner
    i = j - o * inner
    for d in row_range(y.shape[1]):
        out[o, d, i] = -scale * float(y[o, d, i])


# --- extra built-ins beyond TensorFlow (PyTorch / Keras / torchvision semantics) ----------------

_LOG2 = math.log(2.0)


def log_cosh(y, p):
    """``log(cosh(p - y))``, as ``(|d| - log 2) + log1p(exp(-2|d|))`` (never overflows).

    With ``d = p - y``. Below ``|d| = 0.625`` it is evaluated as ``log1p(2 sinh(d/2)**2)``,
    which keeps full relative precision near 0 (where the large-``|d|`` form cancels); both
    are exact rewrites of ``log(cosh(d))``. Finite for every finite ``d``; ``+-inf`` gives
    ``inf``.
    """
    a = abs(p - y)
    return _log_cosh_of(a, _log_cosh_arg(a))


def log_cosh_grad(y, p):
    """``tanh(p - y)``."""
    d = p - y
    a = abs(d)
    return _tanh_of(d, a, _log_cosh_arg(a))


def log_cosh_fused(y, p):
    """``(log_cosh, tanh)`` from one ``exp(-2|d|)``."""
    d = p - y
    a = abs(d)
    u = _log_cosh_arg(a)
    return _log_cosh_of(a, u), _tanh_of(d, a, u)


#: log_cosh's split (tanh's polynomial's bound in a float32 kernel): below it the log1p
#: argument is 2 sinh(a/2)**2 <= 0.2018, above it exp(-2a) <= 0.2865
_LOG_COSH_SPLIT = 0.625


def _log_cosh_arg(a):
    """log_cosh's log1p argument at ``a = |d|``: ``2 sinh(a/2)**2`` below the split, else
    ``exp(-2a)``; within [0, 0.29] either way (NaN passes)."""
    # a vectorised float32 kernel evaluates both sides of an `if`: each is cheap or shared
    if a < _LOG_COSH_SPLIT:
        s = _sinh_below_1(0.5 * a)
        return 2.0 * s * s
    return _exp_at_most_0(-2.0 * a)


def _log_cosh_of(a, u):
    """``log(cosh(a))`` from `_log_cosh_arg`'s ``u``."""
    r = _log1p_below_0_29(u)
    return r if a < _LOG_COSH_SPLIT else (a - _LOG2) + r  # NaN takes the second form


def _tanh_of(d, a, u):
    """``tanh(d)`` from ``a = |d|`` and `_log_cosh_arg`'s ``u``: ``(1 - u) / (1 + u)`` above
    the split, where ``u = exp(-2a)`` (1 + u >= 1: no division by 0)."""
    t = _tanh_below_0_625(a) if a < _LOG_COSH_SPLIT else (1.0 - u) / (1.0 + u)
    return math.copysign(t, d)  # NaN: t is NaN


def _sinh_below_1(x):
    """``sinh(x)`` for ``|x| <= 1`` (a float32 kernel evaluates it without an exp)."""
    return math.sinh(x)


def _tanh_below_0_625(x):
    """``tanh(x)`` for ``|x| < 0.625`` (a float32 kernel evaluates it without an exp)."""
    return math.tanh(x)


def _log1p_below_0_29(x):
    """``log1p(x)`` for ``0 <= x <= 0.29`` (a float32 kernel evaluates a polynomial, with
    none of log1p's range reduction)."""
    return math.log1p(x)


def _exp_at_most_0(x):
    """``exp(x)`` for ``x <= 0``, such as ``exp(-|x|)``: a float32 kernel gives 0 where exp is
    a subnormal float32 (``x < -87.34``), as TF's CPU kernels, which flush subnormal results to
    0, and spares the full exp's upper clamp and second scale factor (`vmath.exp_at_most_0`)."""
    return math.exp(x)


def _log1p_at_most_1(x):
    """``log1p(x)`` for ``0 <= x <= 1``, such as ``exp(-|x|)`` (a float32 kernel evaluates a
    polynomial, with none of log1p's range reduction and special cases)."""
    return math.log1p(x)


def poisson(y, p, epsilon):
    """``p - y log(p + eps)``: Poisson negative log-likelihood of counts ``y`` at rates ``p``.

    Keras' ``poisson`` (eps 1e-7) and PyTorch's ``PoissonNLLLoss(log_input=False, full=False)``
    (eps 1e-8); the ``log(y!)`` term is dropped. ``y = 0`` gives ``p`` exactly (``0 log 0 = 0``, so
    ``p = 0`` with ``eps = 0`` is 0, not NaN); ``p + eps < 0`` gives NaN.
    """
    if y == 0.0:
        return p
    return p - y * _log(p + epsilon)


def poisson_grad(y, p, epsilon):
    """``1 - y / (p + eps)``: 1 where ``y = 0``; ``-inf`` at ``p + eps = 0`` (value inf)."""
    if y == 0.0:
        return 1.0 + 0.0 * p  # NaN stays NaN
    v = p + epsilon
    if v < 0.0:  # NaN, like the value
        return math.nan
    if v == 0.0:  # (no division by zero: numba's CPU kernels raise on it)
        return 1.0 - y * math.inf
    return 1.0 - y / v


def kl_divergence(y, p):
    """``y log(y / p)``, elementwise on probabilities, with ``0 log 0 = 0``.

    Computed as ``y (log y - log p)`` (no overflow of ``y / p``); nothing is clipped: ``p = 0``
    with ``y > 0`` gives ``inf`` and negative inputs give NaN. The KL of each distribution is
    the sum over its class axis (``Reduction.NONE``, then ``.sum(-1)``); ``SUM`` is the total
    over all rows and ``SUM_OVER_BATCH_SIZE`` divides by the element count (PyTorch's 'mean',
    not 'batchmean'). PyTorch's ``KLDivLoss`` takes ``log p`` where this takes ``p``.
    """
    if y == 0.0:
        return 0.0 * p  # 0 log 0 = 0; a NaN prediction stays NaN
    return y * (_log(y) - _log(p))


def kl_divergence_grad(y, p):
    """``-y / p`` (0 where ``y = 0``; ``-inf`` at ``p = 0``, where the value is inf)."""
    if y == 0.0:
        return 0.0 * p
    if y < 0.0 or p < 0.0:  # NaN, like the value
        return math.nan
    if p == 0.0:  # (no division by zero: numba's CPU kernels raise on it)
        return -y * math.inf
    return -y / p


def focal(z, x, gamma, alpha):
    """``alpha_t (1 - p_t)**gamma CE(z, x)`` on logits: sigmoid focal loss (Lin et al. 2017).

    ``p = sigmoid(x)``, ``p_t = p z + (1 - p)(1 - z)``, ``CE = max(x, 0) - x z + log1p(exp(-|x|))``
    (the stable sigmoid cross-entropy), ``alpha_t = alpha z + (1 - alpha)(1 - z)`` if ``alpha >=
    0``, else 1 (torchvision's ``sigmoid_focal_loss``). ``1 - p_t`` is formed from ``sigmoid(x)``
    and ``sigmoid(-x)``, each computed without cancellation; ``0**0`` is 1, so ``gamma = 0`` is
    exactly ``alpha_t CE`` (no NaN), and logits of +-1e4 give finite values.
    """
    p, pm, q, ce, at, qg = _focal_terms(z, x, gamma, alpha)
    return at * ce * qg


def _focal_terms(z, x, gamma, alpha):
    """``(p, 1 - p, q = 1 - p_t, CE, alpha_t, q**gamma)``, which the loss and its gradient share."""
    p, pm, softplus = _sigmoids(x)
    q = p * (1.0 - z) + pm * z  # 1 - p_t
    relu = x if x >= 0.0 else 0.0
    ce = relu - x * z + softplus
    at = alpha * z + (1.0 - alpha) * (1.0 - z) if alpha >= 0.0 else 1.0
    return p, pm, q, ce, at, math.pow(q, gamma)


def _sigmoids(x):
    """``(sigmoid(x), sigmoid(-x), log1p(exp(-|x|)))`` from one ``exp(-|x|)``: each equal to
    what ``_sigmoid(x)``, ``_sigmoid(-x)`` and ``log1p(exp(-abs(x)))`` give (three exps)."""
    e = _exp_at_most_0(-abs(x))
    d = 1.0 + e
    if x >= 0.0:
        return 1.0 / d, e / d, _log1p_at_most_1(e)
    return e / d, 1.0 / d, _log1p_at_most_1(e)


def focal_grad(z, x, gamma, alpha):
    """``alpha_t [(p - z) q**gamma + gamma CE (1 - 2z) p (1 - p) q**(gamma - 1)]``, ``q = 1 - p_t``.

    The second term is formed as ``(p (1 - p) / q) q**gamma`` (``p (1 - p) <= 2q`` for labels in
    [0, 1], so it never overflows) and is 0 when ``gamma = 0`` or ``q = 0``, its limit, instead of
    ``0 * inf`` (optax#1267).
    """
    p, pm, q, ce, at, qg = _focal_terms(z, x, gamma, alpha)
    return _focal_grad_of(z, gamma, p, pm, q, ce, at, qg)


def focal_fused(z, x, gamma, alpha):
    """``(loss, gradient)`` from one evaluation of their shared terms."""
    p, pm, q, ce, at, qg = _focal_terms(z, x, gamma, alpha)
    return at * ce * qg, _focal_grad_of(z, gamma, p, pm, q, ce, at, qg)


def _focal_grad_of(z, gamma, p, pm, q, ce, at, qg):
    modulating = 0.0
    if not (gamma == 0.0 or q == 0.0):  # NaN takes this branch and stays NaN
        modulating = gamma * ce * (1.0 - 2.0 * z) * (p * pm / q) * qg
    return at * ((p - z) * qg + modulating)


def smooth_l1(y, p, beta):
    """``0.5 d**2 / beta`` if ``|d| < beta``, else ``|d| - 0.5 beta`` (PyTorch; ``beta = 0`` is L1)."""
    a = abs(p - y)
    if a < beta:
        return 0.5 * a * a / beta
    return a - 0.5 * beta


def smooth_l1_grad(y, p, beta):
    """``d / beta`` if ``|d| < beta``, else ``sign(d)``."""
    d = p - y
    if abs(d) < beta:
        return d / beta
    return absolute_difference_grad(y, p)


def squared_hinge(y, x):
    """``relu(1 - (2y - 1) x)**2``: labels {0, 1} mapped to {-1, +1}, as `hinge_loss`."""
    v = 1.0 - (2.0 * y - 1.0) * x
    return 0.0 if v <= 0.0 else v * v


def squared_hinge_grad(y, x):
    """``2 relu(1 - (2y - 1) x) (1 - 2y)``."""
    v = 1.0 - (2.0 * y - 1.0) * x
    return 0.0 if v <= 0.0 else 2.0 * v * (1.0 - 2.0 * y)  # NaN stays NaN


def _clamp100(lv):
    # PyTorch's BCE: log clamped below at -100 (v = 0 gives -100, not -inf); NaN stays NaN
    return -100.0 if lv < -100.0 else lv


def binary_cross_entropy(y, p):
    """``-(y max(log p, -100) + (1 - y) max(log(1 - p), -100))`` on probabilities (PyTorch).

    The logs are clamped at -100, so ``p`` of exactly 0 or 1 gives finite values (at most 100
    per unit label); ``p`` outside [0, 1] gives NaN (PyTorch raises).
    """
    return _bce(y, _log(p), _log(1.0 - p))


def _bce(y, lp, lq):
    """The loss, given ``lp = log p`` and ``lq = log(1 - p)``."""
    return -(y * _clamp100(lp) + (1.0 - y) * _clamp100(lq))


def binary_cross_entropy_grad(y, p):
    """``-y / p + (1 - y) / (1 - p)``, each term 0 where its log is clamped.

    The exact derivative of the clamped value, so finite everywhere in [0, 1] (at ``p = 0`` the
    ``y`` term is flat). PyTorch's backward instead divides ``p - y`` by ``max(p (1 - p), 1e-12)``;
    the two agree wherever ``p (1 - p) >= 1e-12``.
    """
    return _bce_grad(y, p, _log(p), _log(1.0 - p))


def binary_cross_entropy_fused(y, p):
    """``(loss, gradient)`` from one evaluation of the two logs."""
    lp = _log(p)
    lq = _log(1.0 - p)
    return _bce(y, lp, lq), _bce_grad(y, p, lp, lq)


def _bce_grad(y, p, lp, lq):
    """The gradient, given ``lp = log p`` and ``lq = log(1 - p)``."""
    q = 1.0 - p
    if p < 0.0 or q < 0.0:
        return math.nan
    gp = 0.0 if lp < -100.0 else -y / p  # NaN takes the division and stays NaN
    gq = 0.0 if lq < -100.0 else (1.0 - y) / q
    return gp + gq


# --- PyTorch-style options of the cross-entropies (see builtins: extended specs) ----------------

def sigmoid_cross_entropy_pos_weight(z, x, j, label_smoothing):
    """Element ``j``: ``(1 - z) softplus(x) + pos_weight z softplus(-x)``, the stable form of
    ``-[pos_weight z log sigmoid(x) + (1 - z) log(1 - sigmoid(x))]`` (PyTorch's
    ``BCEWithLogitsLoss(pos_weight=...)``).

    ``z`` holds the labels flattened, then the ``C`` positive-class weights, so element ``j``'s
    weight is ``z[n + j % C]`` (``n = x.shape[0]``; ``C`` is 1 or the size of the last axis).
    Labels are smoothed first, ``z (1 - ls) + ls / 2`` if ls > 0, then weighted.
    """
    pw, zj, xj = _pos_weighted_element(z, x, j, label_smoothing)
    tail = _log1p_at_most_1(_exp_at_most_0(-abs(xj)))
    softplus_pos = (xj if xj >= 0.0 else 0.0) + tail
    softplus_neg = (0.0 if xj >= 0.0 else -xj) + tail
    return (1.0 - zj) * softplus_pos + pw * zj * softplus_neg


def _pos_weighted_element(z, x, j, label_smoothing):
    """(pos_weight, smoothed label, logit) of element ``j`` of the packed ``z`` (see above)."""
    n = x.shape[0]
    zj = float(z[j])
    if label_smoothing > 0.0:
        zj = zj * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return float(z[n + j % (z.shape[0] - n)]), zj, float(x[j])


def sigmoid_cross_entropy_pos_weight_grad(z, x, j, scale, out, label_smoothing):
    """``(1 - z) sigmoid(x) - pos_weight z sigmoid(-x)``."""
    pw, zj, xj = _pos_weighted_element(z, x, j, label_smoothing)
    out[j] = scale * ((1.0 - zj) * _sigmoid(xj) - pw * zj * _sigmoid(-xj))


def softmax_cross_entropy_class_weighted(z, x, j, label_smoothing):
    """Row ``j``: ``sum_k w_k z'_k (lse(x) - x_k)``, ``z'`` the labels smoothed (``z (1 - ls) +
    ls / K`` if ls > 0) and then weighted by the class weights ``w`` (PyTorch's order).

    ``z`` has one row more than ``x``: its last row holds ``w``. A term whose coefficient
    ``w_k z'_k`` is 0 contributes exactly 0, even at a logit of -inf.
    """
    k_count = x.shape[1]
    rows = x.shape[0]
    m, lse = _row_logsumexp(x[j])
    keep, spread = _smoothing(label_smoothing, k_count)
    loss = 0.0
    for k in row_range(k_count):
        c = float(z[rows, k]) * (float(z[j, k]) * keep + spread)
        if c != 0.0:  # NaN takes this branch and stays NaN
            loss += c * (lse - (float(x[j, k]) - m))
    return across_lanes_sum(loss)


def softmax_cross_entropy_class_weighted_grad(z, x, j, scale, out, label_smoothing):
    """``d/dx_k = (sum_i w_i z'_i) softmax(x)_k - w_k z'_k``."""
    k_count = x.shape[1]
    rows = x.shape[0]
    m, lse = _row_logsumexp(x[j])
    keep, spread = _smoothing(label_smoothing, k_count)
    total = 0.0
    for k in row_range(k_count):
        total += float(z[rows, k]) * (float(z[j, k]) * keep + spread)
    total = across_lanes_sum(total)
    for k in row_range(k_count):
        c = float(z[rows, k]) * (float(z[j, k]) * keep + spread)
        out[j, k] = scale * (total * math.exp(float(x[j, k]) - m - lse) - c)


def sparse_softmax_cross_entropy_extended(y, x, j, label_smoothing):
    """Row ``j`` with PyTorch's ``cross_entropy(weight=w, ignore_index=..., label_smoothing=ls)``.

    ``y`` (float64) holds the labels, ``-1`` marking an ignored row, then the ``K`` class
    weights ``w``. An ignored row is 0 and never read. Otherwise, with ``nll_k = lse(x) - x_k``
    and ``t`` the label: ``nll_t`` if ls = 0, else ``(1 - ls) nll_t + (ls / K) sum_k w_k nll_k
    / w_t``. The sample's weight carries ``w_t`` (see builtins), so the weighted loss is
    PyTorch's ``(1 - ls) w_t nll_t + (ls / K) sum_k w_k nll_k``; a row with ``w_t = 0`` is 0.
    """
    t = y[j]
    if t < 0.0:
        return 0.0
    k_count = x.shape[1]
    label = int(t)
    if label >= k_count:
        return math.nan
    m, lse = _row_logsumexp(x[j])
    nll = lse - (float(x[j, label]) - m)
    if label_smoothing > 0.0:
        rows = x.shape[0]
        wt = y[rows + label]
        if wt == 0.0:
            return 0.0
        s = 0.0
        for k in row_range(k_count):
            wk = y[rows + k]
            if wk != 0.0:  # a zero-weight class contributes 0, even at a logit of -inf
                s += wk * (lse - (float(x[j, k]) - m))
        s = across_lanes_sum(s)
        return (1.0 - label_smoothing) * nll + (label_smoothing / k_count) * (s / wt)
    return nll


def sparse_softmax_cross_entropy_extended_grad(y, x, j, scale, out, label_smoothing):
    """``softmax(x)_k - [k == t]`` if ls = 0, else ``((sum_i w_i z'_i) softmax(x)_k - w_k z'_k)
    / w_t`` with ``z' = (1 - ls) onehot(t) + ls / K``; 0 for an ignored row."""
    t = y[j]
    k_count = x.shape[1]
    if t < 0.0:
        for k in row_range(k_count):
            out[j, k] = 0.0
        return
    label = int(t)
    if label >= k_count:
        for k in row_range(k_count):
            out[j, k] = math.nan
        return
    m, lse = _row_logsumexp(x[j])
    if label_smoothing > 0.0:
        rows = x.shape[0]
        wt = y[rows + label]
        if wt == 0.0:
            for k in row_range(k_count):
                out[j, k] = 0.0
            return
        uniform = label_smoothing / k_count
        total = 0.0
        for k in row_range(k_count):
            total += uniform * y[rows + k]
        total = across_lanes_sum(total) + (1.0 - label_smoothing) * wt
        for k in row_range(k_count):
            zk = uniform + (1.0 - label_smoothing if k == label else 0.0)
            out[j, k] = scale * (total * math.exp(float(x[j, k]) - m - lse)
                                 - y[rows + k] * zk) / wt
        return
    for k in row_range(k_count):
        hit = 1.0 if k == label else 0.0
        out[j, k] = scale * (math.exp(float(x[j, k]) - m - lse) - hit)


def mean_pairwise_squared_error(y, p, j):
    """Sample ``j``: ``2 SS / (n - 1) - 2 S**2 / (n (n - 1))`` with ``d = p - y``, ``SS = sum d**2``,
    ``S = sum d`` over the sample and ``n`` its count of non-zero weights, packed by the prepare
    as ``y[j, -1]`` where a weight is 0 (else ``y`` is the labels, and ``n`` the row's size);
    each division is 0 when its denominator is <= 0 (TF's div_no_nan)."""
    s, ss, n = _row_diff_sums(y[j], p[j])
    return _pairwise_of(s, ss, n)


def _pairwise_of(s, ss, n):
    """The sample's loss from its ``(S, SS, n)``."""
    first = 2.0 * ss / (n - 1.0) if n - 1.0 > 0.0 else 0.0
    second = 2.0 * s * s / (n * (n - 1.0)) if n * (n - 1.0) > 0.0 else 0.0
    return first - second


def _row_diff_sums(y, p):
    """``(S, SS, n)`` of a sample row: ``d = p - y`` over ``p``'s elements, ``S = sum d``,
    ``SS = sum d**2``, and the count ``n`` packed after the labels (if ``y`` is longer than
    ``p``; else ``p``'s size), all in float64."""
    ss = 0.0
    s = 0.0
    for e in row_range(p.shape[0]):
        d = float(p[e]) - float(y[e])
        ss += d * d
        s += d
    n = y.shape[0]
    count = float(y[p.shape[0]]) if n > p.shape[0] else float(n)
    return across_lanes_sum(s), across_lanes_sum(ss), count


def mean_pairwise_squared_error_grad(y, p, j, scale, out):
    """``d/dp_e = 4 d_e / (n - 1) - 4 S / (n (n - 1))`` (the same zero-denominator rule)."""
    s, _, n = _row_diff_sums(y[j], p[j])
    _pairwise_row_grad(y[j], p[j], out[j], scale, s, n)


def mean_pairwise_squared_error_fused(y, p, j, scale, out):
    """mean_pairwise_squared_error's value, returned, and its gradient, written as
    mean_pairwise_squared_error_grad writes it, from one pass of the row's sums."""
    s, ss, n = _row_diff_sums(y[j], p[j])
    _pairwise_row_grad(y[j], p[j], out[j], scale, s, n)
    return _pairwise_of(s, ss, n)


def _pairwise_row_grad(yr, pr, outr, scale, s, n):
    """``outr_e = scale d/dp_e`` of a sample row from its ``S`` and ``n`` (rows indexed from 0:
    LLVM vectorises the loop)."""
    first = 4.0 / (n - 1.0) if n - 1.0 > 0.0 else 0.0
    second = 4.0 * s / (n * (n - 1.0)) if n * (n - 1.0) > 0.0 else 0.0
    first, second = float(first), float(second)  # (a float32 kernel writes in float32)
    for e in row_range(pr.shape[0]):
        outr[e] = scale * (first * (float(pr[e]) - float(yr[e])) - second)
