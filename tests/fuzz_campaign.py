"""The hardening fuzz campaign (issue 7): every public entry point under hostile input.

Run by tests/test_fuzz.py in a subprocess, so a crash (segfault, abort) fails that test
instead of killing pytest::

    python tests/fuzz_campaign.py --examples 5000 --seed 0 --report report.json

Each *target* (one public entry point: a `lossforge.losses` function, a `lossforge.nn`
function, a compat function, a registered loss's ``__call__`` / ``value_and_grad``,
`load_objective` on generated YAML, an `Objective`'s calls) is a hypothesis test that draws
arguments of every kind lossforge can be handed -- ranks 0-4 with empty and size-1 dims, every
numpy dtype, NaN/inf/huge/denormal values, strided/reversed/Fortran/read-only/broadcast/
memory-mapped arrays, lists, tuples and scalars, weights of every shape, invalid reductions and
parameters, sparse labels out of range -- and checks the contract on every example:

* the call returns, or raises a `lossforge.LossforgeError` that is a ValueError or TypeError
  whose message names (as a word) one of the arguments the *independent reference* found
  invalid -- never another exception;
* the reference (below, written from ../shared/reference/tf-semantics.md and lossforge's
  documented choices, float64 NumPy) decides validity on its own: an input it finds valid must
  not be rejected, one it finds invalid must not be accepted;
* the caller's arrays, lists and memory-mapped files are bit-identical afterwards;
* a returned value has the documented dtype and shape and matches the reference: NaN exactly
  where the reference is NaN, the same infinities, finite values within float64 accumulation
  error plus the output dtype's rounding.

The report (JSON) lists per target the examples run and the failures (hypothesis' shrunk
falsifying example and the traceback). The process exits 0 even when targets fail: the
report says what failed; a crash shows up as a non-zero exit status without a report.
"""
from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import pickle
import re
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass

import numpy as np
import yaml
from hypothesis import HealthCheck, Phase, given, seed as hseed, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import lossforge  # noqa: E402
from lossforge import LossforgeError, Reduction, registry  # noqa: E402
from lossforge.builtins import WEIGHTED_INPUT  # noqa: E402
from lossforge.compat import contrib, slim  # noqa: E402

F64, F32, F16 = np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16)
L = lossforge.losses
nn = lossforge.nn


class Invalid(Exception):
    """The reference's verdict: the arguments named in ``names`` are invalid."""

    def __init__(self, names):
        super().__init__(", ".join(sorted(names)))
        self.names = set(names)


class ContractViolation(AssertionError):
    pass


# =================================================================================================
# hostile values
# =================================================================================================

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 3.4e38, -3.4e38, 65504.0,
                     1e-310, 5e-324, 1e-40, 1e-45, 1e4, -1e4, 1e-7, 1.0, -1.0, 2.0 ** 24 + 1,
                     1e20, -1e20, 0.5])
VALID_DTYPES = [np.float64, np.float32, np.float16, np.longdouble, np.int8, np.int16, np.int32,
                np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]
INVALID_DTYPES = [np.complex64, np.complex128, np.clongdouble, object, "U6", "S6", "M8[s]", "m8[ms]",
                  "V8", [("a", "f8")]]
LAYOUTS = ["c", "c", "c", "f", "strided", "reversed", "readonly", "broadcast", "memmap_r",
           "memmap_rw", "list", "tuple", "scalar"]


@dataclass
class Ctx:
    """Per-example drawing helpers: a numpy RNG seeded by hypothesis, temporary files."""

    data: object
    rng: np.random.Generator
    tmp: str
    files: list

    def draw(self, strategy, label=None):
        return self.data.draw(strategy, label=label)

    def choice(self, options, label=None):
        return self.draw(st.sampled_from(options), label)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


def values(ctx: Ctx, shape, kind: str = "real", special: float | None = None) -> np.ndarray:
    """float64 values of ``kind`` ('real', 'prob', 'binary', 'positive', 'unit'); with probability
    ``special`` per example, some entries are replaced by NaN/inf/huge/denormal specials."""
    rng = ctx.rng
    n = math.prod(shape)
    if kind == "prob":
        v = rng.uniform(0.0, 1.0, n)
        v[rng.random(n) < 0.15] = 0.0
        v[rng.random(n) < 0.15] = 1.0
    elif kind == "binary":
        v = (rng.random(n) < 0.5).astype(np.float64)
    elif kind == "positive":
        v = rng.exponential(2.0, n)
        v[rng.random(n) < 0.1] = 0.0
    else:
        v = rng.normal(0.0, rng.choice([1.0, 1.0, 5.0, 100.0, 1e-3]), n)
        v[rng.random(n) < 0.05] = 0.0
    special = 0.25 if special is None else special
    if n and rng.random() < special:
        where = rng.random(n) < rng.choice([0.1, 0.3, 1.0])
        v[where] = rng.choice(SPECIALS, size=int(where.sum()))
    return v.reshape(shape)


