"""A table of every loss function of `lossforge.losses` with inputs and its float64 reference.

Tests parametrise over `CASES`, so a new loss is covered once it has a row here.
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import lossforge
import reference as ref

L = lossforge.losses


@dataclass
class Case:
    id: str
    call: Callable          # call(inputs, **kw) -> lossforge result
    expected: Callable      # expected(inputs) -> float64 unweighted losses (loss shape)
    make: Callable          # make(rng, dtype) -> tuple of input arrays
    reductions: bool = True
    extra: dict = field(default_factory=dict)


def _pair(rng, dtype, shape=(4, 3)):
    return rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)


def _prob(rng, dtype, shape=(4, 3)):
    return ((rng.random(shape) > 0.5).astype(dtype),
            rng.uniform(0.02, 0.98, size=shape).astype(dtype))


def _onehot(rng, dtype, shape=(4, 5)):
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    return np.eye(shape[-1], dtype=dtype)[labels], (3 * rng.normal(size=shape)).astype(dtype)


def _sparse(rng, dtype, shape=(4, 5)):
    return rng.integers(0, shape[-1], size=shape[:-1]), (3 * rng.normal(size=shape)).astype(dtype)


def _unit(rng, dtype, shape=(4, 3), axis=1):
    a, b = rng.normal(size=shape), rng.normal(size=shape)
    a /= np.linalg.norm(a, axis=axis, keepdims=True)
    b /= np.linalg.norm(b, axis=axis, keepdims=True)
    return a.astype(dtype), b.astype(dtype)


CASES = [
    Case("absolute_difference", lambda i, **k: L.absolute_difference(*i, **k),
         lambda i: ref.absolute_difference(*i), _pair),
    Case("mean_squared_error", lambda i, **k: L.mean_squared_error(*i, **k),
         lambda i: ref.mean_squared_error(*i), _pair),
    Case("huber_loss", lambda i, **k: L.huber_loss(*i, delta=0.7, **k),
         lambda i: ref.huber_loss(*i, delta=0.7), _pair),
    Case("log_loss", lambda i, **k: L.log_loss(*i, **k), lambda i: ref.log_loss(*i), _prob),
    Case("hinge_loss", lambda i, **k: L.hinge_loss(i[0], i[1], **k),
         lambda i: ref.hinge_loss(*i), lambda rng, dt: (_prob(rng, dt)[0], _pair(rng, dt)[1])),
    Case("sigmoid_cross_entropy", lambda i, **k: L.sigmoid_cross_entropy(*i, **k),
         lambda i: ref.sigmoid_cross_entropy(*i), _prob),
    Case("sigmoid_cross_entropy_smoothed",
         lambda i, **k: L.sigmoid_cross_entropy(*i, label_smoothing=0.2, **k),
         lambda i: ref.sigmoid_cross_entropy(*i, label_smoothing=0.2), _prob),
    Case("softmax_cross_entropy", lambda i, **k: L.softmax_cross_entropy(*i, **k),
         lambda i: ref.softmax_cross_entropy(*i), _onehot),
    Case("softmax_cross_entropy_smoothed",
         lambda i, **k: L.softmax_cross_entropy(*i, label_smoothing=0.1, **k),
         lambda i: ref.softmax_cross_entropy(*i, label_smoothing=0.1), _onehot),
    Case("sparse_softmax_cross_entropy", lambda i, **k: L.sparse_softmax_cross_entropy(*i, **k),
         lambda i: ref.sparse_softmax_cross_entropy(*i), _sparse),
    Case("cosine_distance_axis1", lambda i, **k: L.cosine_distance(*i, axis=1, **k),
         lambda i: ref.cosine_distance(*i, axis=1), _unit),
    Case("cosine_distance_axis0", lambda i, **k: L.cosine_distance(*i, axis=0, **k),
         lambda i: ref.cosine_distance(*i, axis=0), lambda rng, dt: _unit(rng, dt, axis=0)),
    Case("compute_weighted_loss", lambda i, **k: L.compute_weighted_loss(i[0], **k),
         lambda i: ref.f64(i[0]), lambda rng, dt: (np.abs(rng.normal(size=(4, 3))).astype(dt),)),
]
CASE_IDS = [c.id for c in CASES]

REDUCTIONS = [r for r in lossforge.Reduction.all()]


def weight_kinds(loss_shape, rng, dtype=np.float32):
    """Every kind of weights valid for ``loss_shape``: name -> array (rounded to ``dtype``)."""
    kinds = {"scalar_one": np.float64(1.0), "scalar": np.float64(2.5), "scalar_zero": np.float64(0.0),
             "scalar_negative": np.float64(-1.5)}
    if loss_shape:
        full = rng.uniform(-1, 3, size=loss_shape)
        full.flat[::3] = 0.0
        kinds["per_element"] = full
        kinds["all_zero"] = np.zeros(loss_shape)
        kinds["negative"] = -np.abs(rng.uniform(0.5, 2, size=loss_shape))
        if len(loss_shape) > 1:
            per_sample = rng.uniform(0.5, 2, size=loss_shape[:1] + (1,) * (len(loss_shape) - 1))
            per_sample.flat[0] = 0.0
            kinds["per_sample"] = per_sample
            kinds["per_feature"] = rng.uniform(0.5, 2, size=(1,) + loss_shape[1:])
    return {k: np.asarray(v).astype(dtype).astype(np.float64) if np.ndim(v) else v
            for k, v in kinds.items()}


def gradient_weights(kind, loss_shape, rng):
    """Weights of ``kind`` (scalar, per_sample, per_element) for gradient tests."""
    if kind == "scalar":
        return 1.7
    if kind == "per_sample":
        w = rng.uniform(0.5, 2.0, size=loss_shape[:1] + (1,) * (len(loss_shape) - 1))
        w.flat[0] = 0.0
        return w
    w = rng.uniform(-1.0, 2.0, size=loss_shape)
    w.flat[::3] = 0.0
    return w
