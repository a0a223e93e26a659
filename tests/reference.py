"""Independent float64 NumPy references of every loss and reduction, for the tests.

Written from the formulas in ../shared/reference/tf-semantics.md, not from lossforge's code.
"""
import numpy as np

R_NONE, R_SUM, R_MEAN, R_BATCH, R_NONZERO = ("none", "weighted_sum", "weighted_mean",
                                              "weighted_sum_over_batch_size",
                                              "weighted_sum_by_nonzero_weights")


def f64(x):
    return np.asarray(x, dtype=np.float64)


def reduce(losses, weights, reduction):
    losses = f64(losses)
    w = np.broadcast_to(f64(weights), losses.shape)
    weighted = losses * w
    if reduction == R_NONE:
        return weighted
    total = weighted.sum()
    if reduction == R_SUM:
        return total
    denominator = {R_MEAN: w.sum(), R_BATCH: float(losses.size),
                   R_NONZERO: float(np.count_nonzero(w))}[reduction]
    return 0.0 if denominator == 0 else total / denominator


def absolute_difference(y, p):
    return np.abs(f64(p) - f64(y))


def mean_squared_error(y, p):
    return (f64(p) - f64(y)) ** 2


def huber_loss(y, p, delta=1.0):
    a = np.abs(f64(p) - f64(y))
    return np.where(a <= delta, 0.5 * a * a, 0.5 * delta * delta + delta * (a - delta))


def log_loss(y, p, epsilon=1e-7):
    y, p = f64(y), f64(p)
    with np.errstate(all="ignore"):
        return -y * np.log(p + epsilon) - (1 - y) * np.log(1 - p + epsilon)


def hinge_loss(y, x):
    return np.maximum(0.0, 1.0 - (2 * f64(y) - 1) * f64(x))


def sigmoid_cross_entropy(z, x, label_smoothing=0.0):
    z, x = f64(z), f64(x)
    if label_smoothing > 0:
        z = z * (1 - label_smoothing) + 0.5 * label_smoothing
    # -z log(sigmoid(x)) - (1 - z) log(1 - sigmoid(x)), via logaddexp for stability
    return z * np.logaddexp(0.0, -x) + (1 - z) * np.logaddexp(0.0, x)


def log_softmax(x, axis=-1):
    x = f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def softmax_cross_entropy(z, x, label_smoothing=0.0):
    z = f64(z)
    if label_smoothing > 0:
        z = z * (1 - label_smoothing) + label_smoothing / z.shape[-1]
    return -np.sum(z * log_softmax(x), axis=-1)


def sparse_softmax_cross_entropy(labels, x):
    ls = log_softmax(x)
    return -np.take_along_axis(ls, np.asarray(labels)[..., None], axis=-1)[..., 0]


def cosine_distance(y, p, axis):
    return 1.0 - np.sum(f64(y) * f64(p), axis=axis, keepdims=True)


def mean_pairwise_squared_error(y, p, weights=1.0):
    """TF's graph-mode semantics: sum_b L_b * sum(W_b), L_b from SS_b, S_b and n_b."""
    y, p, w = f64(y), f64(p), f64(weights)
    batch = y.shape[0] if y.ndim else 1
    per_sample = int(np.prod(y.shape[1:]))
    d = (p - y).reshape(batch, per_sample)
    present = np.broadcast_to(w != 0, y.shape).reshape(batch, per_sample)
    total = 0.0
    for b in range(batch):
        n = float(present[b].sum())
        ss, s = np.sum(d[b] ** 2), np.sum(d[b])
        t1 = 2 * ss / (n - 1) if n - 1 > 0 else 0.0
        t2 = 2 * s * s / (n * (n - 1)) if n * (n - 1) > 0 else 0.0
        wb = w if w.ndim == 0 else w[min(b, w.shape[0] - 1)]
        total += (t1 - t2) * np.sum(wb)
    return total if present.sum() > 0 else 0.0


def pairwise_by_pairs(y, p):
    """sum over samples of the mean over unordered pairs of ((p_i - p_j) - (l_i - l_j))**2."""
    y, p = f64(y), f64(p)
    d = (p - y).reshape(y.shape[0], -1)
    total = 0.0
    for db in d:
        pairs = [(db[i] - db[j]) ** 2 for i in range(db.size) for j in range(i + 1, db.size)]
        total += np.mean(pairs) if pairs else 0.0
    return total