def cast(v: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype is object:
            return np.asarray(v).astype(object)
        return np.asarray(v).astype(dtype)


def pick_dtype(ctx: Ctx, preferred=(np.float64, np.float32), invalid: float = 0.04):
    if ctx.chance(invalid):
        return ctx.choice(INVALID_DTYPES, "invalid dtype")
    if ctx.chance(0.25):
        return ctx.choice(VALID_DTYPES, "dtype")
    return ctx.choice(list(preferred), "dtype")


def layout(ctx: Ctx, a: np.ndarray, label: str = "layout"):
    """The same kind of data in a hostile container: memory order, views, files, lists, scalars."""
    how = ctx.choice(LAYOUTS, label)
    a = np.asarray(a)
    if how == "f":
        return np.asfortranarray(a)
    if how == "strided":
        big = np.repeat(a[..., None], 2, axis=-1) if a.ndim else np.repeat(a[None], 2)
        return big[..., 0] if a.ndim else big[0]
    if how == "reversed" and a.ndim:
        return np.flip(np.flip(a, axis=0).copy(), axis=0)
    if how == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if how == "broadcast" and a.ndim and a.shape[0] > 1:
        return np.broadcast_to(a[:1], a.shape)  # a stride-0, read-only view
    if how in ("memmap_r", "memmap_rw") and a.size and a.dtype.kind in "biufc":
        path = os.path.join(ctx.tmp, f"m{len(ctx.files)}.bin")
        ctx.files.append(path)
        m = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
        m[...] = a
        m.flush()
        del m
        return np.memmap(path, dtype=a.dtype, mode="r" if how == "memmap_r" else "r+",
                         shape=a.shape)
    if how == "list" and a.dtype.kind not in "MmV":
        return a.tolist()
    if how == "tuple" and a.ndim and a.dtype.kind not in "MmV":
        return tuple(a.tolist())
    if how == "scalar" and a.ndim == 0:
        return a.item() if ctx.chance(0.5) and a.dtype.kind not in "MmV" else a[()]
    return a


def hostile(ctx: Ctx, shape, kind="real", dtypes=(np.float64, np.float32), invalid=0.04,
            label="x", none=0.01):
    """An argument: values of ``kind`` in a drawn dtype and container (rarely None)."""
    if ctx.chance(none):
        return None
    dtype = pick_dtype(ctx, dtypes, invalid)
    return layout(ctx, cast(values(ctx, shape, kind), dtype), label + " layout")


def draw_shape(ctx: Ctx, min_rank=0, max_rank=4, label="shape"):
    rank = ctx.draw(st.integers(min_rank, max_rank), label + " rank")
    return tuple(ctx.draw(st.sampled_from([0, 1, 1, 2, 3, 3, 4, 5]), f"{label} dim")
                 for _ in range(rank))


def mutate_shape(ctx: Ctx, shape):
    """A different shape: one more or one fewer dim, or one dim changed."""
    how = ctx.choice(["add", "drop", "change"], "shape mutation")
    if how == "add":
        return shape + (ctx.choice([1, 2, 3]),)
    if how == "drop" and shape:
        return shape[:-1]
    if shape:
        i = ctx.draw(st.integers(0, len(shape) - 1))
        return shape[:i] + (shape[i] + ctx.choice([1, 2]),) + shape[i + 1:]
    return (2,)


def draw_weights(ctx: Ctx, loss_shape, invalid=0.1):
    """Weights valid for ``loss_shape`` by TF's rule most of the time; sometimes of another rank,
    a mismatched dim, a prefix (contrib's rule), None, or of a non-numeric dtype."""
    r = ctx.rng.random()
    if r < 0.35:  # a scalar
        v = ctx.choice([1.0, 1.0, 2.5, 0.0, -1.5, np.nan, np.inf, 1e-45, 1e300, 3, True, 0],
                       "scalar weight")
        return ctx.choice([lambda: v, lambda: np.float32(v), lambda: np.asarray(v),
                           lambda: np.asarray([v]) if loss_shape else v], "scalar form")()
    if r < 0.35 + invalid:
        how = ctx.choice(["rank", "dim", "prefix", "none", "str", "ragged"], "bad weights")
        if how == "none":
            return None
        if how == "str":
            return "heavy"
        if how == "ragged":
            return [[1.0], [1.0, 2.0]]
        shape = (loss_shape[:1] if how == "prefix" and loss_shape
                 else mutate_shape(ctx, tuple(loss_shape)))
        return hostile(ctx, shape, "positive", invalid=0.0, label="weights", none=0.0)
    shape = tuple(d if ctx.chance(0.5) else 1 for d in loss_shape)
    w = values(ctx, shape, "positive", special=0.15)
    if ctx.chance(0.15):
        w = -w
    if ctx.chance(0.1) and w.size:
        w.flat[0] = -w.flat[1:].sum() if w.size > 1 else 0.0  # weights summing to zero
    return layout(ctx, cast(w, pick_dtype(ctx, (np.float64, np.float32), invalid=0.02)),
                  "weights layout")


REDUCTION_VALUES = list(Reduction.all()) + [r.value for r in Reduction.all()]
BAD_REDUCTIONS = [None, "mean", "WEIGHTED_SUM", "sum", 3, 0, [], {}, b"weighted_sum", 1.5,
                  "weighted_sum ", "None"]


def draw_reduction(ctx: Ctx, allow_default=False):
    if ctx.chance(0.05):
        return ctx.choice(BAD_REDUCTIONS, "bad reduction")
    options = REDUCTION_VALUES + ([None] * 4 if allow_default else [])
    value = ctx.choice(options, "reduction")
    if isinstance(value, str) and ctx.chance(0.2):
        return np.str_(value)
    return value


GOOD_PARAMS = [0.0, 1.0, 0.5, 2.0, 1e-7, 0.1, 1.0, 3, np.float32(0.25), np.float64(1.5),
               np.asarray(0.3), -0.5, 1e4]
BAD_PARAMS = ["1.5", b"1", True, np.bool_(False), None, np.ones(2), np.ones(1), 1j, [], 10 ** 400,
              np.nan, np.inf, -np.inf, -1e300]


def draw_param(ctx: Ctx, label):
    if ctx.chance(0.1):
        return ctx.choice(BAD_PARAMS, label + " (hostile)")
    return ctx.choice(GOOD_PARAMS, label)


# =================================================================================================
# the reference: validity and values, from the documented semantics
# =================================================================================================

def ref_array(obj, name, problems, kinds="biuf"):
    """``np.asarray(obj)`` if it is a real numeric array, else ``name`` is a problem."""
    if obj is None:
        problems.add(name)
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = np.asarray(obj)
    except Exception:
        problems.add(name)
        return None
    if a.dtype.kind not in kinds:
        problems.add(name)
        return None
    return a


def ref_param(value, name, problems, low=None, high=None):
    """A real scalar parameter (not bool, str, bytes, complex or an array of size != 1 ...)."""
    ok = True
    if value is None or isinstance(value, (bool, np.bool_, str, bytes, complex, np.complexfloating)):
        ok = False
    elif isinstance(value, np.ndarray):
        ok = value.ndim == 0 and value.dtype.kind in "iuf"
    elif not isinstance(value, (numbers.Real, np.integer, np.floating)):
        ok = False
    if ok:
        try:
            v = float(value)
        except (OverflowError, TypeError, ValueError):
            ok = False
    if not ok:
        problems.add(name)
        return None
    if (low is not None and not v >= low) or (high is not None and not v <= high):
        problems.add(name)
        return None
    return v


def ref_reduction(value, problems, allow_default=False):
    if value is None and allow_default:
        return None
    if isinstance(value, Reduction):
        return value
    if isinstance(value, str):
        for r in Reduction:
            if value == r.value:
                return r
    problems.add("reduction")
    return None


def ref_weights_tf(w, loss_shape, problems):
    """TF's assert_broadcastable: scalar, or the same rank with every dim 1 or equal."""
    if w is None or loss_shape is None:
        return
    if w.ndim == 0:
        return
    if w.ndim != len(loss_shape) or any(a not in (1, b) for a, b in zip(w.shape, loss_shape)):
        problems.add("weights")


def out_kernel(*arrays):
    """The documented output dtype (floats promote; ints/bools give float32; long double gives
    float64) and the kernel dtype (float64 for float64 results, float32 otherwise)."""
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    out = np.result_type(*floats) if floats else F32
    if out.itemsize > 8:
        out = F64
    return np.dtype(out), (F64 if out == F64 else F32)


def k64(a, kd, math_dtype=F64):
    """``a`` as the kernel sees it: cast to the kernel dtype, then to the dtype of the math."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(a).astype(kd).astype(math_dtype)


def expected_both(spec, compute, weights_k, reduction, out, kd):
    """The reference of ``compute(math_dtype) -> (losses, mag)`` in float64; for float32 kernels
    also in float32 (TF's own precision, lossforge's ``float32_math``) as the alternative, which
    decides where an overflow in float32 arithmetic may make a value inf or NaN."""
    with np.errstate(all="ignore"):
        losses, mag = compute(F64)
    exp = reduce_expected(losses, mag, weights_k, reduction, out, kd)
    if kd == F32:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            l32, _ = compute(F32)
        exp.alt = reduce_expected(np.asarray(l32, F64), mag, weights_k, reduction, out, kd,
                                  product_dtype=F32)  # L * W in float32 too
    return exp


@dataclass
class Expected:
    """A reference result: ``value`` (float64, NaN/inf as computed), the result's dtype and shape,
    ``err`` an absolute error bound in float64 before rounding to ``dtype``; ``rounding``
    the dtypes the value goes through on its way out (each a rounding); ``grad`` optional."""

    value: np.ndarray
    dtype: np.dtype
    err: np.ndarray
    rounding: tuple = ()
    loose_nan: bool = False   # overflow inside a sum: NaN/inf depend on the order
    alt: "Expected | None" = None  # float32 inputs: the formula evaluated in float32 (TF's way)
    anything: bool = False  # ill-conditioned to the point that any number is right
    partial: bool = False   # NaN entries of ``value`` are not compared (undefined there)


def seq_sum(a: np.ndarray) -> float:
    """The sum in sequential order (what one kernel pass computes), float64."""
    a = np.asarray(a, F64).ravel()
    if a.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        return float(np.add.accumulate(a)[-1])


def reduce_expected(losses, mag, weights, reduction, out, kd, denominator_weights=None,
                    rounding=None, rel=None, product_dtype=F64):
    """TF's reductions of the float64 ``losses`` (shape of the losses) and the (kernel-rounded)
    ``weights``; ``mag`` bounds the magnitude of the terms of each loss, for the error bound
    ``rel * mag``: 1e-10 (formula differences in float64) for float64 kernels; 3e-5 for float32
    kernels, whose element math may be float32 (as TF's: "agree within float32 rounding")."""
    if rel is None:
        rel = 3e-5 if kd == F32 else 1e-10
    losses = np.asarray(losses, F64)
    w = np.broadcast_to(np.asarray(weights, F64), losses.shape)
    dw = w if denominator_weights is None else np.broadcast_to(denominator_weights, losses.shape)
    with np.errstate(all="ignore"):
        wl = (losses.astype(product_dtype) * w.astype(product_dtype)).astype(F64)
        mag = np.maximum(np.abs(np.asarray(mag, F64)), np.abs(losses))  # (terms >= |L|)
        mag = np.where(np.isfinite(mag), mag, 0.0)
        elem_err = (rel * mag + 1e-300) * np.abs(w)
        elem_err = np.where(np.isfinite(elem_err), elem_err, 0.0)
    rounding = (kd, out) if rounding is None else rounding
    if reduction is Reduction.NONE:
        return Expected(wl, out, elem_err, rounding)
    total = seq_sum(wl)
    with np.errstate(all="ignore"):
        abs_sum = float(np.sum(np.abs(wl[np.isfinite(wl)])))
        elem_sum = float(np.sum(elem_err))
    loose = not math.isfinite(abs_sum) and all(np.isfinite(wl.ravel()))
    denom_err = 0.0
    if reduction is Reduction.SUM:
        denom = 1.0
    elif reduction is Reduction.MEAN:
        denom = seq_sum(dw)
        with np.errstate(all="ignore"):  # sum(W) in another order differs by this much
            denom_err = 4 * dw.size * 2.2e-16 * float(np.sum(np.abs(dw[np.isfinite(dw)])))
    elif reduction is Reduction.SUM_OVER_BATCH_SIZE:
        denom = float(losses.size)
    else:
        denom = float(np.count_nonzero(dw))
    if denom_err and abs(denom) <= denom_err:
        # weights cancelling to ~0: sum(W) is 0 in some summation orders (div_no_nan: 0) and a
        # rounding residue in others (a huge value): any number is right to float64 rounding
        return Expected(np.asarray(0.0), out, np.asarray(0.0), (out,), anything=True)
    if denom == 0:
        return Expected(np.asarray(0.0), out, np.asarray(0.0), (out,))
    with np.errstate(all="ignore"):
        value = total / denom
        err = ((1e-12 * abs_sum + elem_sum) / abs(denom) + 4e-16 * abs(value)
               + abs(value) * denom_err / abs(denom)
               if math.isfinite(abs_sum + elem_sum) else 0.0)
    return Expected(np.asarray(value), out, np.asarray(err), (out,), loose)


# --- the losses' formulas (float64, TF's literal forms) -------------------------------------------

def _abs(*xs):
    with np.errstate(all="ignore"):
        return sum(np.abs(x) for x in xs)


def f_absdiff(y, p):
    return np.abs(p - y), _abs(y, p)


def f_mse(y, p):
    d = p - y
    return d * d, _abs(y, p) ** 2


def f_huber(y, p, delta):
    a = np.abs(p - y)
    q = np.minimum(a, delta)
    return 0.5 * q * q + delta * (a - q), (a + abs(delta)) ** 2


def f_log_loss(y, p, epsilon):
    t1 = -y * np.log(p + epsilon)
    t2 = -(1.0 - y) * np.log(1.0 - p + epsilon)
    return t1 + t2, _abs(t1, t2)


def f_hinge(y, x):
    v = 1.0 - (2.0 * y - 1.0) * x
    return np.maximum(0.0, v), 1.0 + _abs((2.0 * y - 1.0) * x)


def _smooth_binary(z, ls):
    return z * (1.0 - ls) + 0.5 * ls if ls > 0 else z


def f_sigmoid(z, x, label_smoothing=0.0):
    z = _smooth_binary(z, label_smoothing)
    v = np.maximum(x, 0.0) - x * z + np.log1p(np.exp(-np.abs(x)))
    return v, 1.0 + _abs(x, x * z)


def f_weighted_input(y, p):
    return p, np.abs(p)


def f_log_cosh(y, p):
    a = np.abs(p - y)
    return a + np.log1p(np.exp(-2.0 * a)) - math.log(2.0), a + 1.0


def f_poisson(y, p, epsilon):
    t = y * np.log(p + epsilon)
    return np.where(y == 0, p, p - t), _abs(p, t)


def f_kl(y, p):
    t = y * (np.log(y) - np.log(p))
    return np.where(y == 0, 0.0 * p, t), _abs(y * np.log(y), y * np.log(p)) + 1.0


def _sigmoid(x):
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))),
                    np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def f_focal(z, x, gamma, alpha):
    p = _sigmoid(x)
    q = p * (1.0 - z) + _sigmoid(-x) * z
    ce = np.maximum(x, 0.0) - x * z + np.log1p(np.exp(-np.abs(x)))
    ce = np.where(np.isnan(x), np.nan, ce)
    at = alpha * z + (1.0 - alpha) * (1.0 - z) if alpha >= 0 else 1.0
    return at * ce * np.power(q, gamma), (1.0 + _abs(x, x * z)) * (1.0 + _abs(at))


def f_smooth_l1(y, p, beta):
    a = np.abs(p - y)
    small = 0.5 * a * a / beta if beta > 0 else a
    return np.where(a < beta, small, a - 0.5 * beta), (a + beta) ** 2 / max(beta, 1.0) + a


def f_squared_hinge(y, x):
    v = np.maximum(0.0, 1.0 - (2.0 * y - 1.0) * x)
    return v * v, (1.0 + _abs((2.0 * y - 1.0) * x)) ** 2


def _clamped_log(v):
    return np.where(v < 0, np.nan, np.maximum(np.log(np.where(v < 0, 1.0, v)), -100.0))


def f_bce(y, p):
    t1, t2 = y * _clamped_log(p), (1.0 - y) * _clamped_log(1.0 - p)
    return -(t1 + t2), _abs(t1, t2)


ELEMENTWISE = {  # name -> (formula, params [(name, default, low, high)], out dtype from)
    "absolute_difference": (f_absdiff, [], "both"),
    "mean_squared_error": (f_mse, [], "both"),
    "huber_loss": (f_huber, [("delta", 1.0, None, None)], "both"),
    "log_loss": (f_log_loss, [("epsilon", 1e-7, None, None)], "both"),
    "hinge_loss": (f_hinge, [], "logits"),
    "sigmoid_cross_entropy": (f_sigmoid, [("label_smoothing", 0.0, None, None)], "logits"),
    "log_cosh": (f_log_cosh, [], "both"),
    "poisson": (f_poisson, [("epsilon", 1e-7, 0.0, None)], "both"),
    "kl_divergence": (f_kl, [], "both"),
    "focal": (f_focal, [("gamma", 2.0, 0.0, None), ("alpha", 0.25, None, 1.0)], "logits"),
    "smooth_l1": (f_smooth_l1, [("beta", 1.0, 0.0, None)], "both"),
    "squared_hinge": (f_squared_hinge, [], "logits"),
    "binary_cross_entropy": (f_bce, [], "both"),
}
INPUT_KINDS = {  # name -> (label kind, prediction kind)
    "absolute_difference": ("real", "real"), "mean_squared_error": ("real", "real"),
    "huber_loss": ("real", "real"), "log_loss": ("binary", "prob"), "hinge_loss": ("binary", "real"),
    "sigmoid_cross_entropy": ("prob", "real"), "log_cosh": ("real", "real"),
    "poisson": ("positive", "positive"), "kl_divergence": ("prob", "prob"),
    "focal": ("binary", "real"), "smooth_l1": ("real", "real"), "squared_hinge": ("binary", "real"),
    "binary_cross_entropy": ("binary", "prob"), "cosine_distance": ("real", "real"),
    "mean_pairwise_squared_error": ("real", "real"),
}


def _log_softmax_parts(x):
    """(m, log(sum(exp(x - m)))) per row of the last axis: the max-shifted form."""
    with np.errstate(all="ignore"):
        m = np.max(x, axis=-1, keepdims=True)
        return m, np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def f_softmax_rows(z, x, label_smoothing=0.0, class_weights=None):
    k = x.shape[-1]
    if k == 0:
        return np.zeros(x.shape[:-1]), np.ones(x.shape[:-1])
    if label_smoothing > 0:
        z = z * (1.0 - label_smoothing) + label_smoothing / k
    m, lse = _log_softmax_parts(x)
    with np.errstate(all="ignore"):
        nll = lse - (x - m)
        if class_weights is None:
            terms = z * nll
        else:
            c = class_weights * z
            terms = np.where(c != 0, c * nll, 0.0)  # a zero coefficient is exactly 0
        mag = np.sum(np.abs(terms), axis=-1) + np.sum(np.abs(z), axis=-1) * (
            np.max(np.abs(np.where(np.isfinite(x), x, 0.0)), axis=-1) + 1.0) * (
            1.0 if class_weights is None else np.max(np.abs(class_weights)) + 1.0)
        return np.sum(terms, axis=-1), mag


def f_sparse_rows(labels, x):
    m, lse = _log_softmax_parts(x)
    with np.errstate(all="ignore"):
        xl = np.take_along_axis(x, labels[..., None].astype(np.int64), axis=-1)
        ml = np.take_along_axis(m, np.zeros_like(labels[..., None], dtype=np.int64), axis=-1)
        v = (lse - (xl - ml))[..., 0]
        mag = np.max(np.abs(np.where(np.isfinite(x), x, 0.0)), axis=-1, initial=0.0) + 1.0
    return v, mag


# --- reference of one registered (or TF-API) loss call -------------------------------------------

