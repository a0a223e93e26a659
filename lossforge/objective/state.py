"""`ObjectiveState`: the additive partial state of a whole objective, to merge and serialise.

Every loss term of an `ObjectiveResult` comes from a `LossState` (sum of weighted losses, sum
of weights, count of non-zero weights, count of elements), and those add. An `ObjectiveState`
holds, per component in result order,

* for a loss term: its `LossState`, its `Reduction`, its task weight and its output dtype;
* for a regularizer or an uncertainty log-variance (``"<term>/log_var"``): its value, which
  depends on the parameters only, not on the data, so it is taken once, not summed.

``a + b`` adds the terms' states (the two must come from the same objective, with the same
task weights and the same regularizer values: the same ``params``), and `finalize` turns a
state into the `ObjectiveResult` one call on all the data would give, to float64 rounding.
States go to and from plain JSON-able dicts (`to_dict` / `from_dict`, `to_json` /
`from_json`), so results computed by separate processes or machines can be combined::

    >>> import lossforge, numpy as np
    >>> objective = lossforge.load_objective(
    ...     {"terms": {"mse": {"loss": "mean_squared_error",
    ...                        "inputs": {"labels": "y", "predictions": "p"}}}})
    >>> y, p = np.arange(6.0), np.zeros(6)
    >>> a = objective({"y": y[:2], "p": p[:2]})        # e.g. on worker 1
    >>> b = objective({"y": y[2:], "p": p[2:]})        # e.g. on worker 2
    >>> text = b.state.to_json()                       # ... sent back as JSON
    >>> merged = a.state + lossforge.ObjectiveState.from_json(text)
    >>> merged.finalize().total == objective({"y": y, "p": p}).total   # (0+1+...+25)/6
    True
    >>> (a + b).total == merged.finalize().total       # results add through their states
    True
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError
from ..reduction import LossState, finalize, resolve_reduction

__all__ = ["ComponentState", "ObjectiveState", "FORMAT"]

#: The ``"format"`` tag of `ObjectiveState.to_dict`.
FORMAT = "lossforge.ObjectiveState/1"

_KINDS = ("term", "regularizer", "log_var")
_DTYPES = ("float16", "float32", "float64")


@dataclass(frozen=True)
class ComponentState:
    """One component's share of an `ObjectiveState`.

    ``kind == "term"``: ``state`` (a `LossState`), ``reduction``, ``weight`` (the task weight
    the term was evaluated with) and ``dtype`` (the loss's output dtype: float32 inputs give
    float32-rounded values, as a direct call does). Other kinds: ``value`` (weight 1.0).
    """

    name: str
    kind: str
    weight: float = 1.0
    value: float | None = None
    state: LossState | None = None
    reduction: object = None
    dtype: str = "float64"

    def finalized_value(self) -> float:
        if self.kind != "term":
            return self.value
        return float(np.dtype(self.dtype).type(finalize(self.state, self.reduction)))


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@dataclass(frozen=True)
class ObjectiveState:
    """The mergeable, serialisable partial state of an objective's result (see the module).

    ``components`` maps each component name to its `ComponentState`, in result order.
    """

    components: MappingProxyType

    def __post_init__(self) -> None:
        if not isinstance(self.components, MappingProxyType):
            object.__setattr__(self, "components", MappingProxyType(dict(self.components)))

    @classmethod
    def from_components(cls, components) -> "ObjectiveState":
        """The state of a result's ``components`` (a mapping of name -> `Component`)."""
        out = {}
        for c in components.values():
            if c.kind == "term":
                out[c.name] = ComponentState(c.name, "term", float(c.weight), state=c.state,
                                             reduction=c.reduction,
                                             dtype=getattr(c, "dtype", None) or "float64")
            else:
                out[c.name] = ComponentState(c.name, c.kind, 1.0, value=float(c.value))
        return cls(out)

    def __getitem__(self, name: str) -> ComponentState:
        return self.components[name]

    # -- merging --------------------------------------------------------------------------------

    def __add__(self, other: "ObjectiveState") -> "ObjectiveState":
        if not isinstance(other, ObjectiveState):
            return NotImplemented
        if list(self.components) != list(other.components):
            raise InvalidArgumentError(
                f"cannot add the states of different objectives: components "
                f"{list(self.components)} and {list(other.components)}.")
        merged = {}
        for name, a in self.components.items():
            b = other.components[name]
            if a.kind != b.kind:
                raise InvalidArgumentError(f"cannot add states: component {name!r} is a {a.kind} "
                                           f"in one and a {b.kind} in the other.")
            if a.kind == "term":
                if a.reduction != b.reduction:
                    raise InvalidArgumentError(
                        f"cannot add states: term {name!r} was reduced with {a.reduction} in one "
                        f"and {b.reduction} in the other.")
                if not _same(a.weight, b.weight):
                    raise InvalidArgumentError(
                        f"cannot add states: term {name!r} has task weight {a.weight!r} in one "
                        f"and {b.weight!r} in the other; only results evaluated with the same "
                        f"weights (same params, same tracker epoch under DWA) add up.")
                dtype = np.result_type(np.dtype(a.dtype), np.dtype(b.dtype)).name
                merged[name] = ComponentState(name, "term", a.weight, state=a.state + b.state,
                                              reduction=a.reduction, dtype=dtype)
            else:
                if not _same(a.value, b.value):
                    raise InvalidArgumentError(
                        f"cannot add states: {a.kind} {name!r} is {a.value!r} in one and "
                        f"{b.value!r} in the other. It depends on the params only, so it is "
                        f"taken once, not summed: evaluate every part with the same params.")
                merged[name] = a
        return ObjectiveState(merged)

    def __radd__(self, other):
        if isinstance(other, (int, float)) and other == 0:  # sum(states)
            return self
        return NotImplemented

    # -- results --------------------------------------------------------------------------------

    def finalize(self):
        """The `ObjectiveResult` of this state: each term's reduction of its summed state
        (cast to its output dtype) times its weight, the regularizers and log-variances as
        they are, and their total."""
        from .objective import Component, ObjectiveResult
        components = {}
        for c in self.components.values():
            value = c.finalized_value()
            components[c.name] = Component(c.name, value, c.weight, c.weight * value, c.kind,
                                           c.state, c.reduction, c.dtype if c.kind == "term" else None)
        total = 0.0
        for c in components.values():
            total += c.weighted
        return ObjectiveResult(total, MappingProxyType(components))

    # -- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain data (str, float, int, list, dict) that `from_dict` turns back into an equal
        state; floats are kept exactly (JSON writes NaN/inf as ``NaN``/``Infinity``)."""
        items = []
        for c in self.components.values():
            item = {"name": c.name, "kind": c.kind, "weight": c.weight}
            if c.kind == "term":
                s = c.state
                item.update(reduction=c.reduction.value, dtype=c.dtype,
                            state={"weighted_sum": s.weighted_sum, "weight_sum": s.weight_sum,
                                   "nonzero_count": s.nonzero_count,
                                   "element_count": int(s.element_count)})
            else:
                item["value"] = c.value
            items.append(item)
        return {"format": FORMAT, "components": items}

    @classmethod
    def from_dict(cls, data) -> "ObjectiveState":
        """The state written by `to_dict`; malformed data is an `InvalidArgumentError`."""
        if not isinstance(data, dict) or data.get("format") != FORMAT or \
                not isinstance(data.get("components"), list):
            raise InvalidArgumentError(
                f"`data` is not an ObjectiveState dict: expected {{'format': {FORMAT!r}, "
                f"'components': [...]}}; got {_short(data)}.")
        out = {}
        for i, item in enumerate(data["components"]):
            where = f"`data['components'][{i}]`"
            try:
                name, kind, weight = str(item["name"]), item["kind"], _float(item["weight"])
                if kind not in _KINDS:
                    raise InvalidArgumentError(f"{where}: kind must be one of {_KINDS}; got {kind!r}.")
                if kind == "term":
                    s = item["state"]
                    count = s["element_count"]
                    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                        raise InvalidArgumentError(f"{where}: element_count must be an int >= 0; "
                                                   f"got {count!r}.")
                    if item["dtype"] not in _DTYPES:
                        raise InvalidArgumentError(f"{where}: dtype must be one of {_DTYPES}; got "
                                                   f"{item['dtype']!r}.")
                    state = LossState(_float(s["weighted_sum"]), _float(s["weight_sum"]),
                                      _float(s["nonzero_count"]), count)
                    out[name] = ComponentState(name, kind, weight, state=state,
                                               reduction=resolve_reduction(item["reduction"]),
                                               dtype=item["dtype"])
                else:
                    out[name] = ComponentState(name, kind, weight, value=_float(item["value"]))
            except (KeyError, TypeError) as exc:
                raise InvalidArgumentError(f"{where} is malformed ({type(exc).__name__}: {exc}): "
                                           f"{_short(item)}.") from None
        return cls(out)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "ObjectiveState":
        if not isinstance(text, (str, bytes)):
            raise InvalidTypeError(f"`text` must be a JSON string; got {type(text).__name__}.")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidArgumentError(f"`text` is not valid JSON: {exc}.") from None
        return cls.from_dict(data)


def _float(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
