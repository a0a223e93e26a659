"""What is timed: one `Case` per loss (and one per objective config), with its synthetic inputs.

A case of size ``n`` has float32 inputs of ``n`` elements: elementwise losses ``(n / 1024,
1024)`` (or ``(n / 1000, 1000)``, else ``(1, n)``), row-wise losses the same number of rows of
``min(n, 1000)`` columns (softmax at 16,777,216: 16384 x 1000 logits), drawn from each loss's
input contract (`LossSpec.example_inputs`), so every value is inside the loss's domain.
An objective case gives each of its terms inputs of that shape (`Objective.example_batch`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

#: tf.compat.v1.losses, in the order of the report.
TF_LOSSES = ("mean_squared_error", "absolute_difference", "huber_loss", "log_loss", "hinge_loss",
             "sigmoid_cross_entropy", "softmax_cross_entropy", "sparse_softmax_cross_entropy",
             "cosine_distance", "mean_pairwise_squared_error", "compute_weighted_loss")
ROW_WIDTH = 1000
DEFAULT_OBJECTIVE = Path(__file__).resolve().parent.parent / "configs" / "multitask.yaml"
_CALL_KWARGS = {"cosine_distance": {"axis": 1}}


@dataclass
class Case:
    """One timed computation.

    ``make(rng, n) -> (arrays, shape text)``; ``lossforge(*arrays, device="cpu")`` and (if it
    has a gradient) ``value_and_grad(*arrays, device="cpu", grad_out=None)`` compute it with
    lossforge, ``grad_out(arrays)`` making what that ``grad_out`` takes; ``floor_count`` leading
    arrays are what the floor reads (an objective's batch, not its small parameter arrays);
    ``peer_formula(peer) -> (fn(*arrays) or None, why not)``.
    """

    name: str
    group: str                      # "tf", "extra" or "objective"
    make: Callable
    lossforge: Callable
    value_and_grad: Callable | None
    peer_formula: Callable
    floor_count: int = 4
    description: str = ""
    grad_out: Callable = lambda arrays: np.empty_like(arrays[-1])  # a loss's predictions


def shape_of(n: int, rowwise: bool = False) -> tuple[int, int]:
    """The ``(rows, columns)`` of a case of about ``n`` elements."""
    for cols in (1024, 1000):
        if n >= cols and n % cols == 0:
            rows = n // cols
            break
    else:
        rows, cols = 1, n
    return (rows, min(n, ROW_WIDTH)) if rowwise else (rows, cols)


def _float32(a):
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype.kind == "f" else np.ascontiguousarray(a)


def _loss_case(name: str, group: str) -> Case:
    import lossforge
    from lossforge import registry
    kwargs = _CALL_KWARGS.get(name, {})
    if name == "compute_weighted_loss":
        spec = None

        def make(rng, n):
            rows, cols = shape_of(n)
            return (rng.random((rows, cols), dtype=np.float32),), f"{rows}x{cols}"
    else:
        spec = registry.get(name)

        def make(rng, n):
            rows, cols = shape_of(n, spec.kind == "rowwise")
            labels, predictions, _ = spec.example_inputs(rng, rows, cols)
            return (_float32(labels), _float32(predictions)), f"{rows}x{cols}"

    if group == "tf":
        function = getattr(lossforge.losses, name)
        lf = lambda *a, device="cpu": function(*a, device=device, **kwargs)  # noqa: E731
    else:
        lf = lambda *a, device="cpu": spec(*a, device=device, **kwargs)  # noqa: E731
    vg = None
    if spec is not None and spec.grad is not None:
        def vg(*a, device="cpu", **extra):  # extra: grad_out=
            return spec.value_and_grad(*a, device=device, **kwargs, **extra)

    def peer_formula(peer):
        fn = peer.formulas.get(name)
        return (fn, "") if fn is not None else (None, f"no {peer.name} formula for {name}")

    return Case(name, group, make, lf, vg, peer_formula,
                description=spec.doc.splitlines()[0] if spec is not None and spec.doc else "")


def _objective_case(path) -> Case:
    import lossforge
    from . import peers as peer_module
    objective = lossforge.load_objective(str(path))
    keys = list(objective.batch_keys)
    params = list(dict.fromkeys(k for reg in objective.config.regularizers for k in reg.params))
    nk = len(keys)

    def make(rng, n):
        rows, cols = shape_of(n)
        batch, values = objective.example_batch(int(rng.integers(1 << 31)), rows, cols)
        arrays = tuple(_float32(batch[k]) for k in keys) + tuple(_float32(values[k]) for k in params)
        return arrays, f"{len(keys)} x {rows}x{cols}"

    def split(arrays):
        return dict(zip(keys, arrays[:nk])), dict(zip(params, arrays[nk:]))

    def lf(*arrays, device="cpu"):
        return objective(*split(arrays), device=device).total

    def vg(*arrays, device="cpu", grad_out=None):
        return objective.value_and_grad(*split(arrays), device=device, grad_out=grad_out)[0].total

    def grad_out(arrays):
        batch, values = split(arrays)
        _, grads = objective.value_and_grad(batch, values)
        return {k: np.empty_like(g) for k, g in grads.items() if k in batch}

    name = f"objective:{Path(path).stem}"
    return Case(name, "objective", make, lf, vg,
                lambda peer: peer_module.objective_formula(peer, objective),
                floor_count=min(4, nk), description=repr(objective), grad_out=grad_out)


def select(spec: str, objective=DEFAULT_OBJECTIVE) -> list[Case]:
    """The cases named by ``spec``: comma-separated loss names (or aliases) and the groups
    ``tf`` (tf.compat.v1.losses), ``extras`` (the other built-ins of the registry),
    ``objective`` (the objective config) and ``all`` (every one of them)."""
    from lossforge import registry
    extras = [s.name for s in registry.specs() if s.builtin and s.name not in TF_LOSSES]
    chosen: list[tuple[str, str]] = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if item in ("all", "tf"):
            chosen += [(n, "tf") for n in TF_LOSSES]
        if item in ("all", "extras"):
            chosen += [(n, "extra") for n in extras]
        if item in ("all", "objective"):
            chosen.append(("objective", "objective"))
        if item in ("all", "tf", "extras", "objective"):
            continue
        if item == "compute_weighted_loss":
            chosen.append((item, "tf"))
            continue
        name = registry.get(item).name  # UnknownLossError suggests the close names
        chosen.append((name, "tf" if name in TF_LOSSES else "extra"))
    cases, seen = [], set()
    for name, group in chosen:
        if name in seen:
            continue
        seen.add(name)
        cases.append(_objective_case(objective) if group == "objective" else _loss_case(name, group))
    return cases


def rotated(arrays: tuple, count: int) -> list[tuple]:
    """``count`` input sets: ``arrays`` and copies rolled by whole rows (same values, other
    memory), so no timed call finds its inputs in cache from the call before."""
    sets = [arrays]
    for k in range(1, count):
        copies = []
        for a in arrays:
            if a.ndim and a.shape[0] > 1 and a.shape[0] == arrays[0].shape[0]:
                copies.append(np.roll(a, k * max(1, a.shape[0] // (count + 1)), axis=0))
            else:
                copies.append(a.copy())
        sets.append(tuple(copies))
    return sets
