"""The loss registry: every loss is one `LossSpec` built from its scalar formula(s).

A loss is registered once, from a plain Python formula written with ``math.*``; its CPU
kernels (and gradient) are generated from that formula on first use, and its name (or an
alias) is what `get` and YAML configs look up::

    import math, lossforge

    @lossforge.register_loss("log_cosh", grad=lambda y, p: math.tanh(p - y))
    def log_cosh(y, p):
        return math.log(math.cosh(p - y))

    spec = lossforge.registry.get("log_cosh")
    value = spec(labels, predictions, weights=..., reduction=...)     # TF weights/reductions
    value, grad = spec.value_and_grad(labels, predictions)

Parameters are extra positional arguments of the formula, declared with ``params=``::

    @lossforge.register_loss("pseudo_huber", params={"delta": 1.0})
    def pseudo_huber(y, p, delta):
        return delta * delta * (math.sqrt(1.0 + ((p - y) / delta) ** 2) - 1.0)

Third-party packages register losses through the entry-point group ``lossforge.losses``: each
entry point names a `LossSpec`, a list of them, or a function that registers losses when
called. Plugins load on the first lookup; one that fails produces a warning naming it and
leaves every other loss working.
"""
from __future__ import annotations

import builtins
import difflib
import functools
import hashlib
import inspect
import math
import threading
import types
import warnings
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from . import compute
from .compute import SCALAR_REDUCTIONS
from .errors import InvalidArgumentError, InvalidTypeError, LossforgeError
from .inputs import (as_array, as_float_param, check_same_shape, check_weights_broadcast,
                     float_dtypes, for_kernel)
from .reduction import Reduction, resolve_reduction

__all__ = ["LossSpec", "Param", "Prepared", "UnknownLossError", "get", "names", "register",
           "register_loss", "specs", "unregister"]

ENTRY_POINT_GROUP = "lossforge.losses"