def ref_loss(name, labels, predictions, weights, reduction, params, api="registry"):
    """Expected result of loss ``name`` (canonical) called through ``api`` ('registry', 'tf' for
    `lossforge.losses`, 'nn'), or Invalid naming the bad arguments."""
    problems: set = set()
    spec = registry.get(name)
    lname, pname = spec.inputs
    if api == "nn":
        lname, pname = "labels", "logits"
    params = dict(params)

    if name in ELEMENTWISE and not (name == "sigmoid_cross_entropy" and
                                    params.get("pos_weight") is not None):
        formula, pdefs, dtype_from = ELEMENTWISE[name]
        pvals = []
        for pn, default, low, high in pdefs:
            pvals.append(ref_param(params.pop(pn, default), pn, problems, low, high))
        if name == "sigmoid_cross_entropy":
            params.pop("pos_weight", None)
        _no_unknown(params, problems)
        y = ref_array(labels, lname, problems)
        p = ref_array(predictions, pname, problems)
        w = ref_array(weights, "weights", problems)
        if y is not None and p is not None:
            if y.shape != p.shape:
                problems |= {lname, pname}
            else:
                ref_weights_tf(w, y.shape, problems)
        if problems:
            raise Invalid(problems)
        out, kd = out_kernel(p) if dtype_from == "logits" else out_kernel(y, p)
        return expected_both(spec, lambda m: formula(k64(y, kd, m), k64(p, kd, m),
                                                     *[m.type(v) for v in pvals]),
                             k64(w, kd), reduction or spec.reduction, out, kd)

    if name == "sigmoid_cross_entropy":  # with pos_weight (PyTorch's option)
        ls = ref_param(params.pop("label_smoothing", 0.0), "label_smoothing", problems)
        pw_arg = params.pop("pos_weight")
        _no_unknown(params, problems)
        z = ref_array(labels, lname, problems)
        x = ref_array(predictions, pname, problems)
        w = ref_array(weights, "weights", problems)
        pw = ref_array(pw_arg, "pos_weight", problems)
        if z is not None and x is not None:
            if z.shape != x.shape:
                problems |= {lname, pname}
            else:
                ref_weights_tf(w, x.shape, problems)
                if pw is not None:
                    classes = x.shape[-1] if x.shape else 1
                    if pw.ndim > max(x.ndim, 1) or any(d != 1 for d in pw.shape[:-1]) or (
                            pw.ndim and pw.shape[-1] not in (1, classes)):
                        problems.add("pos_weight")
                    else:
                        pw = pw.astype(F64).reshape(-1)
                        if not (np.isfinite(pw).all() and (pw >= 0).all()):
                            problems.add("pos_weight")
        if problems:
            raise Invalid(problems)
        out, kd = out_kernel(x)

        def compute(m):  # (a row-wise formula: numba's float() keeps float32 inputs float32)
            zz, xx = k64(z, kd, m), k64(x, kd, m)
            if ls > 0:
                zz = zz * m.type(1 - ls) + m.type(0.5 * ls)
            pwk = k64(pw, kd, m)
            pwe = (pwk[np.arange(x.size) % pwk.size].reshape(x.shape) if x.size
                   else np.zeros(x.shape, m))
            tail = np.log1p(np.exp(-np.abs(xx)))
            sp_pos = np.maximum(xx, 0.0) + tail
            sp_neg = np.where(xx >= 0, 0.0, -xx) + tail
            sp_pos = np.where(np.isnan(xx), np.nan, sp_pos)
            return ((1.0 - zz) * sp_pos + pwe * zz * sp_neg,
                    (1.0 + np.abs(xx)) * (1.0 + np.abs(zz)) * (1.0 + np.abs(pwe)))
        return expected_both(spec, compute, k64(w, kd), reduction or spec.reduction, out, kd)

    if name == "softmax_cross_entropy":
        ls = ref_param(params.pop("label_smoothing", 0.0), "label_smoothing", problems)
        cw_arg = params.pop("class_weights", None)
        _no_unknown(params, problems)
        z = ref_array(labels, lname, problems)
        x = ref_array(predictions, pname, problems)
        w = ref_array(weights, "weights", problems)
        cw = None
        if cw_arg is not None:
            cw = ref_array(cw_arg, "class_weights", problems)
        if z is not None and x is not None:
            if z.shape != x.shape:
                problems |= {lname, pname}
            elif x.ndim == 0:
                problems.add(pname)
            else:
                ref_weights_tf(w, x.shape[:-1], problems)
                if cw is not None:
                    if cw.shape != (x.shape[-1],) or not np.isfinite(cw.astype(F64)).all():
                        problems.add("class_weights")
        if problems:
            raise Invalid(problems)
        out, kd = out_kernel(x)
        cwk = None if cw is None else cw.astype(F64)
        if cw is not None:
            cwk = k64(cwk, kd)  # packed with the labels in the kernel dtype
        used = spec if cw is None else spec.extended
        return expected_both(used, lambda m: f_softmax_rows(
            k64(z, kd, m), k64(x, kd, m), m.type(ls), None if cwk is None else cwk.astype(m)),
            k64(w, kd), reduction or spec.reduction, out, kd)

    if name == "sparse_softmax_cross_entropy":
        options = {k: params.pop(k, None) for k in ("class_weights", "ignore_index",
                                                     "label_smoothing")}
        _no_unknown(params, problems)
        extended = any(v is not None for v in options.values())
        ls = 0.0
        if options["label_smoothing"] is not None:
            ls = ref_param(options["label_smoothing"], "label_smoothing", problems, 0.0, 1.0)
        ii = options["ignore_index"]
        if ii is not None and (isinstance(ii, (bool, np.bool_)) or
                               not isinstance(ii, (int, np.integer))):
            problems.add("ignore_index")
            ii = None
        lab = ref_array(labels, lname, problems)
        x = ref_array(predictions, pname, problems)
        w = ref_array(weights, "weights", problems)
        cw = None
        if options["class_weights"] is not None:
            cw = ref_array(options["class_weights"], "class_weights", problems)
        if lab is not None and x is not None:
            if api != "nn":  # TF's squeezing of trailing 1s (the nn function does none)
                if x.ndim == lab.ndim and lab.ndim and lab.shape[-1] == 1:
                    lab = lab[..., 0]
                elif x.ndim - lab.ndim == 2 and x.shape[-1] == 1:
                    x = x[..., 0]
            if w is not None and w.ndim - lab.ndim == 1:
                if w.shape[-1] != 1:
                    problems.add("weights")
                else:
                    w = w[..., 0]
            if lab.dtype.kind not in "iu":
                problems.add(lname)
            elif x.ndim == 0 or lab.ndim != x.ndim - 1 or lab.shape != x.shape[:-1]:
                problems |= {lname, pname}
            else:
                k = x.shape[-1]
                with np.errstate(all="ignore"):
                    bad = (lab < 0) | (lab >= k)
                    if ii is not None:
                        bad &= lab != ii
                if bad.any():
                    problems.add(lname)
                if "weights" not in problems:
                    ref_weights_tf(w, lab.shape, problems)
                if cw is not None and (cw.shape != (k,) or not np.isfinite(cw.astype(F64)).all()):
                    problems.add("class_weights")
        if problems:
            raise Invalid(problems)
        out, kd = out_kernel(x)
        xx = k64(x, kd)
        k = x.shape[-1]
        if not extended:
            def compute(m):
                if lab.size and k:
                    return f_sparse_rows(lab, k64(x, kd, m))
                return np.full(lab.shape, np.nan), np.ones(lab.shape)
            return expected_both(spec, compute, k64(w, kd), reduction or spec.reduction, out, kd)
        keep = np.ones(lab.shape, bool) if ii is None else lab != ii
        safe = np.where(keep, lab, 0).astype(np.int64)
        cw64 = np.ones(k) if cw is None else cw.astype(F64)
        w_eff = np.broadcast_to(np.asarray(w, F64), lab.shape)
        if cw is not None or ii is not None:
            if cw is not None and k:
                w_eff = w_eff * cw64[safe]
            w_eff = np.where(keep, w_eff, 0.0)
        def compute(math_dtype):  # (the logits' row math may be float32: numba's float())
            losses = np.zeros(lab.shape)
            mag = np.ones(lab.shape)
            if not (k and lab.size):
                return losses, mag
            xm = k64(x, kd, math_dtype)
            m, lse = _log_softmax_parts(xm)
            nll = (lse - (xm - m)).astype(F64)                       # [..., K]
            nll_t = np.take_along_axis(nll, safe[..., None], axis=-1)[..., 0]
            if ls > 0:
                wt = cw64[safe]
                s = np.sum(np.where(cw64 != 0, cw64 * nll, 0.0), axis=-1)
                v = (1 - ls) * nll_t + (ls / k) * (s / np.where(wt == 0, 1.0, wt))
                v = np.where(wt == 0, 0.0, v)
            else:
                v = nll_t
            losses = np.where(keep, v, 0.0)
            mag = (np.max(np.abs(np.where(np.isfinite(xx), xx, 0.0)), axis=-1) + 1.0) * (
                1.0 + np.sum(np.abs(cw64)) / np.maximum(np.abs(cw64[safe]), 1e-300)
                if ls > 0 else 1.0)
            return losses, mag
        return expected_both(spec.extended, compute, k64(w_eff, kd), reduction or spec.reduction,
                             out, kd)

    if name == "cosine_distance":
        axis, dim = params.pop("axis", None), params.pop("dim", None)
        _no_unknown(params, problems)
        y = ref_array(labels, lname, problems)
        p = ref_array(predictions, pname, problems)
        w = ref_array(weights, "weights", problems)
        axis_name = "axis"
        if dim is not None:
            if axis is not None:
                problems |= {"axis", "dim"}
            axis, axis_name = dim, "dim"
        if axis is None:
            problems.add(axis_name)
        elif isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            problems.add(axis_name)
            axis = None
        elif y is not None and y.ndim and not -y.ndim <= axis < y.ndim:
            problems.add(axis_name)  # (contrib checks `dim` against the labels first)
        if y is not None and p is not None:
            if y.shape != p.shape:
                problems |= {lname, pname}
                if axis is not None and not all(-a.ndim <= axis < a.ndim for a in (y, p)):
                    problems.add(axis_name)  # (which is checked first is lossforge's choice)
            elif y.ndim == 0:
                problems |= {lname, pname}
            elif axis is not None:
                if not -y.ndim <= axis < y.ndim:
                    problems.add(axis_name)
                else:
                    ax = int(axis) % y.ndim
                    ref_weights_tf(w, y.shape[:ax] + (1,) + y.shape[ax + 1:], problems)
        if "dim" in problems and api != "contrib":
            problems.add("axis")  # the core function names the deprecated alias's value `axis`
        if problems:
            raise Invalid(problems)
        out, kd = out_kernel(y, p)
        ax = int(axis) % y.ndim

        def compute(m):  # products in the math dtype (numba's float() keeps float32), sum float64
            prod = (k64(y, kd, m) * k64(p, kd, m)).astype(F64)
            return (1.0 - np.sum(prod, axis=ax, keepdims=True),
                    1.0 + np.sum(np.abs(prod), axis=ax, keepdims=True))
        return expected_both(spec, compute, k64(w, kd), reduction or spec.reduction, out, kd)

    if name == "mean_pairwise_squared_error":
        _no_unknown(params, problems)
        y = ref_array(labels, lname, problems)
        p = ref_array(predictions, pname, problems)
        w = ref_array(weights, "weights", problems)
        if api == "tf" and y is not None and w is not None:
            ref_weights_tf(w, y.shape, problems)  # TF's function checks them against the labels
        if y is not None and p is not None:
            if y.shape != p.shape:
                problems |= {lname, pname}
            elif w is not None:
                ww = w
                if api == "registry" and w.ndim == 1 and y.ndim > 1 and w.shape[0] == y.shape[0]:
                    ww = w.reshape(w.shape + (1,) * (y.ndim - 1))
                ref_weights_tf(ww, y.shape, problems)
                w = ww
        if problems:
            raise Invalid(problems)
        out, kd = out_kernel(y, p)
        exp = _pairwise_expected(k64(y, kd), k64(p, kd), np.asarray(w, F64), reduction or
                                 Reduction.SUM, out, kd)
        if kd == F32:  # d = p - y and d * d in float32 (numba's float() keeps float32)
            exp.alt = _pairwise_expected(k64(y, kd, F32), k64(p, kd, F32), np.asarray(w, F64),
                                         reduction or Reduction.SUM, out, kd)
        return exp
    raise AssertionError(f"no reference for {name}")


