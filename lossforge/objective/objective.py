"""`Objective`: a weighted multi-task loss built from a config, called as one function."""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .. import compute, registry
from ..errors import InvalidArgumentError, InvalidTypeError, LossforgeError
from ..reduction import LossState, Reduction, make_state
from .config import ObjectiveConfig, parse_config
from .regularizers import regularizer_grad, regularizer_value
from .tracker import Tracker
from .weighting import Static, Uncertainty, make_weighting

__all__ = ["Component", "Objective", "ObjectiveResult", "load_objective"]


@dataclass(frozen=True)
class Component:
    """One component of a result: ``weighted == weight * value``.

    ``kind`` is ``"term"`` (a loss; ``state`` holds its partial sums and ``reduction``),
    ``"regularizer"`` (``value`` is the whole term, scale included; ``weight`` 1.0) or
    ``"log_var"`` (uncertainty weighting's ``s_k``; weight 1.0). ``dtype`` is a term's output
    dtype (``"float32"`` for float32 inputs: ``value`` is then float32-rounded).
    """

    name: str
    value: float
    weight: float
    weighted: float
    kind: str = "term"
    state: LossState | None = None
    reduction: Reduction | None = None
    dtype: str | None = None


@dataclass(frozen=True)
class ObjectiveResult:
    """``total`` and every component by name; ``total == sum(c.weighted for c in components)``.

    ``result.state`` is its mergeable, serialisable `ObjectiveState`; ``a + b`` is the result
    of the merged states (what one call on both batches gives, for results evaluated with the
    same params and weights).
    """

    total: float
    components: MappingProxyType

    def __getitem__(self, name: str) -> Component:
        return self.components[name]

    @property
    def state(self):
        """The `ObjectiveState` of this result: per loss term its `LossState`, reduction,
        weight and dtype; per regularizer / log-variance its value."""
        from .state import ObjectiveState
        return ObjectiveState.from_components(self.components)

    def __add__(self, other: "ObjectiveResult") -> "ObjectiveResult":
        if not isinstance(other, ObjectiveResult):
            return NotImplemented
        return (self.state + other.state).finalize()

    def __radd__(self, other):
        if isinstance(other, (int, float)) and other == 0:  # sum(results)
            return self
        return NotImplemented

    def __reduce__(self):  # a mappingproxy does not pickle; results cross process pools
        return (_result, (self.total, dict(self.components)))

    def as_dict(self) -> dict[str, float]:
        """``{"total": ..., "<name>": value, "<name>/weight": ..., "<name>/weighted": ...}``"""
        out = {"total": self.total}
        for c in self.components.values():
            out.update({c.name: c.value, f"{c.name}/weight": c.weight, f"{c.name}/weighted": c.weighted})
        return out


def _result(total, components) -> ObjectiveResult:
    return ObjectiveResult(total, MappingProxyType(components))


