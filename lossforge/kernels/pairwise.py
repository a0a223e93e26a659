"""Per-sample sums for ``mean_pairwise_squared_error``: one fused pass over (B, E) inputs."""
import numpy as np
from numba import float64, njit, prange


@njit(cache=True, parallel=True)
def pairwise_sums(y, p):
    """``out[b] = (sum_e d**2, sum_e d)`` with ``d = p - y``, accumulated in float64."""
    out = np.zeros((y.shape[0], 2))
    for b in prange(y.shape[0]):
        ss = 0.0
        s = 0.0
        for e in range(y.shape[1]):
            d = float64(p[b, e]) - float64(y[b, e])
            ss += d * d
            s += d
        out[b, 0] = ss
        out[b, 1] = s
    return out
