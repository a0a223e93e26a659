"""Task-weighting strategies: the multiplier each loss term gets on each call.

* ``static``: the term's configured ``weight``.
* ``uncertainty`` (Kendall, Gal & Cipolla 2018): each term k has a learned log-variance
  ``s_k`` (initially 0); the objective adds ``weight_k exp(-s_k) L_k + s_k``. The multiplier
  reported is ``weight_k exp(-s_k)`` and each ``s_k`` is a component of its own
  (``"<term>/log_var"``), so the total stays the sum of the weighted components. ``s_k`` is
  read from the call's ``params`` under ``"log_var/<term>"`` when given (train it with your
  optimizer: `Objective.value_and_grad` returns its gradient under that key), else from
  ``strategy.log_vars``. Note the total can be negative: ``s_k`` is unbounded below.
* ``dwa`` (dynamic weight averaging, Liu, Johns & Davison 2019): with ``r_k`` the ratio of
  term k's mean loss over the last two completed epochs (from the tracker), the multiplier is
  ``weight_k K exp(r_k / T) / sum_j exp(r_j / T)``; during the first two epochs it is
  ``weight_k``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from ..errors import InvalidTypeError
from ..inputs import as_float_param
from .config import WeightingConfig

__all__ = ["make_weighting", "Static", "Uncertainty", "DynamicWeightAverage"]


class Static:
    name = "static"

    def __init__(self, terms) -> None:
        self.terms = terms

    def weights(self, tracker, params) -> dict[str, float]:
        return {t.name: t.weight for t in self.terms}


class Uncertainty(Static):
    name = "uncertainty"

    def __init__(self, terms) -> None:
        super().__init__(terms)
        self.log_vars = {t.name: 0.0 for t in terms}

    @staticmethod
    def key(term: str) -> str:
        return f"log_var/{term}"

    def log_var(self, term: str, params) -> float:
        if params is not None:
            if not isinstance(params, Mapping):
                raise InvalidTypeError(f"`params` must be a mapping of name -> value (here "
                                       f"{self.key(term)!r} -> s_k); got {type(params).__name__}.")
            if self.key(term) in params:
                return as_float_param(params[self.key(term)], f"params[{self.key(term)!r}]")
        return self.log_vars[term]

    def weights(self, tracker, params) -> dict[str, float]:
        return {t.name: t.weight * _exp(-self.log_var(t.name, params)) for t in self.terms}


def _exp(x: float) -> float:
    """``exp(x)``, inf where it overflows (math.exp raises OverflowError there)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


class DynamicWeightAverage(Static):
    name = "dwa"

    def __init__(self, terms, temperature: float) -> None:
        super().__init__(terms)
        self.temperature = temperature

    def weights(self, tracker, params) -> dict[str, float]:
        epoch = tracker.epoch
        if epoch < 2:
            return super().weights(tracker, params)
        ratios = {}
        for t in self.terms:
            previous, before = (tracker.mean(t.name, epoch=epoch - 1),
                                tracker.mean(t.name, epoch=epoch - 2))
            ratios[t.name] = previous / before if before != 0 else 1.0
        top = max(r / self.temperature for r in ratios.values())
        exps = {k: math.exp(r / self.temperature - top) for k, r in ratios.items()}
        norm = sum(exps.values())
        return {t.name: t.weight * len(self.terms) * exps[t.name] / norm for t in self.terms}


def make_weighting(config: WeightingConfig, terms):
    if config.strategy == "uncertainty":
        return Uncertainty(terms)
    if config.strategy == "dwa":
        return DynamicWeightAverage(terms, config.temperature)
    return Static(terms)