def _pairwise_expected(y, p, w, reduction, out, kd):
    batch = y.shape[0] if y.ndim else 1
    per = math.prod(y.shape[1:])
    with np.errstate(all="ignore"):
        d = (p - y).reshape(batch, per)
        dd = (d * d).astype(F64)
        d = d.astype(F64)
    if w.ndim == 0:
        present = np.full(batch, float(per if w != 0 else 0))
        wsum = np.full(batch, float(w))
    else:
        rows = w.reshape(w.shape[0], math.prod(w.shape[1:]))
        bc = math.prod(dd for dd, wd in zip(y.shape[1:], w.shape[1:]) if wd == 1)
        present = np.broadcast_to(np.count_nonzero(rows, axis=1) * float(bc), (batch,))
        with np.errstate(all="ignore"):
            wsum = np.broadcast_to(rows.sum(axis=1), (batch,))
    present = k64(present, kd)
    losses = np.zeros(batch)
    mag = np.zeros(batch)
    with np.errstate(all="ignore"):
        for b in range(batch):
            n = present[b]
            ss, s = seq_sum(dd[b]), seq_sum(d[b])
            t1 = 2 * ss / (n - 1) if n - 1 > 0 else 0.0
            t2 = 2 * s * s / (n * (n - 1)) if n * (n - 1) > 0 else 0.0
            losses[b] = t1 - t2
            absum = seq_sum(np.abs(d[b]))
            mag[b] = (abs(t1) + abs(t2) + 2 * absum * absum) * (per + 1)
    return reduce_expected(losses, mag, k64(wsum, kd), reduction, out, kd)


def _no_unknown(params, problems):
    problems.update(params)  # any keyword left over is not an argument of this loss


# =================================================================================================
# the contract
# =================================================================================================

def snapshot(obj):
    """What must not change: array bytes, shape, strides, dtype, writeability; list contents."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "O":
            data = tuple(id(v) for v in obj.ravel())
        else:
            data = obj.tobytes()
        return ("array", id(obj), obj.dtype.str, obj.shape, obj.strides, obj.flags.writeable,
                data)
    if isinstance(obj, (list, tuple, dict)):
        try:
            return ("pickle", pickle.dumps(obj))
        except Exception:
            return ("repr", repr(obj))
    return ("other", id(obj))


def snapshots(args):
    out = []
    for a in args:
        out.append(snapshot(a))
        if isinstance(a, dict):
            out += [snapshot(v) for v in a.values()]
    return out


def word_in(name, message):
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])", message)


def check(call, reference, watched, label=""):
    """Run ``call()`` against ``reference()`` (an Expected, or raises Invalid) and assert the
    contract; ``watched`` are the caller's objects that must be unchanged."""
    try:
        expected, verdict = reference(), None
    except Invalid as inv:
        expected, verdict = None, inv
    before = snapshots(watched)
    try:
        # NumPy's RuntimeWarnings on hostile values and deprecations are ignored; numba's
        # warnings are recorded for the report
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", _numba_warning())
            got, error = call(), None
        for w in caught:
            if issubclass(w.category, _numba_warning()):
                NUMBA_WARNINGS.setdefault(w.category.__name__, str(w.message)[:300])
    except Exception as exc:  # noqa: BLE001 -- the contract is about exactly this
        got, error = None, exc
    after = snapshots(watched)
    try:
        return _verify(label, before, after, error, verdict, got, expected)
    except ContractViolation:
        if os.environ.get("LOSSFORGE_FUZZ_DUMP"):  # the failing arguments, for a closer look
            with open(os.environ["LOSSFORGE_FUZZ_DUMP"], "wb") as f:
                pickle.dump((label, [np.array(w) if isinstance(w, np.memmap) else w
                                     for w in watched]), f)
        raise


def _verify(label, before, after, error, verdict, got, expected):
    if before != after:
        raise ContractViolation(f"{label}: the caller's arguments were modified")
    if error is not None:
        if not (isinstance(error, LossforgeError) and isinstance(error, (ValueError, TypeError))):
            raise ContractViolation(
                f"{label}: foreign exception {type(error).__module__}.{type(error).__name__}: "
                f"{error}\n{''.join(traceback.format_exception(error))}")
        if verdict is None:
            raise ContractViolation(f"{label}: valid input rejected: {type(error).__name__}: {error}")
        message = str(error)
        if not any(word_in(n, message) for n in verdict.names):
            raise ContractViolation(f"{label}: the error does not name any of {sorted(verdict.names)}: "
                                    f"{type(error).__name__}: {message}")
        return None
    if verdict is not None:
        raise ContractViolation(f"{label}: invalid input accepted (bad: {sorted(verdict.names)}); "
                                f"returned {got!r}")
    if expected is not None:
        compare(got, expected, label)
    return got


_NUMBA_WARNING = None
NUMBA_WARNINGS: dict = {}  # category -> first message: numba's warnings seen while compiling


def _numba_warning():
    global _NUMBA_WARNING
    if _NUMBA_WARNING is None:
        from numba.core.errors import NumbaWarning
        _NUMBA_WARNING = NumbaWarning
    return _NUMBA_WARNING


def _round(v: np.ndarray, dtypes) -> np.ndarray:
    with np.errstate(all="ignore"):
        for dt in dtypes:
            v = np.asarray(v).astype(dt)
        return np.asarray(v).astype(F64)


def compare(got, exp, label=""):
    """``got`` against the reference: an Expected, ("pair", Expected) for value_and_grad's
    value, or ("objective", {term: Expected}) for an objective's result."""
    if isinstance(exp, tuple) and exp[0] == "pair":
        if not (isinstance(got, tuple) and len(got) == 2):
            raise ContractViolation(f"{label}: returned {type(got).__name__}, not (value, grad)")
        return compare(got[0], exp[1], label)
    if isinstance(exp, tuple) and exp[0] == "objective":
        return _compare_objective(got, exp[1], label)
    if isinstance(exp, tuple) and exp[0] == "stacked":
        return _compare_stacked(got, exp[1], label)
    if not isinstance(got, (np.ndarray, np.generic)):
        raise ContractViolation(f"{label}: returned {type(got).__name__}, not a numpy value")
    if got.dtype != exp.dtype:
        raise ContractViolation(f"{label}: dtype {got.dtype}, expected {exp.dtype}")
    if np.shape(got) != np.shape(exp.value):
        raise ContractViolation(f"{label}: shape {np.shape(got)}, expected {np.shape(exp.value)}")
    g = np.asarray(got).astype(F64)
    if exp.anything or (exp.alt is not None and exp.alt.anything):
        return
    ok = _matches(g, exp)
    if exp.partial:
        ok = ok | np.isnan(np.asarray(exp.value, F64))
    if exp.alt is not None:  # float32 inputs may be computed in float32 math (as TF does)
        ok = ok | _matches(g, exp.alt)
    if not np.all(ok):
        bad = np.flatnonzero(~np.asarray(ok).ravel())[:5]
        e = np.asarray(exp.value, F64)
        er = _round(e, exp.rounding)
        alt = "" if exp.alt is None else (
            f" or, in float32 math, {_round(exp.alt.value, exp.alt.rounding).ravel()[bad].tolist()}")
        raise ContractViolation(
            f"{label}: value mismatch at flat {bad.tolist()}: got {g.ravel()[bad].tolist()}, "
            f"expected {er.ravel()[bad].tolist()} "
            f"(+- {np.broadcast_to(exp.err, e.shape).ravel()[bad].tolist()}){alt}")


def _matches(g: np.ndarray, exp: Expected) -> np.ndarray:
    """Where ``g`` agrees with ``exp``: NaN exactly where it is NaN, the same infinities, finite
    values inside the error bound after the output rounding."""
    e = np.asarray(exp.value, F64)
    with np.errstate(all="ignore"):
        lo = _round(e - exp.err, exp.rounding)
        hi = _round(e + exp.err, exp.rounding)
        er = _round(e, exp.rounding)
        nan_e, nan_g = np.isnan(er), np.isnan(g)
        inside = (g >= np.minimum(lo, hi)) & (g <= np.maximum(lo, hi))
        if exp.loose_nan:
            return nan_g | np.isinf(g) | inside
        big = np.isfinite(e) & (np.abs(e) > 1e300)  # a sum at the edge of overflow
        return np.where(nan_e, nan_g,
                        ~nan_g & (inside | (np.isinf(er) & (g == er)) |
                                  (big & np.isinf(g) & (np.sign(g) == np.sign(e)))))


# =================================================================================================
# targets
# =================================================================================================

TF_FUNCS = ["absolute_difference", "mean_squared_error", "huber_loss", "log_loss", "hinge_loss",
            "sigmoid_cross_entropy", "softmax_cross_entropy", "sparse_softmax_cross_entropy",
            "cosine_distance", "mean_pairwise_squared_error", "compute_weighted_loss"]
TF_PARAMS = {"huber_loss": ["delta"], "log_loss": ["epsilon"],
             "sigmoid_cross_entropy": ["label_smoothing"], "softmax_cross_entropy": ["label_smoothing"]}


def draw_inputs(ctx: Ctx, name: str, api: str = "registry"):
    """(labels, predictions, loss shape, extra keyword arguments) for loss ``name``."""
    kinds = INPUT_KINDS.get(name, ("real", "real"))
    if name in ("softmax_cross_entropy", "sparse_softmax_cross_entropy"):
        shape = draw_shape(ctx, 0 if ctx.chance(0.05) else 1, 4)
        classes = shape[-1] if shape else 0
        rows = shape[:-1]
        if name == "softmax_cross_entropy":
            idx = ctx.rng.integers(0, max(classes, 1), size=rows)
            z = np.eye(max(classes, 1))[idx][..., :classes] if classes else np.zeros(shape)
            if ctx.chance(0.2):
                z = values(ctx, shape, "prob")
            labels = layout(ctx, cast(z, pick_dtype(ctx)), "labels layout")
            if ctx.chance(0.05):
                labels = hostile(ctx, mutate_shape(ctx, shape), "prob", label="labels")
            loss_shape = rows
        else:
            lab = ctx.rng.integers(0, max(classes, 1), size=rows)
            if ctx.chance(0.15) and lab.size:
                lab.flat[ctx.rng.integers(0, lab.size)] = ctx.choice(
                    [-1, classes, classes + 7, 2 ** 40, -2 ** 40, -100], "bad label")
            dtype = ctx.choice([np.int64, np.int64, np.int32, np.uint8, np.int16, np.uint64,
                                np.float32, np.bool_], "label dtype")
            lab = cast(lab, dtype)
            if ctx.chance(0.1):
                lab = lab[..., None]  # a trailing 1 (squeezed by the TF API)
            labels = layout(ctx, lab, "labels layout")
            loss_shape = rows
        logits = values(ctx, shape, "real")
        if ctx.chance(0.2):
            logits = logits * ctx.choice([1e4, 1e30, 1e-30], "logit scale")
        predictions = layout(ctx, cast(logits, pick_dtype(ctx)), "logits layout")
        if ctx.chance(0.03):
            predictions = hostile(ctx, mutate_shape(ctx, shape), label="logits")
        return labels, predictions, loss_shape, {}
    if name == "cosine_distance":
        shape = draw_shape(ctx, 0 if ctx.chance(0.03) else 1, 4)
        axis = ctx.draw(st.integers(-len(shape), max(len(shape) - 1, 0)), "axis") if shape else 0
        y, p = values(ctx, shape), values(ctx, shape)
        if shape and ctx.chance(0.7):
            with np.errstate(all="ignore"):
                y = y / np.maximum(np.linalg.norm(np.nan_to_num(y), axis=axis, keepdims=True), 1e-30)
                p = p / np.maximum(np.linalg.norm(np.nan_to_num(p), axis=axis, keepdims=True), 1e-30)
        if ctx.chance(0.1):
            y = np.zeros(shape)  # zero vectors
        labels = layout(ctx, cast(y, pick_dtype(ctx)), "labels layout")
        predictions = layout(ctx, cast(p, pick_dtype(ctx)), "predictions layout")
        extra = {}
        if ctx.chance(0.9):
            axis_value = axis if ctx.chance(0.9) else ctx.choice(
                [len(shape), -len(shape) - 1, 1.0, "1", True, np.int64(0), None, 10 ** 20], "bad axis")
            extra["dim" if ctx.chance(0.1) else "axis"] = axis_value
        if ctx.chance(0.03):
            extra["dim"] = axis
        loss_shape = (shape[:axis % len(shape)] + (1,) + shape[axis % len(shape) + 1:]
                      if shape else ())
        return labels, predictions, loss_shape, extra
    shape = draw_shape(ctx)
    y = values(ctx, shape, kinds[0])
    p = values(ctx, shape, kinds[1])
    if ctx.chance(0.05):
        p = values(ctx, shape, "real")  # predictions outside their domain
    labels = layout(ctx, cast(y, pick_dtype(ctx)), "labels layout")
    predictions = layout(ctx, cast(p, pick_dtype(ctx)), "predictions layout")
    if ctx.chance(0.04):
        labels = hostile(ctx, mutate_shape(ctx, shape), kinds[0], label="labels")
    if ctx.chance(0.03):
        labels = hostile(ctx, shape, kinds[0], invalid=0.8, label="labels")
    return labels, predictions, shape, {}


