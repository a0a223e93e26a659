"""The peers lossforge is timed against: NumPy, PyTorch CPU, JAX jit CPU and TensorFlow CPU.

Each peer computes every loss with TF-v1 semantics (weights 1, the loss's default reduction)
the way a user of that library would: TensorFlow through ``tf.compat.v1.losses`` inside a
``tf.function``; PyTorch through ``torch.nn.functional`` where it has the loss (``l1_loss``,
``mse_loss``, ``huber_loss``, ``binary_cross_entropy`` for log_loss -- no epsilon, which moves
the value by ~1e-7 on these inputs --, ``binary_cross_entropy_with_logits``,
``cross_entropy``, ``poisson_nll_loss``, ``kl_div``, ``smooth_l1_loss``) and tensor
expressions otherwise; NumPy and JAX (under ``jax.jit``) through the same array-API formulas
(`XP_FORMULAS`). A peer that is not installed is skipped with a note.

A formula takes the case's arrays in order (``labels, predictions``; ``losses`` for
compute_weighted_loss) and returns a scalar of that library.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

ORDER = ("numpy", "torch", "jax", "tensorflow")
ALIASES = {"np": "numpy", "pytorch": "torch", "tf": "tensorflow", "jax-jit": "jax"}
LABELS = {"numpy": "NumPy", "torch": "PyTorch", "jax": "JAX-jit", "tensorflow": "TF"}
INSTALL = "pip install -e '.[bench]'"

EPS = 1e-7  # log_loss's and poisson's default epsilon

#: A peer agrees with lossforge when their values differ by at most this, relatively. Peers
#: reduce float32 in float32 (pairwise or tree sums), lossforge in float64: at 16M elements they
#: were seen to differ by <= 3e-7. 1e-5 (~80 float32 ulps) leaves room for summation order and
#: catches any real difference of formula or semantics.
RTOL = 1e-5


# --- array-API formulas (NumPy, jax.numpy, tf.experimental.numpy) --------------------------------

def _huber(xp, y, p, delta=1.0):
    a = xp.abs(p - y)
    q = xp.minimum(a, delta)
    return xp.mean(0.5 * q * q + delta * (a - q))


def _logsumexp_rows(xp, x):
    m = xp.max(x, axis=1, keepdims=True)
    return xp.log(xp.sum(xp.exp(x - m), axis=1)) + m[:, 0]


def _softmax_ce(xp, z, x):
    return xp.mean(_logsumexp_rows(xp, x) - xp.sum(z * x, axis=1))


def _sparse_softmax_ce(xp, labels, x):
    picked = xp.take_along_axis(x, labels[:, None], axis=1)[:, 0]
    return xp.mean(_logsumexp_rows(xp, x) - picked)


def _pairwise(xp, y, p):
    d = p - y
    n = d.shape[1]
    ss = xp.sum(d * d, axis=1)
    s = xp.sum(d, axis=1)
    return xp.sum(2.0 * ss / (n - 1) - 2.0 * s * s / (n * (n - 1)))


def _softplus_neg_abs(xp, x):  # log1p(exp(-|x|))
    return xp.log1p(xp.exp(-xp.abs(x)))


def _focal(xp, z, x, gamma=2.0, alpha=0.25):
    p = 1.0 / (1.0 + xp.exp(-x))
    ce = xp.maximum(x, 0) - x * z + _softplus_neg_abs(xp, x)
    p_t = p * z + (1.0 - p) * (1.0 - z)
    a_t = alpha * z + (1.0 - alpha) * (1.0 - z)
    return xp.mean(a_t * ce * xp.square(1.0 - p_t))


def _log_cosh(xp, y, p):
    a = xp.abs(p - y)
    return xp.mean(a + xp.log1p(xp.exp(-2.0 * a)) - 0.6931471805599453)


def _smooth_l1(xp, y, p, beta=1.0):
    a = xp.abs(p - y)
    return xp.mean(xp.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta))


XP_FORMULAS: dict[str, Callable] = {
    "absolute_difference": lambda xp, y, p: xp.mean(xp.abs(p - y)),
    "mean_squared_error": lambda xp, y, p: xp.mean(xp.square(p - y)),
    "huber_loss": _huber,
    "log_loss": lambda xp, y, p: xp.mean(-y * xp.log(p + EPS) - (1.0 - y) * xp.log(1.0 - p + EPS)),
    "hinge_loss": lambda xp, y, x: xp.mean(xp.maximum(1.0 - (2.0 * y - 1.0) * x, 0)),
    "sigmoid_cross_entropy": lambda xp, z, x: xp.mean(xp.maximum(x, 0) - x * z
                                                      + _softplus_neg_abs(xp, x)),
    "softmax_cross_entropy": _softmax_ce,
    "sparse_softmax_cross_entropy": _sparse_softmax_ce,
    "cosine_distance": lambda xp, y, p: xp.mean(1.0 - xp.sum(y * p, axis=1)),
    "mean_pairwise_squared_error": _pairwise,
    "compute_weighted_loss": lambda xp, losses: xp.mean(losses),
    # registry extras
    "log_cosh": _log_cosh,
    "poisson": lambda xp, y, p: xp.mean(p - y * xp.log(p + EPS)),
    "kl_divergence": lambda xp, y, p: xp.mean(y * (xp.log(y) - xp.log(p))),
    "focal": _focal,
    "smooth_l1": _smooth_l1,
    "squared_hinge": lambda xp, y, x: xp.mean(xp.square(xp.maximum(1.0 - (2.0 * y - 1.0) * x, 0))),
    "binary_cross_entropy": lambda xp, y, p: xp.mean(-(y * xp.log(p) + (1.0 - y) * xp.log(1.0 - p))),
}

#: Elementwise formulas TF's array API runs for the losses tf.compat.v1.losses does not have.
_TF_XP = ("log_cosh", "poisson", "kl_divergence", "focal", "smooth_l1", "squared_hinge",
          "binary_cross_entropy")


def _bind(xp, formulas=XP_FORMULAS, names=None):
    names = formulas if names is None else names
    return {name: (lambda f: lambda *a: f(xp, *a))(formulas[name]) for name in names}


# --- peers ---------------------------------------------------------------------------------------

@dataclass
class Peer:
    """One peer library: how to convert inputs, compile a formula, wait for and read a result."""

    name: str
    version: str
    formulas: dict[str, Callable]
    convert: Callable = lambda a: a
    compile: Callable = lambda fn: fn
    sync: Callable = lambda r: r
    l1: Callable | None = None      # sum(|w|) of a parameter array
    sq: Callable | None = None      # sum(w * w)
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    def value(self, result) -> float:
        return float(result[0] if isinstance(result, tuple) else result)


def _numpy() -> Peer:
    return Peer("numpy", np.__version__, _bind(np), l1=lambda w: np.sum(np.abs(w)),
                sq=lambda w: np.sum(w * w))


def _torch() -> Peer:
    import torch
    import torch.nn.functional as F
    torch.set_grad_enabled(False)  # forward values only, as the other peers

    def pairwise(y, p):
        d = p - y
        n = d.shape[1]
        return (2.0 * (d * d).sum(1) / (n - 1) - 2.0 * d.sum(1) ** 2 / (n * (n - 1))).sum()

    def focal(z, x, gamma=2.0, alpha=0.25):  # torchvision.ops.sigmoid_focal_loss, mean
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, z, reduction="none")
        p_t = p * z + (1 - p) * (1 - z)
        return ((alpha * z + (1 - alpha) * (1 - z)) * ce * (1 - p_t) ** 2).mean()

    formulas = {
        "absolute_difference": lambda y, p: F.l1_loss(p, y),
        "mean_squared_error": lambda y, p: F.mse_loss(p, y),
        "huber_loss": lambda y, p: F.huber_loss(p, y, delta=1.0),
        "log_loss": lambda y, p: F.binary_cross_entropy(p, y),
        "hinge_loss": lambda y, x: torch.relu(1 - (2 * y - 1) * x).mean(),
        "sigmoid_cross_entropy": lambda z, x: F.binary_cross_entropy_with_logits(x, z),
        "softmax_cross_entropy": lambda z, x: F.cross_entropy(x, z),
        "sparse_softmax_cross_entropy": lambda labels, x: F.cross_entropy(x, labels),
        "cosine_distance": lambda y, p: (1 - (y * p).sum(1)).mean(),
        "mean_pairwise_squared_error": pairwise,
        "compute_weighted_loss": lambda losses: losses.mean(),
        "log_cosh": lambda y, p: (F.softplus(-2 * (p - y)) + (p - y) - 0.6931471805599453).mean(),
        "poisson": lambda y, p: F.poisson_nll_loss(p, y, log_input=False, full=False, eps=EPS),
        "kl_divergence": lambda y, p: F.kl_div(torch.log(p), y, reduction="mean"),
        "focal": focal,
        "smooth_l1": lambda y, p: F.smooth_l1_loss(p, y, beta=1.0),
        "squared_hinge": lambda y, x: (torch.relu(1 - (2 * y - 1) * x) ** 2).mean(),
        "binary_cross_entropy": lambda y, p: F.binary_cross_entropy(p, y),
    }
    return Peer("torch", torch.__version__, formulas, convert=torch.from_numpy,
                l1=lambda w: w.abs().sum(), sq=lambda w: (w * w).sum(),
                notes=[f"{torch.get_num_threads()} threads"])


def _jax() -> Peer:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    return Peer("jax", jax.__version__, _bind(jnp), convert=jnp.asarray, compile=jax.jit,
                sync=lambda r: r.block_until_ready(), l1=lambda w: jnp.sum(jnp.abs(w)),
                sq=lambda w: jnp.sum(w * w), notes=[f"devices {jax.devices()}"])


def _tensorflow() -> Peer:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    v1 = tf.compat.v1.losses
    formulas = {
        "absolute_difference": v1.absolute_difference,
        "mean_squared_error": v1.mean_squared_error,
        "huber_loss": v1.huber_loss,
        "log_loss": v1.log_loss,
        "hinge_loss": v1.hinge_loss,
        "sigmoid_cross_entropy": v1.sigmoid_cross_entropy,
        "softmax_cross_entropy": v1.softmax_cross_entropy,
        "sparse_softmax_cross_entropy": v1.sparse_softmax_cross_entropy,
        "cosine_distance": lambda y, p: v1.cosine_distance(y, p, axis=1),
        "mean_pairwise_squared_error": v1.mean_pairwise_squared_error,
        "compute_weighted_loss": v1.compute_weighted_loss,
    }
    formulas.update(_bind(tf.experimental.numpy, names=_TF_XP))
    return Peer("tensorflow", tf.__version__, formulas, convert=tf.convert_to_tensor,
                compile=tf.function, l1=lambda w: tf.reduce_sum(tf.abs(w)),
                sq=lambda w: 2.0 * tf.nn.l2_loss(w))


_LOADERS = {"numpy": _numpy, "torch": _torch, "jax": _jax, "tensorflow": _tensorflow}
_MODULES = {"numpy": "numpy", "torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}


def canonical(name: str) -> str:
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    if name not in _LOADERS:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(ORDER)} (or 'all', 'none')")
    return name


def load(names) -> tuple[list[Peer], dict[str, str]]:
    """``(peers that loaded, {name: why it was skipped})`` for the peer ``names``, in `ORDER`."""
    peers, skipped = [], {}
    for name in [n for n in ORDER if n in set(names)]:
        if importlib.util.find_spec(_MODULES[name]) is None:
            skipped[name] = f"not installed ({INSTALL})"
            continue
        try:
            peers.append(_LOADERS[name]())
        except Exception as exc:  # a broken peer install must not stop the suite
            skipped[name] = f"failed to load: {type(exc).__name__}: {exc}"
    return peers, skipped


def objective_formula(peer: Peer, objective) -> tuple[Callable | None, str]:
    """``(fn(*arrays), "")`` computing ``objective``'s total with ``peer``, or ``(None, why)``.

    The arrays are the objective's batch keys (sorted) then its regularized params (in config
    order). Terms must use default parameters and reductions, no weights input, static
    weighting; regularizers l1/l2/l1_l2.
    """
    config = objective.config
    if config.weighting.strategy != "static":
        return None, f"weighting {config.weighting.strategy!r} is lossforge-only"
    terms = []
    for term in config.terms:
        spec_name = objective._specs[term.name].name
        if term.params or term.reduction is not None or "weights" in term.inputs:
            return None, f"term {term.name!r} has parameters/reduction/weights"
        if spec_name not in peer.formulas:
            return None, f"no {peer.name} formula for {spec_name}"
        spec = objective._specs[term.name]
        terms.append((term.weight, peer.formulas[spec_name],
                      [term.inputs[spec.inputs[0]], term.inputs[spec.inputs[1]]]))
    keys = list(objective.batch_keys)
    params = [k for reg in config.regularizers for k in reg.params]
    position = {k: i for i, k in enumerate(keys + list(dict.fromkeys(params)))}
    regs = [(reg.scale_l1, reg.scale_l2, list(reg.params)) for reg in config.regularizers]

    def total(*arrays):
        out = 0.0
        for weight, fn, (a, b) in terms:
            out = out + weight * fn(arrays[position[a]], arrays[position[b]])
        for l1, l2, names in regs:
            for k in names:
                w = arrays[position[k]]
                if l1:
                    out = out + l1 * peer.l1(w)
                if l2:
                    out = out + 0.5 * l2 * peer.sq(w)
        return out

    return total, ""
