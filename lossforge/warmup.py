"""Opt-in background warm-up: load numba and the cached kernels while your program starts.

A fresh process pays ~0.35-0.45 s of numba import and start-up at its first loss call, however
warm the kernel cache (see ../shared/reference/numba-cuda.md). `warm_up` moves that work to a
daemon thread started early, so it overlaps the caller's own start-up (reading data, building a
model); the first loss call then only waits for whatever is left. Setting
``LOSSFORGE_WARMUP=1`` (every TensorFlow loss) or ``LOSSFORGE_WARMUP=log_loss,mean_squared_error``
before ``import lossforge`` starts it at import.

    >>> import lossforge
    >>> thread = lossforge.warm_up(["log_loss"])   # returns at once
    >>> # ... load data, build the model ...
    >>> thread.join()                              # optional: the first call waits anyway
"""
from __future__ import annotations

import os
import threading

import numpy as np

__all__ = ["warm_up", "TF_LOSSES"]

#: The losses of ``tf.compat.v1.losses``, warmed up by default.
TF_LOSSES = ("absolute_difference", "mean_squared_error", "huber_loss", "log_loss", "hinge_loss",
             "cosine_distance", "mean_pairwise_squared_error", "sigmoid_cross_entropy",
             "softmax_cross_entropy", "sparse_softmax_cross_entropy")


def warm_up(losses=None, dtypes=("float32",), background: bool = True):
    """Import numba and load (compiling if absent) the reduced-value kernels of ``losses``.

    Args:
      losses: registered loss names (default `TF_LOSSES`); unknown names raise at once.
      dtypes: input dtypes to load kernels for (each dtype is its own compiled signature).
      background: run in a daemon thread and return it (default), or run now and return None.
    """
    from . import registry
    specs = [registry.get(name) for name in (TF_LOSSES if losses is None else losses)]
    dtypes = [np.dtype(d) for d in dtypes]
    if not background:
        _load(specs, dtypes)
        return None
    thread = threading.Thread(target=_load, args=(specs, dtypes), name="lossforge-warm-up",
                              daemon=True)
    thread.start()
    return thread


def _load(specs, dtypes) -> None:
    rng = np.random.default_rng(0)
    for spec in specs:
        labels, predictions, kwargs = spec.example_inputs(rng, 4, 3)
        for dtype in dtypes:
            labels_d = labels if np.asarray(labels).dtype.kind in "iu" else \
                np.asarray(labels, dtype)
            spec(labels_d, np.asarray(predictions, dtype), **kwargs)


def _from_environment() -> None:
    """Start `warm_up` if ``$LOSSFORGE_WARMUP`` asks for it (called at ``import lossforge``)."""
    value = os.environ.get("LOSSFORGE_WARMUP", "").strip()
    if value and value.lower() not in ("0", "false", "no", "off"):
        names = None if value.lower() in ("1", "true", "yes", "on", "all") else \
            [name.strip() for name in value.split(",") if name.strip()]
        warm_up(names)