def draw_options(ctx: Ctx, name, loss_shape, shape_hint):
    """Parameters (and the cross-entropies' PyTorch options) for loss ``name``."""
    spec = registry.get(name)
    params = {}
    for p in spec.params:
        if ctx.chance(0.6):
            params[p.name] = draw_param(ctx, p.name)
    if name in ("huber_loss", "smooth_l1") and ctx.chance(0.1):
        params["delta" if name == "huber_loss" else "beta"] = 0.0
    classes = shape_hint[-1] if shape_hint else 1
    if name == "sigmoid_cross_entropy" and ctx.chance(0.2):
        params["pos_weight"] = ctx.choice(
            [2.0, np.full(classes, 1.5), np.arange(classes, dtype=float), np.ones((1, classes)),
             np.ones(classes + 1), -1.0, np.nan, "x", None], "pos_weight")
    if name == "softmax_cross_entropy" and ctx.chance(0.2):
        params["class_weights"] = ctx.choice(
            [np.linspace(0.0, 2.0, classes), np.ones(classes), np.ones(classes + 1),
             np.full(classes, np.inf), [1.0] * classes, None], "class_weights")
    if name == "sparse_softmax_cross_entropy" and ctx.chance(0.3):
        if ctx.chance(0.5):
            params["class_weights"] = ctx.choice(
                [np.linspace(0.0, 2.0, classes), np.ones(classes), np.ones(classes + 2),
                 np.full(classes, np.nan), None], "class_weights")
        if ctx.chance(0.5):
            params["ignore_index"] = ctx.choice([-100, 0, -1, 1.0, True, None, np.int8(-1)],
                                                "ignore_index")
        if ctx.chance(0.5):
            params["label_smoothing"] = ctx.choice([0.0, 0.1, 1.0, 1.5, -0.1, None, np.nan],
                                                   "label_smoothing")
    if ctx.chance(0.02):
        params["no_such_param"] = 1.0
    return params


def _ctx_from(data, tmp):
    s = data.draw(st.integers(0, 2 ** 32 - 1), "numpy seed")
    return Ctx(data, np.random.default_rng(s), tmp, [])


def _cleanup(ctx):
    for path in ctx.files:
        try:
            os.unlink(path)
        except OSError:
            pass


def target_registry(name, grad=False):
    """``registry.get(name)(...)`` (or ``.value_and_grad``) with every kind of argument."""
    canonical = registry.get(name).name

    def body(data, tmp):
        ctx = _ctx_from(data, tmp)
        spec = registry.get(name)
        try:
            labels, predictions, loss_shape, extra = draw_inputs(ctx, canonical)
            hint = np.shape(predictions) if isinstance(predictions, np.ndarray) else ()
            params = {**draw_options(ctx, canonical, loss_shape, hint), **extra}
            weights = draw_weights(ctx, loss_shape)
            reduction = draw_reduction(ctx, allow_default=True)
            if canonical == "mean_pairwise_squared_error" and isinstance(
                    labels, np.ndarray) and labels.ndim > 1 and ctx.chance(0.3):
                weights = values(ctx, labels.shape[:1], "positive")  # [B]: the loss's shape

            def reference():
                problems = set()
                r = ref_reduction(reduction, problems, allow_default=True)
                try:
                    exp = ref_loss(canonical, labels, predictions, weights, r, params)
                except Invalid as inv:
                    raise Invalid(inv.names | problems) from None
                if problems:
                    raise Invalid(problems)
                return exp

            watched = [labels, predictions, weights, *params.values()]
            if not grad:
                check(lambda: spec(labels, predictions, weights, reduction, **params), reference,
                      watched, f"registry[{name}]")
                return
            got = check(lambda: spec.value_and_grad(labels, predictions, weights, reduction,
                                                    **params),
                        lambda: _pair(reference()), watched, f"registry[{name}].value_and_grad")
            if got is not None:
                _check_grad(spec, got, labels, predictions, weights, reduction, params)
        finally:
            _cleanup(ctx)
    return body


def _pair(exp):
    return ("pair", exp)


def _check_grad(spec, got, labels, predictions, weights, reduction, params):
    value, grad = got
    plain = spec(labels, predictions, weights, reduction, **params)
    if not (np.array_equal(value, plain, equal_nan=True) and np.shape(value) == np.shape(plain)
            and np.asarray(value).dtype == np.asarray(plain).dtype):
        raise ContractViolation(f"value_and_grad's value {value!r} differs from the call's {plain!r}")
    p = np.asarray(predictions)
    if not isinstance(grad, np.ndarray):
        raise ContractViolation(f"gradient is a {type(grad).__name__}, not an array")
    if grad.shape != p.shape:
        raise ContractViolation(f"gradient shape {grad.shape} != predictions' shape {p.shape}")
    if grad.dtype != np.asarray(value).dtype:
        raise ContractViolation(f"gradient dtype {grad.dtype} != value dtype {np.asarray(value).dtype}")
    exp = _grad_reference(spec, labels, predictions, weights, reduction, params)
    if exp is not None:
        compare(grad, exp, f"registry[{spec.name}].value_and_grad gradient")


def _d_elementwise(name, y, p, params):
    """(dL/dp, the magnitude of its terms, where it is defined) of an elementwise loss in
    float64; None for losses not covered here."""
    d = p - y
    ones = np.ones(d.shape, bool)
    if name == "mean_squared_error":
        return 2 * d, 2 * (np.abs(p) + np.abs(y)), ones
    if name == "absolute_difference":
        return np.sign(d), np.ones(d.shape), d != 0
    if name == "huber_loss":
        delta = params[0]
        g = np.where(np.abs(d) < delta, d, delta * np.sign(d))
        return g, np.abs(p) + np.abs(y) + abs(delta), np.abs(d) != delta
    if name == "log_cosh":
        return np.tanh(d), np.ones(d.shape), ones
    if name == "smooth_l1":
        beta = params[0]
        small = d / beta if beta > 0 else np.sign(d)
        g = np.where(np.abs(d) < beta, small, np.sign(d))
        return g, (np.abs(p) + np.abs(y)) / max(beta, 1e-300) + 1, (np.abs(d) != beta) & (d != 0)
    if name in ("hinge_loss", "squared_hinge"):
        v = 1.0 - (2 * y - 1) * p
        g = (1 - 2 * y) * (1.0 if name == "hinge_loss" else 2 * np.maximum(v, 0.0))
        g = np.where(v > 0, g, np.where(v <= 0, 0.0, np.nan))  # NaN v: NaN
        mag = np.abs(1 - 2 * y) * (1.0 if name == "hinge_loss" else 2 * (1 + np.abs((2 * y - 1) * p)))
        return g, mag, v != 0
    if name == "sigmoid_cross_entropy":
        z = _smooth_binary(y, params[0])
        return _sigmoid(p) - z, 1 + np.abs(z), ones
    if name == "log_loss":
        eps = params[0]
        a, b = -y / (p + eps), (1 - y) / (1 - p + eps)
        return a + b, np.abs(a) + np.abs(b), (p + eps > 0) & (1 - p + eps > 0)
    if name == "poisson":
        eps = params[0]
        t = y / (p + eps)
        return np.where(y == 0, 1.0, 1 - t), 1 + np.abs(t), (y == 0) | (p + eps > 0)
    if name == "kl_divergence":
        return np.where(y == 0, 0.0 * p, -y / p), np.abs(y / p), (y == 0) | ((p > 0) & (y > 0))
    return None


MODERATE = 1e15  # gradients are compared where inputs and weights are below this (no overflow
                 # of float32 intermediates, which TF's float32 math shares)


def _grad_reference(spec, labels, predictions, weights, reduction, params):
    """The expected gradient where it is well defined and inputs are moderate (an Expected whose
    NaN entries are not compared), for losses with a simple derivative; None for the others."""
    name = spec.name
    params = dict(params)
    if any(params.get(k) is not None for k in ("pos_weight", "class_weights", "ignore_index")) \
            or (name == "sparse_softmax_cross_entropy" and params.get("label_smoothing") is not None):
        return None
    reduction = spec.reduction if reduction is None else ref_reduction(reduction, set())
    try:
        exp_value = ref_loss(name, labels, predictions, weights, reduction, params)
    except Invalid:
        return None
    if exp_value.anything or (exp_value.alt is not None and exp_value.alt.anything):
        return None
    y, p = np.asarray(labels), np.asarray(predictions)
    w = np.asarray(weights)
    out = exp_value.dtype
    with np.errstate(all="ignore"):
        if spec.kind == "elementwise":
            _, kd = out_kernel(p) if ELEMENTWISE[name][2] == "logits" else out_kernel(y, p)
            pvals = [float(params.get(pn, dflt)) for pn, dflt, _, _ in ELEMENTWISE[name][1]]
            yk, pk = k64(y, kd), k64(p, kd)
            got = _d_elementwise(name, yk, pk, pvals)
            if got is None:
                return None
            g, gmag, defined = got
            wb = np.broadcast_to(k64(w, kd), p.shape)
            defined = defined & (np.abs(yk) < MODERATE) & (np.abs(pk) < MODERATE)
            wl = wb
        elif name in ("softmax_cross_entropy", "sparse_softmax_cross_entropy") and p.ndim \
                and y.ndim + (name == "sparse_softmax_cross_entropy") == p.ndim:
            _, kd = out_kernel(p)
            xk = k64(p, kd)
            if name == "sparse_softmax_cross_entropy":
                if w.ndim == y.ndim + 1:
                    w = w[..., 0]
                z = (np.arange(p.shape[-1]) == y[..., None]).astype(F64)
                total = np.ones(y.shape + (1,))
            else:
                z = k64(y, kd)
                ls = float(params.get("label_smoothing", 0.0))
                if ls > 0 and p.shape[-1]:
                    z = z * (1 - ls) + ls / p.shape[-1]
                total = np.sum(z, axis=-1, keepdims=True)
            m = np.max(xk, axis=-1, keepdims=True, initial=-np.inf)
            e = np.exp(xk - m)
            soft = e / np.sum(e, axis=-1, keepdims=True)
            g = total * soft - z
            gmag = np.abs(total) * soft + np.abs(z) + np.sum(np.abs(z), axis=-1, keepdims=True)
            wl = np.broadcast_to(k64(w, kd), p.shape[:-1])
            wb = np.broadcast_to(wl[..., None], p.shape)
            moderate = (np.abs(xk) < MODERATE) & (np.abs(z) < MODERATE)
            defined = np.all(moderate, axis=-1, keepdims=True) & np.ones(p.shape, bool)
        else:
            return None
        denom = 1.0
        if reduction is Reduction.MEAN:
            denom = seq_sum(wl)
        elif reduction is Reduction.SUM_OVER_BATCH_SIZE:
            denom = float(wl.size)
        elif reduction is Reduction.SUM_BY_NONZERO_WEIGHTS:
            denom = float(np.count_nonzero(wl))
        if denom == 0:  # div_no_nan's gradient: exactly 0 everywhere
            return Expected(np.zeros(p.shape), out, np.zeros(p.shape), (kd, out), partial=True)
        full = g * wb / denom
        defined = defined & (np.abs(wb) < MODERATE) & (abs(denom) > 1 / MODERATE) & np.isfinite(full)
        rel = 3e-5 if kd == F32 else 1e-9
        err = rel * gmag * np.abs(wb) / abs(denom) + 1e-300
        defined = defined & np.isfinite(err)
    value = np.where(defined, full, np.nan)
    return Expected(value, out, np.where(defined, err, 0.0), (kd, out), partial=True)


