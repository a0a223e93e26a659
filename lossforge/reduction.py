"""Reductions: the `Reduction` enum, the additive partial state kernels return, and `finalize`.

A reduced loss is never computed directly. Each kernel returns a `LossState` of four sums over
the (broadcast) weighted losses; `finalize` turns it into the requested reduction. States add,
so chunked, streamed or distributed evaluation gives the same number as one pass.

==========================  =================================  ==========================
Reduction                   string value (TF)                  result
==========================  =================================  ==========================
NONE                        ``"none"``                         ``L * W`` (shape of L)
SUM                         ``"weighted_sum"``                 ``S = sum(L * W)``
MEAN                        ``"weighted_mean"``                ``div_no_nan(S, sum(W))``
SUM_OVER_BATCH_SIZE         ``"weighted_sum_over_batch_size"`` ``div_no_nan(S, size(L))``
SUM_BY_NONZERO_WEIGHTS      ``"weighted_sum_by_nonzero_weights"`` ``div_no_nan(S, count(W != 0))``
SUM_OVER_NONZERO_WEIGHTS    (alias of the above)               same
==========================  =================================  ==========================

``W`` is the weights broadcast to the losses' shape, so ``sum(W)`` and ``count(W != 0)`` count
broadcast copies. ``div_no_nan(x, 0) == 0`` even when ``x`` is NaN or inf; a negative
denominator divides normally.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import InvalidArgumentError

__all__ = ["Reduction", "LossState", "div_no_nan", "finalize", "make_state", "resolve_reduction"]


class Reduction(str, enum.Enum):
    """How a weighted loss is reduced (``tf.compat.v1.losses.Reduction``).

    Members compare equal to TF's string values, and ``reduction=`` accepts either.
    The default of every loss function is ``SUM_BY_NONZERO_WEIGHTS``.
    """

    NONE = "none"
    SUM = "weighted_sum"
    MEAN = "weighted_mean"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"
    SUM_OVER_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"  # TF's alias: same value

    @classmethod
    def all(cls) -> tuple["Reduction", ...]:
        """All six keys, the alias listed twice, as TF's ``Reduction.all()`` returns them."""
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE,
                cls.SUM_OVER_NONZERO_WEIGHTS, cls.SUM_BY_NONZERO_WEIGHTS)

    @classmethod
    def validate(cls, key) -> None:
        """Raise ValueError unless ``key`` is a member or one of TF's string values."""
        resolve_reduction(key)

    def __str__(self) -> str:
        return self.value


_VALID = ", ".join(f"Reduction.{name} ({m.value!r})" for name, m in Reduction.__members__.items())


def resolve_reduction(reduction) -> Reduction:
    """Map a `Reduction` member or TF string value to the member; anything else is a ValueError."""
    if isinstance(reduction, Reduction):
        return reduction
    if isinstance(reduction, str):
        try:
            return Reduction(reduction)
        except ValueError:
            pass
    raise InvalidArgumentError(
        f"Invalid Reduction Key: `reduction`={reduction!r}. Valid keys are: {_VALID}.")


def div_no_nan(x: float, y: float) -> float:
    """``x / y``, or 0.0 when ``y == 0`` (even if ``x`` is NaN or inf), as ``tf.math.divide_no_nan``."""
    return 0.0 if y == 0 else x / y


@dataclass(frozen=True)
class LossState:
    """The additive partial state of a weighted loss over some elements.

    Attributes:
      weighted_sum: ``sum(L * W)`` accumulated in float64.
      weight_sum: ``sum(W)`` over the broadcast weights.
      nonzero_count: ``count(W != 0)`` over the broadcast weights (NaN weights count).
      element_count: the number of loss elements, ``size(L)``.
    """

    weighted_sum: float = 0.0
    weight_sum: float = 0.0
    nonzero_count: float = 0.0
    element_count: int = 0

    def __add__(self, other: "LossState") -> "LossState":
        if not isinstance(other, LossState):
            return NotImplemented
        return LossState(self.weighted_sum + other.weighted_sum,
                         self.weight_sum + other.weight_sum,
                         self.nonzero_count + other.nonzero_count,
                         self.element_count + other.element_count)

    def finalize(self, reduction) -> float:
        """The reduced value of this state for a scalar reduction (not NONE)."""
        return finalize(self, reduction)


_new = object.__new__


def make_state(weighted_sum: float, weight_sum: float, nonzero_count: float,
               element_count: int) -> LossState:
    """``LossState(weighted_sum, weight_sum, nonzero_count, element_count)``, built without the
    frozen dataclass's ``__init__`` (one field assignment at a time through ``object``): for
    the hot paths that make one per call. Equal, hashing and pickling alike."""
    state = _new(LossState)
    state.__dict__.update(weighted_sum=weighted_sum, weight_sum=weight_sum,
                          nonzero_count=nonzero_count, element_count=element_count)
    return state


def finalize(state: LossState, reduction) -> float:
    """Turn a partial state into the scalar value of ``reduction`` (float64)."""
    reduction = resolve_reduction(reduction)
    if reduction is Reduction.NONE:
        raise InvalidArgumentError(
            "Reduction.NONE has no scalar value: `finalize` needs a reducing `reduction`; "
            "NONE returns the weighted losses themselves.")
    return finalize_sums(state.weighted_sum, state.weight_sum, state.nonzero_count,
                         state.element_count, reduction)


def finalize_sums(weighted_sum: float, weight_sum: float, nonzero_count: float,
                  element_count: int, reduction: Reduction) -> float:
    """`finalize` of the sums themselves (no `LossState` to build: the small-call fast path),
    for a reducing `Reduction` member."""
    # (the members as module constants: `Reduction.SUM` is a class attribute lookup through
    # the enum's metaclass, ~70 ns each; div_no_nan inlined: one call fewer per small call)
    if reduction is _SUM:
        return weighted_sum
    if reduction is _MEAN:
        denominator = weight_sum
    elif reduction is _SUM_OVER_BATCH_SIZE:
        denominator = float(element_count)
    else:
        denominator = nonzero_count
    return 0.0 if denominator == 0 else weighted_sum / denominator


_SUM, _MEAN, _SUM_OVER_BATCH_SIZE = Reduction.SUM, Reduction.MEAN, Reduction.SUM_OVER_BATCH_SIZE