class Objective:
    """A weighted sum of loss terms and regularizers, declared by a config.

    Example::

        objective = lossforge.load_objective("configs/multitask.yaml")
        result = objective(batch, params={"fc_w": fc_w})
        result.total, result.components["depth"].weighted
        result, grads = objective.value_and_grad(batch, params={"fc_w": fc_w})
        objective.tracker.mean("depth")            # exact mean since the last reset
    """

    def __init__(self, config: ObjectiveConfig) -> None:
        self.config = config
        self.name = config.name
        self._specs = {t.name: registry.get(t.loss) for t in config.terms}
        self.weighting = make_weighting(config.weighting, config.terms)
        self.tracker = Tracker()

    def __getstate__(self) -> dict:
        """Pickled (e.g. for a process pool) as its config, weighting and tracker; the losses'
        specs, which hold compiled kernels, are looked up by name again when unpickled (a loss
        registered at run time must be registered in the receiving process too)."""
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_specs", "_plans", "_fast_plans", "_call_plan")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._specs = {t.name: registry.get(t.loss) for t in self.config.terms}

    @classmethod
    def from_dict(cls, data: dict) -> "Objective":
        return cls(parse_config(data))

    def to_dict(self) -> dict:
        return self.config.to_dict()

    def __repr__(self) -> str:
        parts = [f"{t.weight:g} x {t.loss}({t.name})" for t in self.config.terms]
        parts += [f"{r.type}({r.name})" for r in self.config.regularizers]
        return f"Objective({self.name!r}: {' + '.join(parts)}, weighting={self.weighting.name})"

    @property
    def batch_keys(self) -> list[str]:
        """Every batch key the terms read."""
        return sorted({key for t in self.config.terms for key in t.inputs.values()})

    def example_batch(self, seed: int = 0, batch_size: int = 32, classes: int = 10):
        """``(batch, params)`` of synthetic data that fits every term, generated deterministically
        from each loss's input contract (`LossSpec.example_inputs`): what ``lossforge run``
        uses when no data file is given. Weights inputs get a random 0/1 mask (90% ones)."""
        rng = np.random.default_rng(seed)
        batch: dict[str, np.ndarray] = {}
        for term in self.config.terms:
            spec = self._specs[term.name]
            labels, predictions, _ = spec.example_inputs(rng, batch_size, classes)
            for arg, value in zip(spec.inputs, (labels, predictions)):
                batch.setdefault(term.inputs[arg], value)
            if "weights" in term.inputs and term.inputs["weights"] not in batch:
                shape = np.shape(spec(labels, predictions, reduction=Reduction.NONE,
                                      **dict(term.params)))
                batch[term.inputs["weights"]] = (rng.random(shape) > 0.1).astype(np.float64)
        params = {key: rng.normal(scale=0.1, size=(16, 8))
                  for reg in self.config.regularizers for key in reg.params}
        if isinstance(self.weighting, Uncertainty):
            params.update({Uncertainty.key(t.name): 0.0 for t in self.config.terms})
        return batch, params

    def __call__(self, batch, params=None, device: str = "cpu") -> ObjectiveResult:
        """Evaluate every component on ``batch`` (a mapping of arrays) and record the result."""
        if type(batch) is dict and type(device) is str and device == "cpu":
            plan = self.__dict__.get("_call_plan")
            if plan is None or plan[0] is not self.config or plan[1] is not self.weighting:
                plan = self._make_call_plan()
            if plan:
                return self._evaluate_dict(batch, params, plan)
        return self._evaluate(batch, params, device, False)[0]

    def value_and_grad(self, batch, params=None, device: str = "cpu", grad_out=None):
        """``(result, grads)``: ``grads`` maps each prediction/logit batch key, each regularized
        param (and, under uncertainty weighting, each ``"log_var/<term>"``) to the gradient of
        ``result.total``.

        ``grad_out`` (CPU): a mapping of prediction/logit batch keys to arrays that receive
        those gradients, as `LossSpec.value_and_grad`'s ``grad_out`` does (writeable,
        C-contiguous, the gradient's shape and dtype, no memory shared with the batch);
        ``grads`` then holds those very arrays. A training loop that passes the same arrays on
        every step saves a fresh array per key (whose pages the OS must zero on first touch).

        Example::

            >>> import lossforge, numpy as np
            >>> objective = lossforge.load_objective({"terms": {"mse": {"weight": 2.0,
            ...     "loss": "mean_squared_error", "inputs": {"labels": "y", "predictions": "p"}}}})
            >>> batch = {"y": np.zeros(4, np.float32), "p": np.ones(4, np.float32)}
            >>> buffer = np.empty(4, np.float32)
            >>> result, grads = objective.value_and_grad(batch, grad_out={"p": buffer})
            >>> grads["p"] is buffer, buffer.tolist()  # 2 * 2 (p - y) / 4
            (True, [1.0, 1.0, 1.0, 1.0])
        """
        return self._evaluate(batch, params, device, with_grad=True, grad_out=grad_out)

    def evaluate(self, batches, params=None, device: str = "cpu", progress=None) -> ObjectiveResult:
        """One result over many batches: exactly what one call on their concatenation gives.

        ``batches`` is any iterable of batch mappings (a list, a generator, a data loader,
        `lossforge.streaming.read_chunks` of a ``.npy``/``.npz`` file), consumed once, so memory
        holds one batch at a time. Each term's `LossState` is summed over the batches and
        reduced once, so every `Reduction` (``SUM_BY_NONZERO_WEIGHTS`` with zero weights in any
        batch included) gives the single-pass number, to float64 rounding. Split data only along
        the first (sample) axis; a sample of a row-wise or pairwise loss must not straddle
        batches. Task weights are computed once, before the first batch; regularizers (and
        uncertainty log-variances) depend on ``params`` only and are evaluated once.

        The tracker records the result as ONE call (its states pooled from all batches), so
        `Tracker.mean` stays exact. ``progress``: None shows a tqdm bar (rate, ETA when
        ``batches`` has a length) only when stderr is a terminal; True always; False never.

        Example::

            >>> import lossforge, numpy as np
            >>> objective = lossforge.load_objective({"terms": {"mse": {
            ...     "loss": "mean_squared_error", "inputs": {"labels": "y", "predictions": "p"}}}})
            >>> y, p = np.arange(10.0), np.zeros(10)
            >>> batches = ({"y": y[i:i + 3], "p": p[i:i + 3]} for i in range(0, 10, 3))
            >>> objective.evaluate(batches).total == objective({"y": y, "p": p}).total
            True
        """
        from .streaming import evaluate
        return evaluate(self, batches, params, device, progress)

    def evaluate_stacked(self, batch, batch_axis: int = 0, params=None, device: str = "cpu"):
        """K independent results from one kernel launch per term: a `StackedResult`.

        Axis ``batch_axis`` of every input the terms read (labels, predictions and weights
        alike) indexes K independent batches: an ensemble's predictions, a sweep, K validation
        shards. ``result.total`` and each ``result[name].value``/``.weighted`` are arrays of
        length K, equal to K separate calls ``objective({key: x.take(k, batch_axis)})``;
        ``result.at(k)`` is the k-th as an `ObjectiveResult`. On ``device="cpu"`` one parallel
        kernel runs over K x elements; on ``"cuda"`` one launch with a grid over K x elements.
        Task weights and regularizers are computed once (they do not depend on the data). The
        tracker records nothing: K results are not one training step.

        Example::

            >>> import lossforge, numpy as np
            >>> objective = lossforge.load_objective({"terms": {"mse": {
            ...     "loss": "mean_squared_error", "inputs": {"labels": "y", "predictions": "p"}}}})
            >>> y = np.zeros((3, 4))                     # 3 batches of 4 samples
            >>> p = np.arange(12.0).reshape(3, 4)
            >>> objective.evaluate_stacked({"y": y, "p": p}).total.tolist()
            [3.5, 31.5, 91.5]
        """
        from .stacked import evaluate_stacked
        return evaluate_stacked(self, batch, batch_axis, params, device)

    def _fixed_components(self, params) -> list:
        """``[(name, kind, value)]`` of the components that do not depend on the data (the
        uncertainty log-variances, then the regularizers), in result order."""
        out = []
        if isinstance(self.weighting, Uncertainty):
            for term in self.config.terms:
                out.append((f"{term.name}/log_var", "log_var",
                            float(self.weighting.log_var(term.name, params))))
        for reg in self.config.regularizers:
            out.append((reg.name, "regularizer", float(regularizer_value(reg, params))))
        return out

    def _evaluate(self, batch, params, device, with_grad, grad_out=None):
        if type(batch) is not dict and (not hasattr(batch, "__getitem__") or
                                        not hasattr(batch, "keys")):
            raise InvalidTypeError(f"objective {self.name!r}: `batch` must be a mapping of batch "
                                   f"key -> array; got {type(batch).__name__}.")
        if grad_out is not None:
            grad_out = self._checked_grad_out(grad_out, device, batch)
        weights = self.weighting.weights(self.tracker, params)
        components: dict[str, Component] = {}
        grads: dict[str, np.ndarray] = {}
        specs = self._specs
        # on the CPU the kernels apply a term's weight to its gradient (no pass of its own)
        fold = with_grad and device == "cpu"
        for term in self.config.terms:
            name = term.name
            spec = specs[name]
            weight = weights[name]
            key = term.inputs[spec.inputs[1]] if with_grad else None
            target = grad_out.get(key) if grad_out and key not in grads else None
            out = self._general_term(term, spec, batch, device, with_grad,
                                     weight if fold else 1.0, target)
            value, grad, state, reduction, dtype = out
            components[name] = _component(name, value, weight, weight * value, "term", state,
                                          reduction, dtype)
            if with_grad:
                if grad_out and key in grad_out and grad is not grad_out[key] and \
                        np.result_type(grad_out[key], grad) != grad_out[key].dtype:
                    raise InvalidArgumentError(
                        f"objective {self.name!r}, term {name!r}: its gradient for {key!r} is "
                        f"{grad.dtype}, which grad_out[{key!r}] ({grad_out[key].dtype}) cannot "
                        f"hold. Pass a {np.result_type(grad_out[key], grad)} array, or leave "
                        f"{key!r} out of grad_out.")
                _add_weighted(grads, key, 1.0 if fold else weight, grad)
        uncertainty = isinstance(self.weighting, Uncertainty)
        self._add_parameter_components(components, params, uncertainty,
                                       grads if with_grad else None)
        result = self._recorded(components)
        return (result, grads) if with_grad else (result, None)

    def _add_parameter_components(self, components: dict, params, uncertainty: bool,
                                  grads: dict | None = None) -> None:
        """Add to ``components`` those that depend on ``params`` only: the uncertainty
        log-variances (if ``uncertainty``), then the regularizers; and their gradients to
        ``grads`` unless it is None. (`_fixed_components` lists the same, as floats.)"""
        if uncertainty:
            for term in self.config.terms:
                s = self.weighting.log_var(term.name, params)
                name = f"{term.name}/log_var"
                components[name] = _component(name, s, 1.0, s, "log_var")
                if grads is not None:  # d/ds (w exp(-s) L + s)
                    grads[Uncertainty.key(term.name)] = 1.0 - components[term.name].weighted
        for reg in self.config.regularizers:
            value = regularizer_value(reg, params)
            components[reg.name] = _component(reg.name, value, 1.0, value, "regularizer")
            if grads is not None:
                for key, g in regularizer_grad(reg, params).items():
                    grads[key] = grads.get(key, 0.0) + g

    def _recorded(self, components: dict) -> ObjectiveResult:
        """The result of ``components`` (their weighted values summed in order), recorded."""
        total = 0.0
        for c in components.values():
            total += c.weighted
        result = _new(ObjectiveResult)  # ObjectiveResult(total, MappingProxyType(components))
        result.__dict__.update(total=total, components=MappingProxyType(components))
        self.tracker.record(result)
        return result

    def _evaluate_dict(self, batch, params, plan) -> ObjectiveResult:
        """`_evaluate`'s result of a value-only CPU call on a dict batch, with the objective's
        call plan (`_make_call_plan`): each term through `_fast_component` where its plan
        allows, else `_general_term`, then the same components, additions in the same order
        and the same record, without what `_evaluate` would decide again on every call."""
        _, weighting, entries, uncertainty, static = plan
        if static is not None and weighting.terms is static[0]:
            weights = static[1]
        else:
            weights = weighting.weights(self.tracker, params)
        components: dict[str, Component] = {}
        fast_component = self._fast_component
        for name, term, spec, fast_plan in entries:
            weight = weights[name]
            c = fast_component(name, term, spec, batch, fast_plan, weight) if fast_plan else None
            if c is None:
                value, _, state, reduction, dtype = self._general_term(term, spec, batch, "cpu",
                                                                       False)
                c = _component(name, value, weight, weight * value, "term", state, reduction,
                               dtype)
            components[name] = c
        self._add_parameter_components(components, params, uncertainty)
        return self._recorded(components)

    def _make_call_plan(self):
        """``(config, weighting, ((name, term, spec, fast plan or False), ...), whether the
        weighting is `Uncertainty`, static weights)``, cached while ``self.config`` and
        ``self.weighting`` are the objects it was made from (the configs are frozen; the term
        plans are those `_make_fast_plan` caches); False (not cached) where a term's plan
        raises: `_evaluate` then raises the term's error in its turn.

        Static weights: ``(terms, weights)`` for a `Static` weighting (not a subclass), whose
        weights are its (frozen) terms' ``weight`` whatever the call: used while the
        weighting's ``terms`` are still those terms; else None (computed on every call)."""
        config, weighting = self.config, self.weighting
        entries = []
        for term in config.terms:
            spec = self._specs[term.name]
            fast_plan = self.__dict__.get("_fast_plans", {}).get(term.name)
            if fast_plan is None:
                fast_plan = self._make_fast_plan(term, spec)
                if fast_plan is None:
                    return False
            entries.append((term.name, term, spec, fast_plan))
        static = None
        if type(weighting) is Static:
            static = (weighting.terms, weighting.weights(self.tracker, None))
        plan = (config, weighting, tuple(entries), isinstance(weighting, Uncertainty), static)
        self.__dict__["_call_plan"] = plan
        return plan

    def _term(self, term, spec, batch, device, with_grad):
        """``(float value, grad or None, LossState, reduction, dtype name)`` of one term."""
        if not with_grad and type(batch) is dict and type(device) is str and device == "cpu":
            plan = self.__dict__.get("_fast_plans", {}).get(term.name)
            if plan is None:
                plan = self._make_fast_plan(term, spec)
            c = self._fast_component(term.name, term, spec, batch, plan, 1.0) if plan else None
            if c is not None:
                return c.value, None, c.state, c.reduction, c.dtype
        return self._general_term(term, spec, batch, device, with_grad)

    def _checked_grad_out(self, grad_out, device, batch) -> dict:
        """``grad_out`` as a dict, or an error naming what is wrong: not a mapping, a device
        other than the CPU, a key that gets no gradient from the data, an array that shares
        memory with another one or with the batch (which later terms read). Each array's shape
        and dtype are checked where its term's gradient is known (`compute.run`)."""
        if not hasattr(grad_out, "keys") or not hasattr(grad_out, "__getitem__"):
            raise InvalidTypeError(f"objective {self.name!r}: `grad_out` must be a mapping of "
                                   f"prediction key -> array; got {type(grad_out).__name__}.")
        if device != "cpu":
            raise InvalidArgumentError(f"objective {self.name!r}: `grad_out` is for "
                                       f"device='cpu'; pass grad_out=None on {device!r}.")
        keys = {term.inputs[self._specs[term.name].inputs[1]] for term in self.config.terms}
        unknown = sorted(str(k) for k in grad_out.keys() if k not in keys)
        if unknown:
            raise InvalidArgumentError(
                f"objective {self.name!r}: grad_out has {unknown}, which no term differentiates; "
                f"its keys must be among the terms' prediction keys {sorted(keys)}.")
        outs = {k: grad_out[k] for k in grad_out.keys()}
        arrays = [(k, a) for k, a in outs.items() if isinstance(a, np.ndarray)]
        for i, (key, a) in enumerate(arrays):
            shared = [f"grad_out[{k!r}]" for k, b in arrays[i + 1:] if np.may_share_memory(a, b)]
            shared += [f"batch[{k!r}]" for k in batch.keys()
                       if isinstance(batch[k], np.ndarray) and np.may_share_memory(a, batch[k])]
            if shared:
                raise InvalidArgumentError(
                    f"objective {self.name!r}: grad_out[{key!r}] shares memory with "
                    f"{', '.join(shared)}: each gradient needs an array of its own, "
                    f"np.empty_like(batch[{key!r}]).")
        return outs

    def _general_term(self, term, spec, batch, device, with_grad, grad_factor=1.0,
                      grad_out=None):
        args = {}
        for arg, key in term.inputs.items():
            if key not in batch:
                raise InvalidArgumentError(
                    f"objective {self.name!r}, term {term.name!r} ({spec.name}): the batch has no "
                    f"key {key!r} for input {arg!r}; batch keys: {sorted(batch.keys())}.")
            args[arg] = batch[key]
        reduction = term.reduction or spec.reduction
        try:
            if device == "cpu":
                # the term's parameters are checked once per objective, not on every call
                spec, kernel_params, shape_args = self._plan(term, spec)
                prepared = spec.prepare(spec, args[spec.inputs[0]], args[spec.inputs[1]],
                                        args.get("weights", 1.0), **shape_args)
            else:
                spec, params = spec.route(dict(term.params))
                labels, predictions = args[spec.inputs[0]], args[spec.inputs[1]]
                weights = args.get("weights", 1.0)
                scalar = (_SCALAR_REDUCTIONS.get(reduction)
                          if type(reduction) in _REDUCTION_TYPES else None)
                if device == "cuda" and not with_grad and scalar is not None:
                    # a repeated evaluation on device arrays replays a launch plan
                    small = compute.run_small_cuda(spec, labels, predictions, weights, scalar,
                                                   params, state=True)
                    if small is not None:
                        value, _, state = small
                        return float(value), None, state, reduction, \
                            _dtype_name(np.asarray(value).dtype)
                prepared, kernel_params = compute.prepare(spec, labels, predictions, weights,
                                                          params, device)
            value, grad, state = compute.run(spec, prepared, kernel_params, reduction,
                                             with_grad=with_grad, device=device,
                                             grad_out=grad_out, grad_factor=grad_factor)
        except LossforgeError as exc:
            raise type(exc)(f"objective {self.name!r}, term {term.name!r} ({spec.name}): {exc}") from None
        if with_grad and grad is None:
            raise InvalidArgumentError(f"term {term.name!r}: loss {spec.name!r} has no gradient formula.")
        return float(value), grad, state, reduction, _dtype_name(np.asarray(value).dtype)

    def _fast_component(self, name, term, spec, batch: dict, plan, weight: float):
        """The `Component` (of task weight ``weight``) of a term on a value-only CPU call on
        a dict batch through `compute.run_small`, with the term's plan (`_make_fast_plan`), or
        None where the general code must run (a call the fast path does not cover, a missing
        key: the general code raises the errors). `_general_term`'s value, state, reduction
        and dtype name, bit for bit."""
        routed, kernel_params, label_key, prediction_key, weights_key = plan
        labels = batch.get(label_key, _MISSING)
        predictions = batch.get(prediction_key, _MISSING)
        weights = 1.0 if weights_key is None else batch.get(weights_key, _MISSING)
        reduction = term.reduction or spec.reduction
        if labels is _MISSING or predictions is _MISSING or weights is _MISSING or \
                type(reduction) not in _REDUCTION_TYPES:
            return None
        scalar = _SCALAR_REDUCTIONS.get(reduction)
        if scalar is None:
            return None
        try:
            result = compute.run_small(routed, labels, predictions, weights, scalar, kernel_params)
        except LossforgeError as exc:
            raise type(exc)(f"objective {self.name!r}, term {term.name!r} ({routed.name}): "
                            f"{exc}") from None
        if result is None:
            return None
        value, (weighted_sum, weight_sum, nonzero_count), n = result
        dtype = value.dtype
        value = float(value)
        component = _new(Component)  # (as `_component` builds it, one call fewer)
        component.__dict__.update(
            name=name, value=value, weight=weight, weighted=weight * value, kind="term",
            state=make_state(weighted_sum, weight_sum, nonzero_count, n), reduction=reduction,
            dtype=_DTYPE_NAMES.get(dtype) or _dtype_name(dtype))
        return component

    def _make_fast_plan(self, term, spec):
        """``(routed spec, kernel params, labels key, predictions key, weights key or None)`` of
        a term the fast path covers (an elementwise loss whose inputs are its two arrays and
        optionally weights), else False; None (not cached) when the term's plan raises."""
        try:
            routed, kernel_params, shape_args = self._plan(term, spec)
        except LossforgeError:
            return None
        names = (spec.inputs[0], spec.inputs[1], "weights")
        plan = False
        if routed.prepare is registry.prepare_elementwise and not shape_args and \
                routed.inputs == spec.inputs and set(term.inputs) <= set(names) and \
                names[0] in term.inputs and names[1] in term.inputs:
            plan = (routed, kernel_params, term.inputs[names[0]], term.inputs[names[1]],
                    term.inputs.get("weights"))
        self.__dict__.setdefault("_fast_plans", {})[term.name] = plan
        return plan

    def _plan(self, term, spec):
        """``(routed spec, kernel params, prepare's keyword arguments)`` of a term, cached."""
        plans = self.__dict__.setdefault("_plans", {})
        plan = plans.get(term.name)
        if plan is None:
            routed, params = spec.route(dict(term.params))
            plan = plans[term.name] = (routed, *routed.resolve_call(params))
        return plan