def target_tf(fname):
    """``lossforge.losses.<fname>`` (TF's signature) with every kind of argument."""
    fn = getattr(L, fname)
    canonical = {"compute_weighted_loss": "compute_weighted_loss"}.get(fname, fname)

    def body(data, tmp):
        ctx = _ctx_from(data, tmp)
        try:
            if fname == "compute_weighted_loss":
                shape = draw_shape(ctx)
                losses = layout(ctx, cast(values(ctx, shape), pick_dtype(ctx)), "losses layout")
                if ctx.chance(0.03):
                    losses = hostile(ctx, shape, invalid=0.9, label="losses")
                weights = draw_weights(ctx, shape)
                reduction = draw_reduction(ctx)
                kwargs = {"weights": weights, "reduction": reduction}

                def reference():
                    problems = set()
                    r = ref_reduction(reduction, problems)
                    y = ref_array(losses, "losses", problems)
                    w = ref_array(weights, "weights", problems)
                    if y is not None:
                        ref_weights_tf(w, y.shape, problems)
                    if problems:
                        raise Invalid(problems)
                    out, kd = out_kernel(y)
                    return expected_both(WEIGHTED_INPUT, lambda m: (k64(y, kd, m),
                                                                    np.abs(k64(y, kd))),
                                         k64(w, kd), r, out, kd)

                _collecting(ctx, lambda: fn(losses, **kwargs), reference, [losses, weights],
                            f"losses.{fname}")
                return
            labels, predictions, loss_shape, extra = draw_inputs(ctx, canonical, "tf")
            spec = registry.get(canonical)
            hint = np.shape(predictions) if isinstance(predictions, np.ndarray) else ()
            params = draw_options(ctx, canonical, loss_shape, hint)
            params.pop("no_such_param", None)  # a Python signature error, not lossforge's
            params = {k: v for k, v in params.items()
                      if k in TF_PARAMS.get(fname, []) or k in ("pos_weight", "class_weights",
                                                                  "ignore_index",
                                                                  "label_smoothing")}
            params.update(extra)
            if fname == "mean_pairwise_squared_error":
                loss_shape = np.shape(labels) if isinstance(labels, np.ndarray) else loss_shape
            weights = draw_weights(ctx, loss_shape)
            kwargs = {spec.inputs[0]: labels, spec.inputs[1]: predictions, "weights": weights,
                      **params}
            reduction = None
            if fname != "mean_pairwise_squared_error":
                reduction = draw_reduction(ctx)
                kwargs["reduction"] = reduction

            def reference():
                problems = set()
                r = Reduction.SUM
                if fname != "mean_pairwise_squared_error":
                    r = ref_reduction(reduction, problems)
                try:
                    exp = ref_loss(canonical, labels, predictions, weights, r, params, api="tf")
                except Invalid as inv:
                    raise Invalid(inv.names | problems) from None
                if problems:
                    raise Invalid(problems)
                return exp

            _collecting(ctx, lambda: fn(**kwargs), reference,
                        [labels, predictions, weights, *params.values()], f"losses.{fname}")
        finally:
            _cleanup(ctx)
    return body


def _collecting(ctx, call, reference, watched, label):
    """Sometimes inside a LossCollection: the collected value is the returned one."""
    if not ctx.chance(0.3):
        check(call, reference, watched, label)
        return
    with lossforge.LossCollection() as c:
        got = check(call, reference, watched, label)
    items = c.get_losses()
    if got is None:
        if items:
            raise ContractViolation(f"{label}: a failed call collected {items!r}")
    elif len(items) != 1 or items[0] is not got:
        raise ContractViolation(f"{label}: collected {items!r}, returned {got!r}")


def target_nn(fname):
    fn = getattr(nn, fname)
    canonical = {"sigmoid_cross_entropy_with_logits": "sigmoid_cross_entropy",
                 "softmax_cross_entropy_with_logits": "softmax_cross_entropy",
                 "sparse_softmax_cross_entropy_with_logits": "sparse_softmax_cross_entropy"}[fname]

    def body(data, tmp):
        ctx = _ctx_from(data, tmp)
        try:
            labels, logits, _, _ = draw_inputs(ctx, canonical, "nn")
            kwargs = {"labels": labels, "logits": logits}
            axis = None
            if canonical == "softmax_cross_entropy" and ctx.chance(0.4):
                rank = np.ndim(logits) if isinstance(logits, np.ndarray) else 1
                axis = ctx.choice([-1, 0, rank - 1, rank, -rank - 1, 1.0, "x", None], "axis")
                kwargs["axis"] = axis

            def reference():
                problems = set()
                z, x = labels, logits
                if canonical == "softmax_cross_entropy" and "axis" in kwargs:
                    za = ref_array(labels, "labels", set())
                    xa = ref_array(logits, "logits", set())
                    if za is not None and xa is not None and xa.ndim and za.shape == xa.shape:
                        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) \
                                or not -xa.ndim <= axis < xa.ndim:
                            problems.add("axis")
                        else:
                            z, x = np.moveaxis(za, axis, -1), np.moveaxis(xa, axis, -1)
                try:
                    exp = ref_loss(canonical, z, x, 1.0, Reduction.NONE, {}, api="nn")
                except Invalid as inv:
                    raise Invalid(inv.names | problems) from None
                if problems:
                    raise Invalid(problems)
                return exp

            check(lambda: fn(**kwargs), reference, [labels, logits], f"nn.{fname}")
        finally:
            _cleanup(ctx)
    return body


# --- contrib (and slim, the same functions) --------------------------------------------------------

def contrib_weights(w, loss_shape, problems, squeeze="last"):
    if w is None:
        return None
    w = w.astype(F64) if w.dtype.kind != "b" else w.astype(F64)
    if squeeze == "all":
        w = np.squeeze(w)
    elif squeeze == "last" and w.ndim > 1 and w.shape[-1] == 1:
        w = w[..., 0]
    if w.ndim > len(loss_shape) or any(a not in (1, b) for a, b in zip(w.shape, loss_shape)):
        problems.add("weights")
        return None
    return w


def contrib_mean(losses, w, out, loss_err=0.0):
    """contrib's compute_weighted_loss on float64 losses (already in the output dtype), each
    within ``loss_err`` of the computed ones."""
    with np.errstate(all="ignore"):
        summed = losses.sum(axis=tuple(range(w.ndim, losses.ndim))) if losses.ndim else losses
        err_summed = np.broadcast_to(loss_err, losses.shape)
        err_summed = err_summed.sum(axis=tuple(range(w.ndim, losses.ndim))) if losses.ndim \
            else err_summed
        total = np.sum(summed * w)
        if w.ndim == 0:
            batch = losses.shape[0] if losses.ndim else 1
            present = batch * float(math.prod(losses.shape[1:]) if w != 0 else 0)
        else:
            rows = w.reshape(w.shape[0], math.prod(w.shape[1:]))
            present = float(np.sum(np.count_nonzero(rows, axis=1) * float(
                math.prod(losses.shape[w.ndim:]))))
        value = total / present if present > 0 else 0.0
        abs_total = np.sum(np.abs(summed * w)[np.isfinite(summed * w)])
        loss_part = np.sum(np.abs(err_summed * w)[np.isfinite(err_summed * w)])
        err = (1e-9 * abs_total + loss_part) / present if present > 0 else 0.0
    loose = bool(not np.isfinite(abs_total) or not np.isfinite(total)) and present > 0
    return Expected(np.asarray(value), out, np.asarray(err), (out,), loose)


CONTRIB_FUNCS = ["absolute_difference", "mean_squared_error", "log_loss", "hinge_loss",
                 "sigmoid_cross_entropy", "softmax_cross_entropy", "sparse_softmax_cross_entropy",
                 "cosine_distance", "mean_pairwise_squared_error", "compute_weighted_loss",
                 "sum_of_squares", "sum_of_pairwise_squares", "log"]


def target_contrib(fname):
    base = {"sum_of_squares": "mean_squared_error", "sum_of_pairwise_squares":
            "mean_pairwise_squared_error", "log": "log_loss"}.get(fname, fname)

    def body(data, tmp):
        ctx = _ctx_from(data, tmp)
        module = ctx.choice([contrib, slim, slim.losses], "module")
        fn = getattr(module, fname)
        try:
            if base == "compute_weighted_loss":
                shape = draw_shape(ctx)
                labels = predictions = layout(ctx, cast(values(ctx, shape), pick_dtype(ctx)), "losses")
                extra = {}
                loss_shape = shape
            else:
                labels, predictions, loss_shape, extra = draw_inputs(ctx, base, "contrib")
                if base == "cosine_distance":
                    extra = {"dim": extra.get("dim", extra.get("axis"))} if extra else {}
                    if extra and extra["dim"] is not None and isinstance(labels, np.ndarray) \
                            and isinstance(extra["dim"], int) and labels.ndim:
                        d = extra["dim"] % labels.ndim if -labels.ndim <= extra["dim"] < labels.ndim else 0
                        loss_shape = labels.shape[:d] + labels.shape[d + 1:]
            params = {}
            if base == "log_loss" and ctx.chance(0.5):
                params["epsilon"] = draw_param(ctx, "epsilon")
            if base in ("sigmoid_cross_entropy", "softmax_cross_entropy") and ctx.chance(0.5):
                params["label_smoothing"] = draw_param(ctx, "label_smoothing")
            if base == "mean_pairwise_squared_error":
                loss_shape = np.shape(labels)[:1] if isinstance(labels, np.ndarray) else ()
            elif base == "sparse_softmax_cross_entropy":
                loss_shape = np.shape(labels)[:1] if isinstance(labels, np.ndarray) else ()
            weights = draw_weights(ctx, loss_shape) if base != "hinge_loss" else 1.0
            if base != "hinge_loss" and isinstance(weights, np.ndarray) and ctx.chance(0.2) \
                    and loss_shape:
                weights = values(ctx, loss_shape[:1], "positive")  # contrib's [B]
            first, second = {"hinge_loss": ("logits", "labels"),
                             "sigmoid_cross_entropy": ("logits", "multi_class_labels"),
                             "softmax_cross_entropy": ("logits", "onehot_labels"),
                             "sparse_softmax_cross_entropy": ("logits", "labels"),
                             "compute_weighted_loss": ("losses", None)}.get(
                base, ("predictions", "labels"))
            kwargs = {first: predictions, **params, **extra}
            if second:
                kwargs[second] = labels
            if base != "hinge_loss":
                kwargs["weights"] = weights
            deprecated = ctx.chance(0.1)
            if deprecated and "weights" in kwargs:
                kwargs["weight"] = kwargs.pop("weights")
            if deprecated and second == "labels" and ctx.chance(0.5):
                kwargs["targets"] = kwargs.pop("labels")

            def reference():
                return _contrib_reference(base, labels, predictions, weights, params, extra)

            watched = [labels, predictions, weights, *params.values()]
            check(lambda: fn(**kwargs), reference, watched, f"{module.__name__}.{fname}")
        finally:
            _cleanup(ctx)
    return body


