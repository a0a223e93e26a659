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
    total = 0.0
    plain = type(params) is dict
    for key in config.params:
        w = params.get(key, _MISSING) if plain else _MISSING
        if type(w) is not _ndarray or w.ndim == 0 or w.dtype.kind not in NUMERIC_KINDS:
            w = _param(params, key, config.name)  # raises the errors; converts lists, scalars
        # (an ndarray of a real dtype: `as_array` returns it as it is, so `_param` would too)
        x = w.astype(_FLOAT64, copy=False)
        # np.add.reduce(a, None) is what ndarray.sum() runs, less its Python wrapper; the
        # square is taken in place where astype made a copy (never in the caller's array): the
        # same products, one allocation less. ~2 us of a small objective call with two params.
        if config.scale_l1:
            total += config.scale_l1 * float(_sum(_absolute(x), None))
        if config.scale_l2:
            square = x * x if x is w else _multiply(x, x, out=x)
            total += config.scale_l2 * 0.5 * float(_sum(square, None))
    return total


_MISSING = object()
_ndarray = np.ndarray
_FLOAT64 = np.dtype(np.float64)
_sum = np.add.reduce
_absolute = np.absolute
_multiply = np.multiply


def regularizer_grad(config: RegularizerConfig, params) -> dict[str, np.ndarray]:
    """The gradient of `regularizer_value` in each listed parameter array."""
    grads = {}
    for key in config.params:
        w = _param(params, key, config.name)
        g = config.scale_l1 * np.sign(w) + config.scale_l2 * w
        grads[key] = grads.get(key, 0.0) + g
    return grads
