"""Weight regularizers as TF 1.x defined them (``tf.contrib.layers``, used by slim).

* ``l1``: ``scale * sum(|w|)``;
* ``l2``: ``scale * sum(w**2) / 2`` (``tf.nn.l2_loss``, note the half);
* ``l1_l2``: ``scale_l1 * sum(|w|) + scale_l2 * sum(w**2) / 2``;

each summed over the listed parameter arrays, in float64.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError
from ..inputs import NUMERIC_KINDS, as_array
from .config import RegularizerConfig

__all__ = ["regularizer_value", "regularizer_grad"]


def _param(params, key: str, regularizer: str) -> np.ndarray:
    if params is not None and not isinstance(params, Mapping):
        raise InvalidTypeError(f"`params` must be a mapping of name -> array (regularizer "
                               f"{regularizer!r} reads {key!r}); got {type(params).__name__}.")
    if params is None or key not in params:
        given = sorted(params) if params else []
        raise InvalidArgumentError(
            f"regularizer {regularizer!r} needs the parameter array {key!r}: pass it in the "
            f"`params` mapping of the call (given: {given or 'none'}).")
    return as_array(params[key], f"params[{key!r}]").astype(np.float64, copy=False)


def regularizer_value(config: RegularizerConfig, params) -> float:
    """The whole regularization term (scales included) over ``config.params``."""
    sums = _abs_and_square_sums or _load_sums()
    total = 0.0
    plain = type(params) is dict
    for key in config.params:
        w = params.get(key, _MISSING) if plain else _MISSING
        if type(w) is not _ndarray or w.ndim == 0 or w.dtype.kind not in NUMERIC_KINDS:
            w = _param(params, key, config.name)  # raises the errors; converts lists, scalars
        # (an ndarray of a real dtype: `as_array` returns it as it is, so `_param` would too)
        if w.dtype is not _FLOAT32 and w.dtype is not _FLOAT64:  # (other dtypes, byte orders)
            w = w.astype(_FLOAT64)
        l1, l2 = sums(w.reshape(-1))  # a view where w is contiguous (the kernel only reads)
        if config.scale_l1:
            total += config.scale_l1 * l1
        if config.scale_l2:
            total += config.scale_l2 * 0.5 * l2
    return total


def _load_sums():
    """``abs_and_square_sums`` of ``lossforge/kernels/regularizer_sums.py``, loaded on first use
    (lossforge.kernels imports numba, which ``import lossforge`` does not)."""
    global _abs_and_square_sums
    from ..kernels import cached_copy
    _abs_and_square_sums = cached_copy("regularizer_sums.py").abs_and_square_sums
    return _abs_and_square_sums


_abs_and_square_sums = None
_MISSING = object()
_ndarray = np.ndarray
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)


def regularizer_grad(config: RegularizerConfig, params) -> dict[str, np.ndarray]:
    """The gradient of `regularizer_value` in each listed parameter array."""
    grads = {}
    for key in config.params:
        w = _param(params, key, config.name)
        g = config.scale_l1 * np.sign(w) + config.scale_l2 * w
        grads[key] = grads.get(key, 0.0) + g
    return grads