def _contrib_reference(base, labels, predictions, weights, params, extra):
    problems: set = set()
    if base == "compute_weighted_loss":
        v = ref_array(labels, "losses", problems)
        w = ref_array(weights, "weights", problems)
        if v is not None and w is not None:
            w = contrib_weights(w, v.shape, problems)
        if problems:
            raise Invalid(problems)
        out, kd = out_kernel(v)
        return contrib_mean(v.astype(F64), w, out)
    if base == "mean_pairwise_squared_error":
        p = ref_array(predictions, "predictions", problems)
        y = ref_array(labels, "labels", problems)
        w = ref_array(weights, "weights", problems)
        if p is not None and y is not None:
            if p.shape != y.shape:
                problems |= {"predictions", "labels"}
            elif w is not None:
                w = contrib_weights(w, np.atleast_1d(p).shape[:1], problems, squeeze=None)
        if problems:
            raise Invalid(problems)
        out, _ = out_kernel(y, p)
        d = np.atleast_1d(p.astype(F64) - y.astype(F64))
        rows = d.reshape(d.shape[0], math.prod(d.shape[1:]))
        per = float(rows.shape[1])
        if w.ndim == 0:
            n = np.full(rows.shape[0], per if w != 0 else 0.0)
        else:
            n = (w != 0).astype(F64) * per
        with np.errstate(all="ignore"):
            ss, s = np.sum(rows * rows, axis=1), np.sum(rows, axis=1)
            t1 = 2 * np.where(n > 0, ss / np.where(n > 0, n, 1), 0.0)
            t2 = 2 * np.where(n > 0, s * s / np.where(n > 0, n * n, 1), 0.0)
            lb = t1 - t2
            total = float(np.sum(lb * w)) if n.sum() > 0 else 0.0
            terms = np.abs((np.abs(t1) + np.abs(t2) + 2 * np.sum(np.abs(rows), axis=1) ** 2) * w)
            err = 1e-9 * float(np.sum(terms[np.isfinite(terms)])) * (per + 1)
            loose = bool(not np.all(np.isfinite(terms))) and bool(np.isfinite(total))
        return Expected(np.asarray(total), out, np.asarray(err), (out,), loose)
    # the per-element losses come from the core function (NONE), in the output dtype
    core_params = dict(params)
    loss_name = base
    w = ref_array(weights, "weights", problems)
    if base == "cosine_distance":
        dim = extra.get("dim")
        if dim is None:
            problems.add("dim")
            raise Invalid(problems)
        core_params["dim"] = dim
    def invalid(names):
        """Invalid(names), plus what the core function would find (lossforge may check the
        arguments in another order)."""
        try:
            ref_loss(loss_name, labels, predictions, 1.0, Reduction.NONE, core_params,
                     api="contrib")
        except Invalid as inv:
            names = names | inv.names
        except Exception:  # noqa: BLE001 -- the core reference needs valid shapes
            pass
        return Invalid(names)

    if base == "softmax_cross_entropy":
        ls = ref_param(core_params.pop("label_smoothing", 0.0), "label_smoothing", problems)
        z = ref_array(labels, "onehot_labels", problems)
        if ls is not None and ls > 0 and z is not None and z.ndim < 2:
            problems.add("onehot_labels")  # smoothing divides by shape[1]
        if problems:
            raise invalid(problems)
        if ls > 0 and z.shape[1]:
            labels = z * (1.0 - ls) + ls / z.shape[1]
    if base == "sparse_softmax_cross_entropy":
        lab = ref_array(labels, "labels", problems)
        if lab is not None and (lab.ndim == 0 or lab.size != lab.shape[0]):
            problems.add("labels")
        elif lab is not None:
            labels = lab.reshape(lab.shape[0])  # contrib's reshape to [batch_size] comes first
        if problems:
            raise invalid(problems)
    try:
        exp = ref_loss(loss_name, labels, predictions, 1.0, Reduction.NONE, core_params,
                       api="contrib")
    except Invalid as inv:
        names = set(inv.names) | problems
        raise Invalid(names) from None
    if base == "hinge_loss":
        return exp
    if w is None:
        raise Invalid(problems | {"weights"})
    shape = np.shape(exp.value)
    if base == "cosine_distance":
        shape = shape[:extra["dim"] % len(shape)] + shape[extra["dim"] % len(shape) + 1:]
    w = contrib_weights(w, shape, problems,
                        squeeze="all" if base == "sparse_softmax_cross_entropy" else "last")
    if problems:
        raise Invalid(problems)

    def weighted_mean(part):
        """contrib's weighted mean of the per-element losses ``part`` (rounded to the output
        dtype, as the core function returns them)."""
        losses = _round(part.value, part.rounding)
        with np.errstate(all="ignore"):  # the per-element error, rounding to the output dtype too
            loss_err = np.broadcast_to(part.err, losses.shape) + 2 * np.abs(losses) * np.finfo(
                part.dtype).eps
            loss_err = np.where(np.isfinite(loss_err), loss_err, 0.0)
        if base == "cosine_distance":
            losses = np.squeeze(losses, axis=extra["dim"])
            loss_err = np.squeeze(loss_err, axis=extra["dim"])
        return contrib_mean(losses, w, part.dtype, loss_err)

    result = weighted_mean(exp)
    if exp.alt is not None:
        result.alt = weighted_mean(exp.alt)
    return result


# --- objectives -------------------------------------------------------------------------------------

def draw_config(ctx: Ctx):
    """A config dict: mostly valid terms over registered losses, sometimes hostile."""
    names = registry.names(include_aliases=True)
    terms = {}
    for i in range(ctx.draw(st.integers(1, 3), "terms")):
        loss = ctx.choice(names, "loss")
        spec = registry.get(loss)
        term = {"loss": loss, "inputs": {spec.inputs[0]: f"y{i}", spec.inputs[1]: f"p{i}"}}
        if ctx.chance(0.3):
            term["inputs"]["weights"] = f"w{i}"
        if ctx.chance(0.5):
            term["weight"] = ctx.choice([1.0, 2.0, 0.5, 0, -1.0, 1e300], "term weight")
        if spec.params and ctx.chance(0.3):
            term["params"] = {spec.params[0].name: ctx.choice([0.0, 0.1, 0.5, 1.0], "param")}
        if spec.name == "cosine_distance":
            term.setdefault("params", {})["axis"] = -1
        if ctx.chance(0.3):
            term["reduction"] = ctx.choice(["weighted_sum", "weighted_mean",
                                            "weighted_sum_over_batch_size",
                                            "weighted_sum_by_nonzero_weights"], "reduction")
        terms[f"t{i}"] = term
    config = {"name": "fuzz", "terms": terms}
    if ctx.chance(0.3):
        config["regularization"] = {"reg": {"type": ctx.choice(["l1", "l2", "l1_l2"], "reg"),
                                            "scale": 0.01, "scale_l1": 0.1, "scale_l2": 0.2,
                                            "params": ["w_a"]}}
        if config["regularization"]["reg"]["type"] == "l1_l2":
            del config["regularization"]["reg"]["scale"]
        else:
            del config["regularization"]["reg"]["scale_l1"], config["regularization"]["reg"]["scale_l2"]
    if ctx.chance(0.4):
        config["weighting"] = ctx.choice(["static", "uncertainty", {"strategy": "dwa",
                                                                    "temperature": 2.0}],
                                         "weighting")
    return config


def corrupt_config(ctx: Ctx, config):
    """One hostile change, or none."""
    how = ctx.choice(["none"] * 6 + ["unknown key", "wrong type", "deep", "anchors", "tag",
                                     "unknown loss", "bad number", "bad reduction", "scalar",
                                     "env"], "corruption")
    text = None
    if how == "unknown key":
        config["terms"]["t0"]["wieght"] = 1
    elif how == "wrong type":
        config["terms"]["t0"]["inputs"] = ctx.choice([[], "x", 3, None, {"labels": 3}], "inputs")
    elif how == "deep":
        nested = "x"
        for _ in range(ctx.draw(st.integers(1, 300), "depth")):
            nested = [nested]
        config["x-deep"] = nested
    elif how == "unknown loss":
        config["terms"]["t0"]["loss"] = ctx.choice(["hubber", "", "../../etc/passwd", "x" * 500],
                                                   "loss name")
    elif how == "bad number":
        config["terms"]["t0"]["weight"] = ctx.choice([".nan", "1e400", True, [1], {"a": 1}, None],
                                                     "weight")
    elif how == "bad reduction":
        config["terms"]["t0"]["reduction"] = ctx.choice(["none", "mean", 3, None], "reduction")
    elif how == "scalar":
        text = ctx.choice(["3", "[]", "null", "", "- a", "'terms'", "{", "terms: {a: }"], "scalar")
    elif how == "tag":
        text = ctx.choice(["terms: !!python/object/apply:os.getcwd []\n",
                           "terms: !!python/name:os.system\n",
                           "!!binary AAAA\n", "terms: !custom 3\n"], "tag")
    elif how == "anchors":
        text = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}]\n" for i in range(ctx.draw(st.integers(1, 9), "levels")))
    elif how == "env":
        config["name"] = ctx.choice(["${LOSSFORGE_FUZZ_UNSET_VARIABLE}", "${HOME}",
                                     "${LOSSFORGE_FUZZ_UNSET_VARIABLE:-d}", "${", "$${X}"], "env")
    return config, text


def target_load_objective():
    def body(data, tmp):
        ctx = _ctx_from(data, tmp)
        config, text = corrupt_config(ctx, draw_config(ctx))
        source = text
        if source is None:
            source = config if ctx.chance(0.3) else yaml.safe_dump(config)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                objective = lossforge.load_objective(source)
        except Exception as exc:  # noqa: BLE001
            if not (isinstance(exc, LossforgeError) and isinstance(exc, ValueError)):
                raise ContractViolation(f"load_objective: foreign exception {type(exc).__name__}: "
                                        f"{exc}\n{''.join(traceback.format_exception(exc))}")
            objective = None
        if time.perf_counter() - start > 5.0:
            raise ContractViolation(f"load_objective took {time.perf_counter() - start:.1f} s")
        if text is not None and text.startswith(("terms: !!python", "!!binary")) and objective:
            raise ContractViolation("a config with a python/binary tag was accepted")
        if objective is not None:
            call_objective(ctx, objective)
    return body


def target_objective():
    def body(data, tmp):
        ctx = _ctx_from(data, tmp)
        try:
            config = draw_config(ctx)
            try:
                objective = lossforge.load_objective(config)
            except LossforgeError:
                return
            call_objective(ctx, objective)
        finally:
            _cleanup(ctx)
    return body


def draw_batch(ctx: Ctx, objective):
    batch = {}
    for term in objective.config.terms:
        spec = registry.get(term.loss)
        labels, predictions, loss_shape, _ = draw_inputs(ctx, spec.name)
        batch.setdefault(term.inputs[spec.inputs[0]], labels)
        batch.setdefault(term.inputs[spec.inputs[1]], predictions)
        if "weights" in term.inputs:
            batch.setdefault(term.inputs["weights"], draw_weights(ctx, loss_shape))
    if ctx.chance(0.03) and batch:
        batch.pop(sorted(batch)[0])
    params = {}
    for reg in objective.config.regularizers:
        for key in reg.params:
            params[key] = hostile(ctx, draw_shape(ctx, 0, 3), label=key)
    if objective.weighting.name == "uncertainty":
        for term in objective.config.terms:
            if ctx.chance(0.7):
                params[f"log_var/{term.name}"] = ctx.choice(
                    [0.0, 1.0, -2.0, 800.0, -800.0, np.nan, np.float32(0.5), "x", np.ones(2),
                     None], "log_var")
    if ctx.chance(0.03):
        params = ctx.choice(["w_a", ["w_a"], 3], "params")
    return batch, params


def call_objective(ctx: Ctx, objective):
    """The objective's calls on a hostile batch: results match the terms' references."""
    batch, params = draw_batch(ctx, objective)
    if ctx.chance(0.03):
        batch = ctx.choice([[1, 2], "batch", None], "batch")

    def reference():
        return ("objective", _term_references(objective, batch, params))

    watched = [batch, params] if isinstance(batch, dict) else [params]
    with_grad = ctx.chance(0.3)
    method = objective.value_and_grad if with_grad else objective
    check(lambda: method(batch, params), reference, watched, "Objective")


def _term_references(objective, batch, params):
    """{term: Expected} of one batch, or Invalid naming what is wrong (batch keys, inputs,
    params), from the losses' references."""
    if not isinstance(batch, dict):
        raise Invalid({"batch", "batches"})
    expected, problems = {}, set()
    for term in objective.config.terms:
        spec = registry.get(term.loss)
        args = {}
        for arg, key in term.inputs.items():
            if key not in batch:
                problems.add(key)
            args[arg] = batch.get(key)
        if problems:
            continue
        reduction = term.reduction or spec.reduction
        try:
            expected[term.name] = ref_loss(spec.name, args[spec.inputs[0]], args[spec.inputs[1]],
                                           args.get("weights", 1.0), reduction, dict(term.params))
        except Invalid as inv:
            problems |= inv.names
    _params_problems(objective, params, problems)
    if problems:
        raise Invalid(problems)
    return expected


def _params_problems(objective, params, problems):
    for reg in objective.config.regularizers:
        for key in reg.params:
            if not isinstance(params, dict):
                problems.add("params")
            else:
                ref_array(params.get(key), key, problems)
    if objective.weighting.name == "uncertainty":
        if params is not None and not isinstance(params, dict):
            problems.add("params")
        elif params is not None:
            for term in objective.config.terms:
                key = f"log_var/{term.name}"
                if key in params:
                    ref_param(params[key], key, problems)


def _splittable(objective, batch):
    """The batch size B along axis 0 when every term can be split along it, else None."""
    sizes = set()
    for term in objective.config.terms:
        spec = registry.get(term.loss)
        p = batch.get(term.inputs[spec.inputs[1]])
        if not isinstance(p, np.ndarray) or p.ndim < (2 if spec.kind == "rowwise" else 1):
            return None
        sizes.add(p.shape[0])
    return sizes.pop() if len(sizes) == 1 else None


def _draw_objective_and_batch(ctx: Ctx):
    """``(objective, batch, params)`` from a drawn config, or None when lossforge refuses the
    config (the config targets check those refusals)."""
    try:
        objective = lossforge.load_objective(draw_config(ctx))
    except LossforgeError:
        return None
    return (objective, *draw_batch(ctx, objective))