_DTYPE_NAMES: dict = {}
_MISSING = object()
_REDUCTION_TYPES = (Reduction, str)  # (hashable: may be looked up in SCALAR_REDUCTIONS)
_SCALAR_REDUCTIONS = compute.SCALAR_REDUCTIONS
_new = object.__new__


def _component(name, value, weight, weighted, kind, state=None, reduction=None, dtype=None):
    """``Component(...)``, built without the frozen dataclass's ``__init__`` (one call per
    component of every objective call): equal, hashing and pickling alike."""
    component = _new(Component)
    component.__dict__.update(name=name, value=value, weight=weight, weighted=weighted, kind=kind,
                              state=state, reduction=reduction, dtype=dtype)
    return component


def _add_weighted(grads: dict, key: str, weight, grad) -> None:
    """``grads[key] = grads.get(key, 0) + weight * grad``, in place where the arrays are this
    call's own and the dtypes allow: a term's gradient is as large as its batch, and each
    temporary costs a fresh array (objective value+gradient at 4 x 16M float32 elements: 46.5
    -> 24.3 ms). The same numbers (``0 + g`` would turn a -0.0 into +0.0: that is all)."""
    if type(grad) is not np.ndarray or np.result_type(weight, grad) != grad.dtype:
        grads[key] = grads.get(key, 0.0) + weight * grad
        return
    if weight != 1.0:
        np.multiply(grad, weight, out=grad)  # the kernel's fresh array, not the caller's
    previous = grads.get(key)
    if previous is None:
        grads[key] = grad
    elif type(previous) is np.ndarray and np.result_type(previous, grad) == previous.dtype:
        np.add(previous, grad, out=previous)  # an earlier term's fresh array
    else:
        grads[key] = previous + grad


def _dtype_name(dtype: np.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = dtype.name  # (dtype.name costs microseconds)
    return name


def load_objective(source, *, include_roots=()) -> Objective:
    """An `Objective` from a YAML file path, YAML text, a dict or an `ObjectiveConfig`.

    ``include_roots``: directories that a config's ``include:`` may read from besides the
    config's own directory (see `parse_config`)."""
    return Objective(parse_config(source, include_roots=include_roots))
