"""Input checks and conversions shared by every loss: arrays, dtypes, shapes, weights.

Everything here runs before a kernel: it turns user input (arrays, lists, scalars of any
numeric dtype, any memory order) into the few array types the kernels are compiled for,
and raises `InvalidArgumentError` / `InvalidTypeError` naming the argument otherwise.
Nothing here writes to the caller's arrays.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .errors import InvalidArgumentError, InvalidTypeError

#: The dtype kinds `as_array` accepts: bool, signed, unsigned, float.
NUMERIC_KINDS = "biuf"


def as_array(value, name: str) -> np.ndarray:
    """``np.asarray(value)`` for a real numeric input, or a clear error naming ``name``."""
    if value is None:
        raise InvalidArgumentError(f"Argument `{name}` must not be None.")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(
            f"Argument `{name}` could not be converted to an array ({exc}); pass a numpy "
            f"array or a rectangular nested list of numbers.") from None
    if array.dtype.kind not in NUMERIC_KINDS:
        raise InvalidTypeError(
            f"Argument `{name}` must hold real numbers (bool, int or float); got dtype "
            f"{array.dtype} with shape {array.shape}.")
    return array


def float_dtypes(*arrays: np.ndarray) -> tuple[np.dtype, np.dtype]:
    """(output dtype, kernel dtype) for inputs: floats promote, ints and bools count as float32.

    float16 results are computed by float32 kernels and cast back; all reductions accumulate
    in float64 regardless.
    """
    return _float_dtypes(tuple(a.dtype for a in arrays))


@functools.lru_cache(maxsize=256)
def _float_dtypes(dtypes: tuple[np.dtype, ...]) -> tuple[np.dtype, np.dtype]:
    floats = [d for d in dtypes if d.kind == "f"]
    out = np.result_type(*floats) if floats else np.dtype(np.float32)
    if out.itemsize > 8:  # long double: compute in float64, report float64
        out = np.dtype(np.float64)
    kernel = np.dtype(np.float64) if out == np.float64 else np.dtype(np.float32)
    return out, kernel


def for_kernel(array: np.ndarray, dtype: np.dtype, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A read-only C-contiguous array of ``dtype`` (reshaped to ``shape``), copying only when
    needed.

    Always read-only (a view when no copy is made; the caller's array is untouched): numba
    compiles a kernel per combination of its arguments' writeable flags, so read-only and
    memory-mapped inputs would otherwise each cost their own compile of every kernel.
    """
    out = np.ascontiguousarray(array, dtype=dtype)
    out = out.view() if shape is None else out.reshape(shape)
    out.flags.writeable = False
    return out


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """TF's ``assert_is_compatible_with`` on static shapes: identical, no broadcasting."""
    if a.shape != b.shape:
        raise InvalidArgumentError(
            f"Shapes {a.shape} (`{name_a}`) and {b.shape} (`{name_b}`) are incompatible: they "
            f"must be identical (lossforge, like TensorFlow, does not broadcast them).")


def as_float_param(value, name: str) -> float:
    """A scalar numeric parameter (``delta``, ``epsilon``, ``label_smoothing``) as a Python float.

    Real numbers (Python or NumPy scalars, 0-d arrays) only: a bool, a string (even "1.5"), an
    array of other than one dimension-less element, or an int too large for a float is an error.
    """
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, np.ndarray) and
                                               value.dtype.kind == "b"):
        raise InvalidTypeError(f"Parameter `{name}` must be a number, got a bool ({value!r}).")
    if isinstance(value, (str, bytes)):
        raise InvalidTypeError(f"Parameter `{name}` must be a real number, not a string "
                               f"({value!r}); write it as a number.")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise InvalidTypeError(
            f"Parameter `{name}` must be a real number; got {type(value).__name__} {value!r}.") from None
    except OverflowError:
        raise InvalidArgumentError(
            f"Parameter `{name}`={value!r} is too large for a float.") from None
    return result


def check_weights_broadcast(weights: np.ndarray, loss_shape: tuple[int, ...], name: str = "weights") -> None:
    """TF's ``assert_broadcastable``: a scalar, or the same rank with each dim 1 or equal."""
    if weights.ndim == 0:
        return
    if weights.ndim != len(loss_shape):
        raise InvalidArgumentError(
            f"{name} can not be broadcast to values. values.rank={len(loss_shape)}. "
            f"weights.rank={weights.ndim}. values.shape={loss_shape}. weights.shape={weights.shape}. "
            f"Pass a scalar, or weights of rank {len(loss_shape)} whose every dim is 1 or equal to "
            f"the loss's (e.g. shape {_per_sample(loss_shape)} for one weight per sample).")
    for i, (w, l) in enumerate(zip(weights.shape, loss_shape)):
        if w != 1 and w != l:
            raise InvalidArgumentError(
                f"{name} can not be broadcast to values. Mismatch at dim {i}: "
                f"values.shape={loss_shape}, weights.shape={weights.shape}; each weights dim must "
                f"be 1 or equal to the loss's dim.")