class UnknownLossError(LossforgeError, KeyError, ValueError):
    """No loss is registered under this name (the message suggests the closest names)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Param:
    """A scalar loss parameter: name, default and (optionally enforced) valid range.

    ``low``/``high`` are inclusive bounds; None means unbounded. TensorFlow's own losses
    declare no bounds because TF validates none of their parameters.

    ``specialize``: values of the parameter that get CPU kernels of their own, compiled with
    the value as a constant, which LLVM folds into the formula (focal's ``pow(q, gamma)`` at
    ``gamma = 2`` becomes ``q * q``: 3x faster). Such a kernel is compiled on the first call
    that passes the value, instead of the general one; it gives the general kernel's numbers
    (float32: the same bits; float64: within two ulps, as LLVM's folded ``pow(x, 2.0)`` is
    correctly rounded and libm's is not always). Finite values within the bounds; name the
    one or two values most calls use.
    """

    name: str
    default: float
    low: float | None = None
    high: float | None = None
    doc: str = ""
    specialize: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        values = tuple(self.specialize)
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or (self.low is not None and value < self.low) or \
                    (self.high is not None and value > self.high):
                raise InvalidArgumentError(
                    f"Param {self.name!r}: `specialize` holds {value!r}; it takes finite numbers "
                    f"within the parameter's range [{self.low}, {self.high}], e.g. "
                    f"specialize=({self.default!r},).")
        values = tuple(float(v) for v in values)
        if len(set(values)) != len(values):  # (0.0 and -0.0 count as one: a call may pass either)
            raise InvalidArgumentError(f"Param {self.name!r}: `specialize` repeats a value "
                                       f"({values}); name each value once.")
        object.__setattr__(self, "specialize", values)

    def check(self, value, loss: str) -> float:
        value = as_float_param(value, self.name)
        if (self.low is not None and not value >= self.low) or \
                (self.high is not None and not value <= self.high):
            raise InvalidArgumentError(
                f"{loss}: parameter `{self.name}`={value} is outside its valid range "
                f"[{self.low if self.low is not None else '-inf'}, "
                f"{self.high if self.high is not None else 'inf'}].")
        return value


class Prepared(NamedTuple):
    """Checked, kernel-ready inputs of one call (built by a spec's ``prepare``)."""

    y: np.ndarray                    # labels, in the kernel's layout
    p: np.ndarray                    # predictions/logits, in the kernel's layout
    weights: np.ndarray              # checked against loss_shape
    loss_shape: tuple[int, ...]      # shape of the unreduced losses
    grad_shape: tuple[int, ...]      # shape of the predictions/logits as given
    out_dtype: np.dtype
    kernel_dtype: np.dtype


def prepare_elementwise(spec: "LossSpec", labels, predictions, weights) -> Prepared:
    """Two same-shape inputs, one loss per element (the default ``prepare``)."""
    label_name, prediction_name = spec.inputs
    y = as_array(labels, label_name)
    p = as_array(predictions, prediction_name)
    check_same_shape(p, y, prediction_name, label_name)
    w = as_array(weights, "weights")
    check_weights_broadcast(w, y.shape)
    # cross-entropies cast their labels to the logits' dtype, as TF does
    out, kd = float_dtypes(p) if prediction_name == "logits" else float_dtypes(y, p)
    n = y.size
    return Prepared(for_kernel(y, kd, (n,)), for_kernel(p, kd, (n,)), w, y.shape, p.shape, out, kd)


@dataclass(eq=False)
class LossSpec:
    """Everything lossforge knows about one loss.

    Attributes:
      name: the registered name (also its YAML name).
      value: the formula, ``value(y, p, *params)`` (elementwise) or ``value(y, p, j, *params)``
        (row-wise); plain Python on ``math.*``.
      grad: its derivative in the prediction, ``grad(y, p, *params)``, or for row-wise losses
        ``grad(y, p, j, scale, out, *params)``; None if the loss has no gradient.
      params: the formula's parameters after the inputs, in order.
      kind: ``"elementwise"`` or ``"rowwise"``.
      inputs: the names of the two inputs, e.g. ``("labels", "predictions")``.
      aliases: other names `get` accepts.
      reduction: the default reduction.
      doc: the formula and notes, for docs and ``lossforge describe``.
      label_range, prediction_range: the inputs' valid intervals (documentation).
      prepare: turns user inputs into a `Prepared` (row-wise losses bring their own);
        extra keyword arguments of a call that are not params go to it (e.g. ``axis``).
      example: ``example(rng, batch, classes) -> (labels, predictions, call_kwargs)``, valid
        synthetic inputs (tests, demos); the default draws elementwise inputs from the ranges.
      float32_math: whether float32 inputs run the formula's float32 variant (vectorised
        float32 math, see `float32_variant`) rather than the formula in float64. Default: yes
        for elementwise losses; no for row-wise ones, whose loops may rely on float64 sums.
        On a GPU, elementwise losses with it compute in float32 too (libdevice's ``logf``,
        ``expf``...: a float64 ``log`` costs a GPU about as much as reading the inputs).
      fused_grad: optional, for a loss with a ``grad``: what ``value`` and ``grad`` compute,
        from one evaluation that shares their work (a sigmoid's ``exp``, a softmax's
        log-sum-exp). Elementwise: ``fused_grad(y, p, *params) -> (loss, dloss/dp)``; row-wise:
        ``fused_grad(y, p, j, scale, out, *params)`` writes what ``grad`` writes and returns
        what ``value`` returns. Value-and-gradient kernels call it instead of the two; build it
        from the helpers ``value`` and ``grad`` call, so that each expression is written once
        and the numbers are the same bits. (Without it, an elementwise loss whose ``value``
        calls ``math`` still gets one loop calling ``value`` and ``grad`` in turn.)
      grad_fills_rows: row-wise losses: whether ``grad`` (and ``fused_grad``) writes every
        gradient entry of its row, whatever the inputs. Else lossforge clears the gradient
        array first, for a formula that writes only some entries.
      fast_logs: elementwise losses: a promise that ``value`` is NaN wherever a ``math.log``
        it takes is NaN, unless its result no longer depends on that log (no comparison or
        ``min``/``max`` turns a NaN log into a number). A float32 call then runs the kernels
        first with `lossforge.kernels.vmath.log_or_nan` as ``log``: the same bits for a
        positive normal argument, NaN for any other (0, subnormals, negatives, inf, NaN),
        without log's special cases; where that gives a sum that is not finite, the call
        runs again with the full ``log`` (`lossforge.compute.run`). The same numbers either
        way; the built-in log losses ran 4-8% faster at 16M float32 elements.
    """

    name: str
    value: Callable
    grad: Callable | None = None
    params: tuple[Param, ...] = ()
    kind: str = "elementwise"
    inputs: tuple[str, str] = ("labels", "predictions")
    aliases: tuple[str, ...] = ()
    reduction: Reduction = Reduction.SUM_BY_NONZERO_WEIGHTS
    doc: str = ""
    label_range: tuple[float, float] | None = None
    prediction_range: tuple[float, float] | None = None
    prepare: Callable = prepare_elementwise
    example: Callable | None = field(default=None, repr=False)
    float32_math: bool | None = field(default=None, repr=False)
    builtin: bool = field(default=False, repr=False)
    grad_fills_rows: bool = field(default=False, repr=False)
    fused_grad: Callable | None = field(default=None, repr=False)
    fast_logs: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("elementwise", "rowwise"):
            raise InvalidArgumentError(f"{self.name}: `kind` must be 'elementwise' or 'rowwise'; "
                                       f"got {self.kind!r}.")
        self.params = tuple(p if isinstance(p, Param) else Param(*p) for p in self.params)
        self.reduction = resolve_reduction(self.reduction)
        leading = 3 if self.kind == "rowwise" else 2
        _check_formula_arity(self.name, "value", self.value, leading, self.params)
        if self.grad is not None:
            _check_formula_arity(self.name, "grad", self.grad, 5 if self.kind == "rowwise" else 2,
                                 self.params)
        if self.fused_grad is not None:
            if self.grad is None:
                raise InvalidArgumentError(
                    f"{self.name}: `fused_grad` computes the value and the gradient of a loss "
                    f"that has a `grad`, and grad=None; register the loss with grad=... too, "
                    f"or drop fused_grad.")
            _check_formula_arity(self.name, "fused_grad", self.fused_grad,
                                 5 if self.kind == "rowwise" else 2, self.params)
        if self.fast_logs and self.kind != "elementwise":
            raise InvalidArgumentError(
                f"{self.name}: `fast_logs` is for elementwise losses (a row-wise kernel takes its "
                f"logs in float64); drop fast_logs=True.")
        if not self.doc:
            self.doc = inspect.getdoc(self.value) or ""
        if self.float32_math is None:
            self.float32_math = self.kind == "elementwise"
        self._fingerprint: str | None = None

    # -- identity -------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """A hash of the formulas' code, constants, helpers and referenced globals."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"{self.kind} {self.float32_math}".encode())
            _hash_function(self.value, digest, set())
            for formula in (self.grad, self.fused_grad):
                if formula is not None:
                    _hash_function(formula, digest, set())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def constants(self, params: tuple[float, ...]) -> tuple[tuple[int, float], ...]:
        """``((index, value), ...)``: the kernel ``params`` that equal a value their `Param`
        specializes (its sign too, for zeros), which a call's kernels take as constants."""
        found = ()
        for i, param in enumerate(self.params):
            v = params[i]
            for c in param.specialize:
                if v == c and math.copysign(1.0, v) == math.copysign(1.0, c):
                    found += ((i, c),)
        return found

    def example_inputs(self, rng: np.random.Generator, batch: int = 4, classes: int = 5):
        """Valid synthetic ``(labels, predictions, call_kwargs)`` for this loss (float64)."""
        if self.example is not None:
            return self.example(rng, batch, classes)
        if self.kind != "elementwise":
            raise InvalidArgumentError(f"loss {self.name!r} is row-wise and declares no `example`; "
                                       f"register it with example=... to get synthetic inputs.")
        shape = (batch, classes)
        return _draw(rng, self.label_range, shape), _draw(rng, self.prediction_range, shape), {}

    # -- calling ---------------------------------------------------------------------------

    def resolve_params(self, given: dict) -> tuple[tuple[float, ...], dict]:
        """(kernel parameters in order, the remaining keyword arguments for ``prepare``)."""
        given = dict(given)
        values = tuple(p.check(given.pop(p.name, p.default), self.name) for p in self.params)
        return values, given

    def resolve_call(self, params: dict) -> tuple[tuple[float, ...], dict]:
        """`resolve_params`, rejecting keyword arguments that neither a parameter nor
        ``prepare`` takes."""
        kernel_params, shape_args = self.resolve_params(params)
        accepted = set(_prepare_arguments(self)) if shape_args else set()
        unknown = sorted(set(shape_args) - accepted)
        if unknown:
            raise InvalidTypeError(
                f"{self.name}() got unexpected argument(s) {unknown}; its parameters are "
                f"{list(self.param_names) + sorted(accepted) or 'none'}.")
        return kernel_params, shape_args

    def _prepare(self, labels, predictions, weights, params: dict):
        kernel_params, shape_args = self.resolve_call(params)
        return self.prepare(self, labels, predictions, weights, **shape_args), kernel_params

    def route(self, params: dict) -> tuple["LossSpec", dict]:
        """(the spec that computes a call with keyword arguments ``params``, its arguments).

        Itself here; a spec with options that need another formula (the cross-entropies'
        ``class_weights``, ``pos_weight``, ``ignore_index``) returns the spec that has it.
        """
        return self, params

    def __call__(self, labels, predictions, weights=1.0, reduction=None, device="cpu", **params):
        """The weighted, reduced loss with TF's semantics (see `lossforge.losses`).

        ``device="cuda"`` computes it with the loss's CUDA kernels (``lossforge[cuda]``); inputs
        may then be device arrays (see `lossforge.kernels.cuda`).
        """
        if reduction is None:
            reduction = self.reduction
        # the fast path of small calls: a scalar reduction on the CPU, two ndarray inputs
        scalar = SCALAR_REDUCTIONS.get(reduction) if type(reduction) in _REDUCTION_TYPES else None
        if scalar is not None and self.prepare is prepare_elementwise and \
                type(device) is str and device == "cpu":
            kernel_params = None
            cached = self.__dict__.get("_params_cache")
            if cached is not None and cached[0] is self.params:
                if not params:
                    kernel_params = cached[1].get(())
                elif _all_floats(params.values()):  # (True == 1.0: only floats may hit)
                    kernel_params = cached[1].get(tuple(params.items()))
            if kernel_params is None:
                kernel_params = self._fast_params(params)
            result = compute.run_small(self, labels, predictions, weights, scalar, kernel_params)
            if result is not None:
                return result[0]
        elif scalar is not None and type(device) is str and device == "cuda":
            result = compute.run_small_cuda(self, labels, predictions, weights, scalar, params)
            if result is not None:
                return result[0]
        reduction = resolve_reduction(reduction)
        prepared, kernel_params = compute.prepare(self, labels, predictions, weights, params, device)
        return compute.run(self, prepared, kernel_params, reduction, device=device)[0]

    def _fast_params(self, params: dict) -> tuple[float, ...]:
        """The kernel parameters of a call (`resolve_call`'s, which raises the errors), cached
        per spec (in ``_params_cache``, under ``tuple(params.items())``) when the call gives no
        parameters or only non-zero, non-NaN Python floats: such values determine their
        checked floats, and no other value can hit their key (True == 1 == 1.0, 0.0 == -0.0,
        a NaN equals nothing). A spec whose ``params`` are replaced starts a fresh cache."""
        key = tuple(params.items())
        for _, value in key:
            if type(value) is not float:  # e.g. a bool, int or numpy scalar: not cached
                return self.resolve_call(params)[0]
        kernel_params = self.resolve_call(params)[0]
        if all(v == v and v != 0 for _, v in key):
            cached = self.__dict__.get("_params_cache")
            if cached is None or cached[0] is not self.params or len(cached[1]) >= 64:
                cached = self.__dict__["_params_cache"] = (self.params, {})
            cached[1][key] = kernel_params
        return kernel_params

    def value_and_grad(self, labels, predictions, weights=1.0, reduction=None, device="cpu",
                       grad_out=None, **params):
        """``(value, grad)``: the loss as `__call__` and its gradient in the predictions/logits.

        ``grad`` has the predictions' shape: the derivative of the reduced value, i.e. each
        element's derivative times its weight divided by the reduction's denominator (for
        ``Reduction.NONE``, the derivative of ``sum(L * W)``). One fused pass computes both.
        ``device`` as in `__call__`.

        ``grad_out``: an array to write the gradient into, and return, instead of a new one
        (float32 or float64 inputs): a writeable C-contiguous array of the predictions'
        shape and dtype, sharing no memory with the inputs; a device array (numba, CuPy,
        PyTorch CUDA) for ``device="cuda"``. Reusing one across steps saves the OS's zeroing
        of a fresh array's pages on the CPU (MSE value+gradient at 16M float32 elements:
        about a third of its time; without ``grad_out``, a gradient of 32 MiB or more reuses
        the memory of a dropped one instead, `lossforge.buffers`) and an allocation on the
        GPU.
        """
        if self.grad is None:
            raise InvalidArgumentError(
                f"loss {self.name!r} has no gradient formula: register it with grad=... to use "
                f"value_and_grad.")
        if type(device) is str and device == "cuda":  # repeated calls on device arrays
            chosen = self.reduction if reduction is None else reduction
            scalar = SCALAR_REDUCTIONS.get(chosen) if type(chosen) in _REDUCTION_TYPES else None
            if scalar is not None:
                result = compute.run_small_cuda(self, labels, predictions, weights, scalar, params,
                                                with_grad=True, grad_out=grad_out)
                if result is not None:
                    return result[:2]
        reduction = self.reduction if reduction is None else resolve_reduction(reduction)
        prepared, kernel_params = compute.prepare(self, labels, predictions, weights, params, device)
        value, grad, _ = compute.run(self, prepared, kernel_params, reduction, with_grad=True,
                                     device=device, grad_out=grad_out)
        return value, grad

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_cpu_kernels", None)  # compiled in this process (see compute.run): not data
        state.pop("_cpu_kernels_by_constants", None)
        state.pop("_cpu_kernels_fast_logs", None)
        state.pop("_cpu_kernels_by_constants_fast_logs", None)
        state.pop("_cuda_kernels", None)  # (see kernels.cuda.kernel_module)
        state.pop("_cuda_kernels32", None)
        state.pop("_params_cache", None)  # (see _fast_params)
        return state

    def __repr__(self) -> str:
        params = ", ".join(f"{p.name}={p.default}" for p in self.params)
        return f"LossSpec({self.name!r}, kind={self.kind!r}, inputs={self.inputs}, params=({params}))"


def _all_floats(values) -> bool:
    for value in values:
        if type(value) is not float:
            return False
    return True


_REDUCTION_TYPES = (Reduction, str)  # what `compute.SCALAR_REDUCTIONS` may hold (hashable)


def _prepare_arguments(spec: LossSpec) -> list[str]:
    """Keyword arguments a spec's ``prepare`` takes beyond the inputs (e.g. cosine's ``axis``)."""
    return list(_extra_arguments(spec.prepare))


@functools.lru_cache(maxsize=None)
def _extra_arguments(prepare) -> tuple[str, ...]:
    # inspect.signature costs ~14 us: once per prepare function, not on every call
    standard = {"spec", "labels", "predictions", "weights"}
    return tuple(name for name in inspect.signature(prepare).parameters if name not in standard)


def _draw(rng: np.random.Generator, interval, shape) -> np.ndarray:
    """Values inside ``interval`` (kept off its ends), or standard normals if unbounded."""
    if interval is None:
        return rng.normal(size=shape)
    low, high = interval
    low = -3.0 if low is None or math.isinf(low) else low
    high = low + 6.0 if high is None or math.isinf(high) else high
    margin = 0.05 * (high - low)
    return rng.uniform(low + margin, high - margin, size=shape)


def _check_formula_arity(loss: str, role: str, fn: Callable, leading: int, params) -> None:
    if not callable(fn):
        raise InvalidTypeError(f"{loss}: the {role} formula must be a function; got {fn!r}.")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{loss}: cannot inspect the {role} formula {fn!r}.") from None
    positional = [p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    expected = leading + len(params)
    if len(positional) != expected or len(positional) != len(signature.parameters):
        args = {2: "(y, p", 3: "(y, p, j", 5: "(y, p, j, scale, out"}[leading]
        names = "".join(f", {p.name}" for p in params)
        raise InvalidTypeError(
            f"{loss}: the {role} formula must take exactly {expected} positional arguments "
            f"{args}{names}); {getattr(fn, '__name__', fn)} takes {signature}.")


# --- fingerprints and compiled formulas ----------------------------------------------------------

def _hash_function(fn, digest, seen: set) -> None:
    """Hash what determines ``fn``'s compiled code, following helpers it calls (recursively)."""
    fn = getattr(fn, "py_func", fn)  # a numba dispatcher: hash its Python function
    if id(fn) in seen:
        return
    seen.add(id(fn))
    code = fn.__code__
    _hash_code(code, digest)
    for value in (fn.__defaults__ or ()):
        digest.update(repr(value).encode())
    for cell in (fn.__closure__ or ()):
        _hash_value(cell.cell_contents, digest, seen)
    for name in sorted(_global_names(code)):
        if name in fn.__globals__:
            digest.update(name.encode())
            _hash_value(fn.__globals__[name], digest, seen)


def calls_math(fn) -> bool:
    """Whether the formula ``fn``, or a helper it calls, uses ``math`` (whose float32 variant
    is vmath's polynomials: a loop that is compute-bound, not memory-bound)."""
    return _reaches(fn, lambda names, values: any(value is math for value in values), set())


def _reaches(fn, test, seen: set) -> bool:
    """Whether ``test(global names, values)`` holds for the formula ``fn`` or a helper it calls
    (a global or closure-cell function, followed once each)."""
    fn = getattr(fn, "py_func", fn)
    if id(fn) in seen:
        return False
    seen.add(id(fn))
    names = _global_names(fn.__code__)
    values = [fn.__globals__.get(name) for name in names] + \
        [c.cell_contents for c in fn.__closure__ or ()]
    return test(names, values) or any(
        isinstance(value, types.FunctionType) and _reaches(value, test, seen) for value in values)


def _global_names(code) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _hash_code(code, digest) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(const, digest)
        else:
            digest.update(repr(const).encode())


def _hash_value(value, digest, seen: set) -> None:
    if isinstance(value, types.ModuleType):
        digest.update(b"module:" + value.__name__.encode())
    elif isinstance(value, types.FunctionType) or hasattr(value, "py_func"):
        _hash_function(value, digest, seen)
    elif isinstance(value, (int, float, complex, str, bytes, bool, type(None), tuple)):
        digest.update(repr(value).encode())
    elif isinstance(value, np.generic):
        digest.update(repr(value).encode() + str(value.dtype).encode())
    else:
        digest.update(repr(type(value)).encode())


_compiled: dict[tuple[str, str, bool], object] = {}
_by_fingerprint: dict[str, LossSpec] = {}


def remember(spec: LossSpec) -> None:
    """Make ``spec``'s formulas findable by fingerprint (before its kernels are generated)."""
    _by_fingerprint[spec.fingerprint] = spec


def jitted_formula(fingerprint: str, role: str, float32: bool = False, target: str = "cpu",
                   log_or_nan: bool = False):
    """The ``numba.njit`` form of a formula (for generated kernel modules).

    Plain Python helpers the formula calls are compiled the same way, since numba cannot
    inline a call to an uncompiled function. ``float32=True`` gives the formula's float32
    variant (see `float32_variant`), which float32 kernels call so that their loops vectorise.
    ``target="cuda"`` gives the form a CUDA kernel inlines: a float32 variant keeps ``math``
    (libdevice's float32 functions, not vmath's CPU polynomials), and where the loss shares rows
    (`shares_rows`) ``row_range`` and ``across_lanes_*`` are `lossforge.kernels.warp`'s, for a
    warp running one row (device code: it compiles in CUDA kernels only). ``log_or_nan``: a
    float32 variant's ``log`` is `lossforge.kernels.vmath.log_or_nan` (`LossSpec.fast_logs`).
    """
    key = (fingerprint, role, float32, target, log_or_nan)
    if key not in _compiled:
        spec = _by_fingerprint[fingerprint]
        fn = {"value": spec.value, "grad": spec.grad, "fused_grad": spec.fused_grad}[role]
        cuda = target == "cuda"
        _compiled[key] = _jit_with_helpers(fn, {}, float32, lanes=cuda and shares_rows(spec),
                                           polynomials=not cuda, log_or_nan=log_or_nan)
    return _compiled[key]


def shares_rows(spec) -> bool:
    """Whether ``spec`` is row-wise and its formulas (or their helpers) loop with
    ``row_range``: its CUDA kernel then runs a warp per row (`lossforge.kernels.warp`)."""
    if spec.kind != "rowwise":
        return False
    seen: set = set()
    return any(fn is not None and _reaches(fn, lambda names, _: "row_range" in names, seen)
               for fn in (spec.value, spec.grad, spec.fused_grad))


def float32_variant(fn, polynomials: bool = True, log_or_nan: bool = False):
    """A copy of the plain-Python formula ``fn`` that computes in float32 where ``fn`` does.

    Numba widens ``float32 op 1.0`` to float64 (a Python float is a float64 constant), and its
    ``math.log``/``exp`` are scalar libm calls: either keeps a float32 loop from vectorising.
    The copy reads its float constants (literals, defaults, closure cells, module-level
    floats) as ``np.float32``, sees `lossforge.kernels.vmath.F32_MATH` where ``fn`` sees
    ``math`` (float32 polynomials of ``log``/``exp``/``log1p``/``tanh``, within 2 ulp), and
    ``float(v)`` becomes a float32 cast. Integers are left alone (they may be indices), so an
    integer literal still widens its expression to float64: correct, only slower.

    ``polynomials=False`` (CUDA kernels): ``math`` keeps its functions, with float32 constants
    (`lossforge.kernels.vmath.F32_LIBM`), and no helper is replaced: on a GPU numba-cuda calls
    libdevice's float32 ``logf``/``expf``..., and vmath's functions are CPU code.
    ``log_or_nan=True`` (with ``polynomials``): ``log`` is `lossforge.kernels.vmath.log_or_nan`.
    """
    from .kernels import vmath
    names = _global_names(fn.__code__)
    namespace = dict(fn.__globals__)
    f32_math = vmath.F32_MATH_LOG_OR_NAN if log_or_nan else vmath.F32_MATH
    replacements = _float32_replacements(log_or_nan)
    for name in names:
        value = namespace.get(name, getattr(builtins, name, None))
        if value is math:
            namespace[name] = f32_math if polynomials else vmath.F32_LIBM
        elif value is float:
            namespace[name] = vmath.to_float32
        elif isinstance(value, float):
            namespace[name] = np.float32(value)
        elif polynomials and isinstance(value, (types.FunctionType, types.BuiltinFunctionType)) \
                and value in replacements:
            namespace[name] = replacements[value]
    cells = tuple(types.CellType(np.float32(c.cell_contents) if isinstance(c.cell_contents, float)
                                 else c.cell_contents) for c in fn.__closure__ or ()) or None
    defaults = tuple(np.float32(d) if isinstance(d, float) else d for d in fn.__defaults__ or ()) or None
    clone = types.FunctionType(_float32_code(fn.__code__), namespace, fn.__name__, defaults, cells)
    clone.__qualname__, clone.__module__ = fn.__qualname__, fn.__module__
    return clone


def _float32_replacements(log_or_nan: bool = False) -> dict:
    from .kernels import vmath
    return vmath.REPLACEMENTS_LOG_OR_NAN if log_or_nan else vmath.REPLACEMENTS


def _float32_code(code):
    consts = tuple(np.float32(c) if type(c) is float else
                   _float32_code(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_consts=consts)


def _jit_with_helpers(fn, done: dict, float32: bool = False, lanes: bool = False,
                      polynomials: bool = True, log_or_nan: bool = False):
    import numba
    fn = getattr(fn, "py_func", fn)
    if id(fn) in done:
        return done[id(fn)]
    options = dict(inline="always", error_model="numpy")
    names = _global_names(fn.__code__)
    replaced = dict(_float32_replacements(log_or_nan) if float32 and polynomials else {})
    if lanes:
        from .kernels import warp
        lane_replacements = dict(warp.REPLACEMENTS)
        if float32:
            lane_replacements.update(warp.FLOAT32_REPLACEMENTS)
        replaced.update(lane_replacements)
    helpers = {name: value for name, value in fn.__globals__.items()
               if name in names and isinstance(value, types.FunctionType) and value not in replaced}
    cells = fn.__closure__ or ()
    if not float32 and not lanes and not helpers and \
            not any(isinstance(c.cell_contents, types.FunctionType) for c in cells):
        done[id(fn)] = jitted = numba.njit(**options)(fn)
        return jitted
    # a copy of the function whose helper functions (globals or closure cells) are compiled too
    if float32:
        clone = float32_variant(fn, polynomials, log_or_nan)
        namespace, closure = clone.__globals__, clone.__closure__
    else:
        namespace = dict(fn.__globals__)
        closure = tuple(types.CellType(c.cell_contents) for c in cells) or None
        clone = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, closure)
        clone.__qualname__, clone.__module__ = fn.__qualname__, fn.__module__
    if lanes:
        for name in names & namespace.keys():
            value = namespace[name]
            if name == warp.ROW_RANGE_NAME:
                namespace[name] = warp.lane_range
            elif isinstance(value, types.FunctionType) and value in lane_replacements:
                replacement = lane_replacements[value]  # compiled, or plain Python to compile
                # (as written, not as a float32 variant: its own `done`, its helpers' dtypes)
                namespace[name] = (_jit_with_helpers(replacement, {}, False, lanes, polynomials)
                                   if isinstance(replacement, types.FunctionType) else replacement)
    done[id(fn)] = jitted = numba.njit(**options)(clone)
    for name, helper in helpers.items():
        namespace[name] = _jit_with_helpers(helper, done, float32, lanes, polynomials, log_or_nan)
    for cell in closure or ():
        if isinstance(cell.cell_contents, types.FunctionType):
            cell.cell_contents = _jit_with_helpers(cell.cell_contents, done, float32, lanes,
                                                   polynomials, log_or_nan)
    return jitted


# --- the registry --------------------------------------------------------------------------------

_lock = threading.RLock()
_specs: dict[str, LossSpec] = {}
_aliases: dict[str, str] = {}
_plugins_loaded = False


def register(spec: LossSpec, override: bool = False) -> LossSpec:
    """Add ``spec`` under its name and aliases; a taken name is an error unless ``override``."""
    if not isinstance(spec, LossSpec):
        raise InvalidTypeError(f"register() takes a LossSpec; got {type(spec).__name__}.")
    with _lock:
        for key in (spec.name, *spec.aliases):
            owner = _aliases.get(key, key if key in _specs else None)
            if owner is not None and not override:
                raise InvalidArgumentError(
                    f"a loss named {key!r} is already registered ({_specs[owner]!r}); choose "
                    f"another name, or pass override=True to replace it.")
        if override:
            for key in (spec.name, *spec.aliases):
                unregister(key, missing_ok=True)
        _specs[spec.name] = spec
        for alias in spec.aliases:
            _aliases[alias] = spec.name
    return spec


def unregister(name: str, missing_ok: bool = False) -> None:
    """Remove the loss ``name`` (or the loss an alias points to) and its aliases."""
    with _lock:
        canonical = _aliases.get(name, name)
        spec = _specs.pop(canonical, None)
        if spec is None:
            if missing_ok:
                return
            raise _unknown(name)
        for alias in spec.aliases:
            _aliases.pop(alias, None)


def register_loss(name: str, *, grad: Callable | None = None, params=None, aliases=(),
                  kind: str = "elementwise", inputs=("labels", "predictions"),
                  reduction=Reduction.SUM_BY_NONZERO_WEIGHTS, doc: str | None = None,
                  label_range=None, prediction_range=None, override: bool = False,
                  fused_grad: Callable | None = None, fast_logs: bool = False):
    """Decorator: register a scalar formula as the loss ``name``; returns the formula unchanged.

    Args:
      name: the loss's name (in `get`, YAML configs and the CLI).
      grad: its derivative in the prediction, with the formula's arguments.
      params: ``{"delta": 1.0}`` (name -> default) or a sequence of `Param`; they are the
        formula's arguments after ``(y, p)`` and keyword arguments of the loss.
      aliases: other names for it.
      kind, inputs, reduction, doc, label_range, prediction_range, fused_grad, fast_logs: see
        `LossSpec`.
      override: replace a loss already registered under ``name``.
    """
    if isinstance(params, dict):
        params = tuple(Param(k, v) for k, v in params.items())

    def decorate(formula):
        register(LossSpec(name, formula, grad=grad, params=tuple(params or ()), kind=kind,
                          inputs=tuple(inputs), aliases=tuple(aliases), reduction=reduction,
                          doc=doc or "", label_range=label_range,
                          prediction_range=prediction_range, fused_grad=fused_grad,
                          fast_logs=fast_logs),
                 override=override)
        return formula
    return decorate


def get(name: str) -> LossSpec:
    """The `LossSpec` registered as ``name`` (or an alias); `UnknownLossError` suggests close names."""
    _load_plugins()
    with _lock:
        spec = _specs.get(_aliases.get(name, name)) if isinstance(name, str) else None
    if spec is None:
        raise _unknown(name)
    return spec


def names(include_aliases: bool = False) -> list[str]:
    """The registered loss names, sorted."""
    _load_plugins()
    with _lock:
        return sorted(list(_specs) + (list(_aliases) if include_aliases else []))


def specs() -> list[LossSpec]:
    """Every registered `LossSpec`, sorted by name."""
    _load_plugins()
    with _lock:
        return [_specs[k] for k in sorted(_specs)]


def _unknown(name) -> UnknownLossError:
    with _lock:
        known = list(_specs) + list(_aliases)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    failed = ""
    if _plugin_failures:  # the loss asked for may be one of theirs: say so at first use
        failed = (f" Loss plugins that failed to load (their losses are missing): "
                  f"{'; '.join(_plugin_failures)}.")
    return UnknownLossError(f"No loss named {name!r} is registered.{hint} "
                            f"Registered losses: {', '.join(sorted(_specs))}.{failed}")


_plugins_loading = False
_plugin_failures: list[str] = []


def _load_plugins() -> None:
    """Load the ``lossforge.losses`` entry points once; a broken one warns and is skipped.

    Other threads wait (on the registry lock) until every plugin is loaded; the loading thread
    itself may look losses up meanwhile (a plugin function calling `get`)."""
    global _plugins_loaded, _plugins_loading
    if _plugins_loaded:
        return
    with _lock:
        if _plugins_loaded or _plugins_loading:
            return
        _plugins_loading = True
        try:
            from importlib.metadata import entry_points
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    _register_plugin_object(entry.load())
                except Exception as exc:  # a plugin must never break lossforge
                    _plugin_failures.append(f"{entry.name!r} ({entry.value}): "
                                            f"{type(exc).__name__}: {exc}")
                    warnings.warn(f"lossforge: the loss plugin {entry.name!r} ({entry.value}) "
                                  f"failed to load and was skipped: {type(exc).__name__}: {exc}",
                                  RuntimeWarning, stacklevel=3)
        finally:
            _plugins_loading = False
            _plugins_loaded = True


def _register_plugin_object(obj) -> None:
    if isinstance(obj, LossSpec):
        register(obj)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _register_plugin_object(item)
    elif callable(obj):
        obj()
    else:
        raise InvalidTypeError(f"an entry point of {ENTRY_POINT_GROUP!r} must name a LossSpec, a "
                               f"list of them or a function; got {type(obj).__name__}.")


def markdown_table() -> str:
    """A Markdown table of the registered losses (the README's table is generated from this)."""
    rows = ["| loss | formula | aliases | inputs | parameters | kind |",
            "|---|---|---|---|---|---|"]
    for spec in specs():
        params = [f"`{p.name}={p.default:g}`" for p in spec.params]
        params += [f"`{name}`" for name in _prepare_arguments(spec)]
        formula = (spec.doc.splitlines()[0] if spec.doc else "").replace("``", "`").replace("|", "\\|")
        aliases = ", ".join(f"`{a}`" for a in spec.aliases) or "-"
        rows.append(f"| `{spec.name}` | {formula} | {aliases} | `{spec.inputs[0]}`, "
                    f"`{spec.inputs[1]}` | {', '.join(params) or '-'} | {spec.kind} |")
    return "\n".join(rows)