def target_evaluate():
    """``Objective.evaluate(batches)``: chunks along axis 0 give the one-call references."""
    def body(data, tmp):
        ctx = _ctx_from(data, tmp)
        try:
            drawn = _draw_objective_and_batch(ctx)
            if drawn is None:
                return
            objective, batch, params = drawn
            size = _splittable(objective, batch)
            chunks = [batch]
            if size and size > 1:
                cuts = sorted(set(ctx.rng.integers(0, size + 1, size=ctx.rng.integers(1, 4))))
                bounds = [0, *cuts, size]
                whole = {}
                for k, v in batch.items():
                    try:
                        whole[k] = np.asarray(v) if isinstance(v, (list, tuple)) else v
                    except Exception:  # noqa: BLE001 -- ragged: handed over as it is
                        whole[k] = v
                chunks = []
                for a, b in zip(bounds[:-1], bounds[1:]):
                    chunks.append({k: (np.asarray(v)[a:b] if isinstance(v, np.ndarray) and
                                       v.ndim and v.shape[0] == size else v)
                                   for k, v in whole.items()})
            how = ctx.choice(["list", "generator", "tuple", "hostile"], "batches")
            if how == "hostile":
                batches = ctx.choice([batch, 3, "batches", [batch, 3], [], None], "hostile batches")
            elif how == "generator":
                batches = (c for c in chunks)
            else:
                batches = chunks if how == "list" else tuple(chunks)

            def reference():
                problems = set()
                _params_problems(objective, params, problems)
                if isinstance(batches, (dict, int, str)) or batches is None:
                    raise Invalid(problems | {"batches"})
                if isinstance(batches, list) and any(not isinstance(b, dict) for b in batches):
                    raise Invalid(problems | {"batches", "batch"})
                if isinstance(batches, list) and not batches:
                    raise Invalid(problems | {"batches"})  # nothing to evaluate: either answer
                return ("objective", _term_references(objective, batch, params))

            def call():
                return objective.evaluate(batches, params, progress=False)

            try:
                check(call, reference, [batch, params, *chunks], "Objective.evaluate")
            except ContractViolation as exc:
                if "invalid input accepted" in str(exc) and isinstance(batches, list) and \
                        not batches:
                    return  # an empty iterable may give an empty result
                raise
        finally:
            _cleanup(ctx)
    return body


def target_evaluate_stacked():
    """``Objective.evaluate_stacked(batch, batch_axis)``: batch k equals its own reference."""
    def body(data, tmp):
        ctx = _ctx_from(data, tmp)
        try:
            drawn = _draw_objective_and_batch(ctx)
            if drawn is None:
                return
            objective, batch, params = drawn
            count = ctx.draw(st.integers(1, 3), "K")
            arrays = {}
            for key, value in batch.items():
                try:
                    arrays[key] = np.asarray(value)
                except Exception:  # noqa: BLE001 -- ragged: stays as given
                    arrays[key] = value
            ranks = [a.ndim for a in arrays.values() if isinstance(a, np.ndarray)]
            axis = ctx.choice([0, 0, -1] + ([1] if ranks and min(ranks) >= 1 else []), "axis")
            singles, stacked = [], {}
            for k in range(count):
                single = {}
                for key, a in arrays.items():
                    if isinstance(a, np.ndarray) and a.dtype.kind in "f" and a.size and k:
                        with np.errstate(all="ignore"):
                            a = (a * (1.0 + 0.1 * k)).astype(a.dtype)
                    single[key] = a
                singles.append(single)
            for key in arrays:
                try:
                    stacked[key] = np.stack([s[key] for s in singles], axis=axis)
                except Exception:  # noqa: BLE001 -- not stackable: hand it over as it is
                    stacked[key] = arrays[key]
            batch_axis = axis
            if ctx.chance(0.05):
                batch_axis = ctx.choice([7, -9, 1.0, "0", None, True], "bad batch_axis")
            if ctx.chance(0.03) and stacked:
                key = sorted(stacked)[0]
                if isinstance(stacked[key], np.ndarray) and stacked[key].ndim:
                    stacked[key] = np.concatenate([stacked[key]] * 2, axis=axis)  # 2K batches

            def reference():
                problems = set()
                _params_problems(objective, params, problems)
                if not (isinstance(batch_axis, (int, np.integer)) and not isinstance(
                        batch_axis, (bool, np.bool_))):
                    try:  # lossforge may name a problem of the batches' contents first
                        _term_references(objective, singles[0], params)
                    except Invalid as inv:
                        problems |= inv.names
                    raise Invalid(problems | {"batch_axis"})
                for key, value in stacked.items():
                    if not (isinstance(value, np.ndarray) and value.ndim and
                            -value.ndim <= batch_axis < value.ndim and
                            value.shape[batch_axis] == count):
                        args = {arg for t in objective.config.terms
                                for arg, k in t.inputs.items() if k == key}
                        problems |= {"batch_axis", key, *args}
                if problems:
                    try:  # lossforge may name a problem of the batches' contents first
                        _term_references(objective, singles[0], params)
                    except Invalid as inv:
                        problems |= inv.names
                    raise Invalid(problems)
                for term in objective.config.terms:  # documented: not stackable along axis 0
                    spec = registry.get(term.loss)
                    x = singles[0].get(term.inputs[spec.inputs[1]])
                    rank = np.ndim(x) if isinstance(x, np.ndarray) else None
                    if rank is None or spec.kind != "rowwise" or count == 1:
                        continue
                    ax = term.params.get("axis", -1)
                    if spec.name == "cosine_distance" and rank and ax % rank == 0:
                        names = {"axis", "batch_axis", "weights"}  # (the concatenation's
                        try:                                        # weights may fail first)
                            _term_references(objective, singles[0], params)
                        except Invalid as inv:
                            raise Invalid(inv.names | names) from None
                        raise Invalid(names)
                return ("stacked", [_term_references(objective, s, params) for s in singles])

            for term in objective.config.terms:
                spec = registry.get(term.loss)
                x = singles[0].get(term.inputs[spec.inputs[1]])
                if spec.name == "cosine_distance" and isinstance(x, np.ndarray) and x.ndim == 1 \
                        and x.size == 0 and count > 1:
                    return  # empty fibres reduced over axis 0: stackable or not, both answers hold
            check(lambda: objective.evaluate_stacked(stacked, batch_axis, params), reference,
                  [stacked, params], "Objective.evaluate_stacked")
        finally:
            _cleanup(ctx)
    return body


def _compare_stacked(got, expected, label):
    if len(got) != len(expected):
        raise ContractViolation(f"{label}: {len(got)} results for {len(expected)} batches")
    for k, exp in enumerate(expected):
        _compare_objective(got.at(k), exp, f"{label} batch {k}")


def _compare_objective(got, expected, label):
    result = got[0] if isinstance(got, tuple) else got
    total = 0.0
    for c in result.components.values():
        total += c.weighted
    if not (result.total == total or (math.isnan(result.total) and math.isnan(total))):
        raise ContractViolation(f"{label}: total {result.total} != sum of weighted components {total}")
    for name, exp in expected.items():
        value = result.components[name].value
        if not isinstance(value, float):
            raise ContractViolation(f"{label}: term {name}'s value is a {type(value).__name__}")
        # a term's value is the reduced loss (in the loss's dtype) as a Python float
        compare(np.asarray(value).astype(exp.dtype), exp, f"{label} term {name}")


def target_collection():
    """add_loss / get_losses / get_total_loss with hostile scopes and values."""
    def body(data, tmp):
        ctx = _ctx_from(data, tmp)
        scope = ctx.choice([None, "a", "(", "[", "a|b", ".*", "\\", "a{99999999999}", 3],
                           "scope")
        values_ = [ctx.choice([1.0, np.float32(2.0), np.ones(2), "x", None, np.nan], "value")
                   for _ in range(ctx.draw(st.integers(0, 3), "count"))]
        with lossforge.LossCollection():
            for v in values_:
                L.add_loss(v, name=ctx.choice(["a/value", "b/value"], "name"))
            for fn in (lambda: L.get_losses(scope=scope),
                       lambda: L.get_regularization_losses(scope=scope),
                       lambda: L.get_total_loss(scope=scope),
                       lambda: L.get_regularization_loss(scope=scope)):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fn()
                except Exception as exc:  # noqa: BLE001
                    if not (isinstance(exc, LossforgeError) and isinstance(exc, (ValueError,
                                                                                  TypeError))):
                        raise ContractViolation(f"collection: foreign exception "
                                                f"{type(exc).__name__}: {exc}")
                    if "scope" not in str(exc) and "loss" not in str(exc):
                        raise ContractViolation(f"collection error names nothing: {exc}")
    return body


def all_targets():
    targets = {}
    for name in TF_FUNCS:
        targets[f"losses.{name}"] = (target_tf(name), 3)
    for name in ("sigmoid_cross_entropy_with_logits", "softmax_cross_entropy_with_logits",
                 "sparse_softmax_cross_entropy_with_logits"):
        targets[f"nn.{name}"] = (target_nn(name), 2)
    for name in CONTRIB_FUNCS:
        targets[f"contrib.{name}"] = (target_contrib(name), 1)
    for name in registry.names():
        targets[f"registry[{name}]"] = (target_registry(name), 2)
        targets[f"registry[{name}].value_and_grad"] = (target_registry(name, grad=True), 1)
    aliases = sorted(set(registry.names(include_aliases=True)) - set(registry.names()))
    for alias in aliases[:: max(1, len(aliases) // 6)]:
        targets[f"registry[{alias}]"] = (target_registry(alias), 1)
    targets["load_objective"] = (target_load_objective(), 4)
    targets["Objective"] = (target_objective(), 4)
    targets["Objective.evaluate"] = (target_evaluate(), 3)
    targets["Objective.evaluate_stacked"] = (target_evaluate_stacked(), 3)
    targets["collection"] = (target_collection(), 1)
    return targets


# =================================================================================================
# the runner
# =================================================================================================

def run_target(name, body, examples, seed_value, tmp):
    """Run one target's hypothesis test; returns its report entry."""
    count = {"n": 0}

    @hseed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
              report_multiple_bugs=False, print_blob=False)
    @given(data=st.data())
    def test(data):
        count["n"] += 1
        body(data, tmp)

    start = time.perf_counter()
    entry = {"target": name, "failure": None}
    try:
        test()
    except Exception as exc:  # noqa: BLE001 -- recorded; the campaign goes on
        notes = "\n".join(getattr(exc, "__notes__", []))
        where = "" if isinstance(exc, ContractViolation) else (
            "\n" + "".join(traceback.format_exception(exc))[-3000:])  # (a harness error)
        entry["failure"] = f"{type(exc).__name__}: {str(exc)[:3000]}\n{notes[:6000]}{where}"
    entry["examples"] = count["n"]
    entry["seconds"] = round(time.perf_counter() - start, 2)
    return entry


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=int(os.environ.get(
        "LOSSFORGE_FUZZ_EXAMPLES", 3000)), help="total examples over all targets")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("LOSSFORGE_FUZZ_SEED", 0)))
    parser.add_argument("--targets", default="", help="a regex selecting targets")
    parser.add_argument("--report", default="")
    parser.add_argument("--memory-gb", type=float, default=8.0,
                        help="data-segment limit (RLIMIT_DATA: heap and private writable "
                             "mappings): a memory blow-up becomes a MemoryError")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # hostile values overflow the references too
    try:
        import resource
        limit = int(args.memory_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))  # (not RLIMIT_AS: thread
        # stacks and malloc arenas reserve far more address space than they use)
    except (ImportError, ValueError, OSError):
        pass
    targets = all_targets()
    if args.targets:
        targets = {k: v for k, v in targets.items() if re.search(args.targets, k)}
    share = sum(w for _, w in targets.values())
    tmp = tempfile.mkdtemp(prefix="lossforge-fuzz-")
    report = {"seed": args.seed, "requested": args.examples, "targets": []}
    try:
        for i, (name, (body, weight)) in enumerate(sorted(targets.items())):
            n = max(1, round(args.examples * weight / share))
            entry = run_target(name, body, n, args.seed + i, tmp)
            report["targets"].append(entry)
            status = "FAIL" if entry["failure"] else "ok"
            print(f"{status:4} {name}: {entry['examples']} examples, {entry['seconds']} s",
                  flush=True)
            if args.report:  # written as we go: a crash leaves what ran before it
                with open(args.report, "w") as f:
                    json.dump(report, f, indent=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["examples"] = sum(t["examples"] for t in report["targets"])
    report["failures"] = [t["target"] for t in report["targets"] if t["failure"]]
    report["numba_warnings"] = NUMBA_WARNINGS
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    print(f"{report['examples']} examples, {len(report['failures'])} failing targets")
    for t in report["targets"]:
        if t["failure"]:
            print(f"\n=== {t['target']}\n{t['failure']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