def _per_sample(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[:1] + (1,) * (len(shape) - 1) if shape else ()


@functools.lru_cache(maxsize=64)
def _scalar_view(value: bytes, dtype: np.dtype, size: int) -> np.ndarray:
    """A read-only ``(1, 1, size)`` view of one weight (its bytes: -0.0 and NaNs stay
    themselves), all strides 0; cached, as a training loop passes the same scalar weight with
    the same shapes on every step."""
    view = np.ndarray((1, 1, size), dtype, _one_weight(value, dtype), 0, (0, 0, 0))
    view.flags.writeable = False  # (already read-only through its buffer; said for clarity)
    return view


@functools.lru_cache(maxsize=64)
def _one_weight(value: bytes, dtype: np.dtype) -> np.ndarray:
    array = np.frombuffer(value, dtype).copy()
    array.flags.writeable = False
    return array


def scalar_weight(weights: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A 0-d weight as a read-only 1-element array of ``dtype`` (what the elementwise kernels
    take for a scalar weight; cached by value, so a training loop allocates nothing)."""
    return _one_weight(np.asarray(weights, dtype=dtype).tobytes(), np.dtype(dtype))


def weights_view(weights: np.ndarray, loss_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only 3-d view ``(A, M, I)`` of the broadcast weights over the flattened losses.

    Flat loss element ``j`` has weight ``view[j // (M*I), (j // I) % M, j % I]``. Broadcast
    dims have stride 0, so nothing of the losses' size is allocated for scalar, per-sample
    or per-feature weights. Dims are merged into runs that are all-broadcast or all-full;
    the rare pattern with more than three runs is materialised once (weights only).
    """
    w = np.asarray(weights, dtype=dtype)
    if w.ndim == 0:
        return _scalar_view(w.tobytes(), w.dtype, math.prod(loss_shape))
    w = np.ascontiguousarray(w)
    runs: list[list] = []  # [is_full, loss_size]
    for wd, ld in zip(w.shape, loss_shape):
        if ld == 1:
            continue
        full = wd == ld
        if runs and runs[-1][0] == full:
            runs[-1][1] *= ld
        else:
            runs.append([full, ld])
    if len(runs) > 3:
        full_w = np.ascontiguousarray(np.broadcast_to(w, loss_shape))
        return np.broadcast_to(full_w.reshape(1, 1, -1), (1, 1, full_w.size))
    runs = [[False, 1]] * (3 - len(runs)) + runs
    sizes = tuple(size for _, size in runs)
    own = tuple(size if full else 1 for full, size in runs)
    view = np.broadcast_to(w.reshape(own), sizes)
    # kernels index this view without bounds checks: it must cover every loss element
    assert view.size == math.prod(loss_shape), (weights.shape, loss_shape)
    return view


def check_grad_dtype(dtype: np.dtype, result_dtype: np.dtype) -> None:
    """Refuse a ``grad_out`` where the gradient, computed in ``dtype``, is returned as another
    ``result_dtype`` (float16 or integer inputs): the kernel could not write the result into
    it. Shared by the CPU's and the GPU's `check_grad_out`."""
    if result_dtype != dtype:
        raise InvalidArgumentError(
            f"`grad_out` needs float32 or float64 inputs: these give a {result_dtype} gradient, "
            f"computed in {dtype} and then converted. Cast the inputs, or pass grad_out=None.")


def check_grad_out(grad_out, shape: tuple[int, ...], dtype: np.dtype, result_dtype: np.dtype,
                   reads=()) -> np.ndarray:
    """``grad_out`` if the kernel can write a gradient of ``shape`` and ``dtype`` into it, the
    gradient's ``result_dtype`` being that dtype (no conversion after the kernel): a writeable,
    C-contiguous ndarray that shares no memory with the arrays it ``reads``."""
    check_grad_dtype(dtype, result_dtype)
    if not isinstance(grad_out, np.ndarray):
        raise InvalidTypeError(f"`grad_out` must be a numpy array; got {type(grad_out).__name__}. "
                               f"Pass np.empty({shape}, dtype=np.{dtype}) and reuse it.")
    problems = []
    if grad_out.shape != tuple(shape):
        problems.append(f"shape {grad_out.shape}, not the predictions' {tuple(shape)}")
    if grad_out.dtype != dtype:
        problems.append(f"dtype {grad_out.dtype}, not the gradient's {dtype}")
    if not grad_out.flags.c_contiguous:
        problems.append("not C-contiguous")
    if not grad_out.flags.writeable:
        problems.append("read-only")
    if any(np.may_share_memory(grad_out, a) for a in reads):
        problems.append("it shares memory with the inputs the kernel reads")
    if problems:
        raise InvalidArgumentError(
            f"`grad_out` cannot hold the gradient: {'; '.join(problems)}. Pass a writeable "
            f"array of its own, np.empty({tuple(shape)}, dtype=np.{dtype}), or grad_out=None.")
    return grad_out
