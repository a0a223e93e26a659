"""`Objective.evaluate_stacked`: K independent results, one kernel launch per term."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError, LossforgeError
from ..reduction import LossState, Reduction

__all__ = ["StackedComponent", "StackedResult", "evaluate_stacked"]


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class StackedComponent:
    """One component over K batches: ``value`` and ``weighted`` are float64 arrays of length K.

    For a loss term, ``states`` is the ``(K, 4)`` array of the batches' partial states
    (weighted sum, weight sum, non-zero count, element count); `state` gives one as a
    `LossState`.
    """

    name: str
    value: np.ndarray
    weight: float
    weighted: np.ndarray
    kind: str = "term"
    states: np.ndarray | None = None
    reduction: Reduction | None = None
    dtype: str | None = None

    def state(self, k: int) -> LossState | None:
        """The `LossState` of batch ``k`` (None for regularizers and log-variances)."""
        if self.states is None:
            return None
        ws, w, nz, n = self.states[k]
        return LossState(float(ws), float(w), float(nz), int(n))


@dataclass(frozen=True)
class StackedResult:
    """K results of `Objective.evaluate_stacked`: ``total`` (length K) and each component.

    ``result["name"]`` is a `StackedComponent`; ``result.at(k)`` is batch ``k``'s
    `ObjectiveResult` (what a separate call on it gives); ``len(result)`` is K.
    """

    total: np.ndarray
    components: MappingProxyType

    def __len__(self) -> int:
        return len(self.total)

    def __getitem__(self, name: str) -> StackedComponent:
        return self.components[name]

    def at(self, k: int):
        """Batch ``k``'s result as an `ObjectiveResult` (with its states)."""
        from .objective import Component, ObjectiveResult
        components = {c.name: Component(c.name, float(c.value[k]), c.weight, float(c.weighted[k]),
                                        c.kind, c.state(k), c.reduction, c.dtype)
                      for c in self.components.values()}
        return ObjectiveResult(float(self.total[k]), MappingProxyType(components))

    def results(self) -> list:
        """Every batch's `ObjectiveResult`, in order."""
        return [self.at(k) for k in range(len(self))]

    def as_dict(self) -> dict:
        """``{"total": array, "<name>": array, "<name>/weight": float, "<name>/weighted": array}``"""
        out = {"total": self.total}
        for c in self.components.values():
            out.update({c.name: c.value, f"{c.name}/weight": c.weight, f"{c.name}/weighted": c.weighted})
        return out


def _div_no_nan(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(x, y, out=out, where=y != 0)
    return out


def finalize_states(states: np.ndarray, reduction: Reduction) -> np.ndarray:
    """`lossforge.reduction.finalize` of each row of ``states`` (float64, length K)."""
    ws, w, nz, n = states.T
    if reduction is Reduction.SUM:
        return ws.copy()
    if reduction is Reduction.MEAN:
        return _div_no_nan(ws, w)
    if reduction is Reduction.SUM_OVER_BATCH_SIZE:
        return _div_no_nan(ws, n)
    return _div_no_nan(ws, nz)


def evaluate_stacked(objective, batch, batch_axis, params, device) -> StackedResult:
    from ..stacked import stacked_states
    if not isinstance(batch, Mapping):
        raise InvalidTypeError(f"objective {objective.name!r}: `batch` must be a mapping of batch "
                               f"key -> stacked array; got {type(batch).__name__}.")
    weights = objective.weighting.weights(objective.tracker, params)
    fixed = objective._fixed_components(params)
    components = {}
    count = None
    for term in objective.config.terms:
        spec = objective._specs[term.name]
        args = {}
        for arg, key in term.inputs.items():
            if key not in batch:
                raise InvalidArgumentError(
                    f"objective {objective.name!r}, term {term.name!r} ({spec.name}): the batch "
                    f"has no key {key!r} for input {arg!r}; batch keys: {sorted(batch.keys())}.")
            args[arg] = batch[key]
        reduction = term.reduction or spec.reduction
        try:
            states, dtype = stacked_states(spec, args[spec.inputs[0]], args[spec.inputs[1]],
                                           args.get("weights", 1.0), dict(term.params),
                                           batch_axis, device)
        except LossforgeError as exc:
            raise type(exc)(f"objective {objective.name!r}, term {term.name!r} ({spec.name}): "
                            f"{exc}") from None
        if count is not None and len(states) != count:
            raise InvalidArgumentError(
                f"objective {objective.name!r}: term {term.name!r} has {len(states)} batches "
                f"along `batch_axis` but the terms before it have {count}.")
        count = len(states)
        value = finalize_states(states, reduction).astype(dtype).astype(np.float64)
        weight = float(weights[term.name])
        components[term.name] = StackedComponent(term.name, _frozen(value), weight,
                                                 _frozen(weight * value), "term",
                                                 _frozen(states), reduction, dtype.name)
    for name, kind, value in fixed:
        full = np.full(count, value)
        components[name] = StackedComponent(name, _frozen(full), 1.0, _frozen(full.copy()), kind)
    total = np.zeros(count)
    for c in components.values():
        total = total + c.weighted  # in component order, as a single call sums
    return StackedResult(_frozen(total), MappingProxyType(components))
