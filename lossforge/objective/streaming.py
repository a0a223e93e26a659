"""`Objective.evaluate`: one exact result over an iterable of batches (see its docstring)."""
from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np

from ..errors import InvalidArgumentError, InvalidTypeError, LossforgeError
from ..reduction import LossState
from .state import ComponentState, ObjectiveState

__all__ = ["evaluate", "assemble"]


def assemble(objective, term_parts: dict, params, weights) -> ObjectiveState:
    """The `ObjectiveState` of ``term_parts`` (term name -> ``(LossState, reduction, dtype)``),
    the task ``weights`` and the data-independent components of ``params``."""
    components = {}
    for term in objective.config.terms:
        state, reduction, dtype = term_parts[term.name]
        components[term.name] = ComponentState(term.name, "term", float(weights[term.name]),
                                               state=state, reduction=reduction, dtype=dtype)
    for name, kind, value in objective._fixed_components(params):
        components[name] = ComponentState(name, kind, 1.0, value=value)
    return ObjectiveState(components)


def progress_bar(iterable, progress, description: str):
    """``iterable`` wrapped in a tqdm bar on stderr: ``progress`` None = only on a terminal."""
    if progress is False:
        return iterable
    if progress is not None and progress is not True:
        raise InvalidTypeError(f"`progress` must be None (a bar on terminals only), True or "
                               f"False; got {progress!r}.")
    from tqdm import tqdm
    total = len(iterable) if hasattr(iterable, "__len__") else None
    return tqdm(iterable, total=total, unit="batch", desc=description, file=sys.stderr,
                disable=None if progress is None else False, dynamic_ncols=True)


def evaluate(objective, batches, params, device, progress):
    if isinstance(batches, Mapping) or not hasattr(batches, "__iter__"):
        hint = (" (one batch mapping: call the objective itself, or pass [batch])"
                if isinstance(batches, Mapping) else "")
        raise InvalidTypeError(f"objective {objective.name!r}: `batches` must be an iterable of "
                               f"batch mappings{hint}; got {type(batches).__name__}.")
    weights = objective.weighting.weights(objective.tracker, params)
    fixed = objective._fixed_components(params)  # missing params fail before any data is read
    del fixed
    specs = objective._specs
    terms = objective.config.terms
    states = {t.name: LossState() for t in terms}
    dtypes: dict[str, np.dtype] = {}
    reductions: dict = {}
    bar = progress_bar(batches, progress, f"evaluate {objective.name}")
    count = 0
    try:
        for index, batch in enumerate(bar):
            if not isinstance(batch, Mapping):
                raise InvalidTypeError(f"objective {objective.name!r}: item {index} of `batches` "
                                       f"must be a mapping of batch key -> array; got "
                                       f"{type(batch).__name__}.")
            for term in terms:
                try:
                    _, _, state, reduction, dtype = objective._term(term, specs[term.name], batch,
                                                                    device, False)
                except LossforgeError as exc:
                    raise type(exc)(f"batch {index} of `batches`: {exc}") from None
                states[term.name] = states[term.name] + state
                reductions[term.name] = reduction
                previous = dtypes.get(term.name)
                dtypes[term.name] = np.dtype(dtype) if previous is None else \
                    np.result_type(previous, np.dtype(dtype))
            count += 1
    finally:
        close = getattr(bar, "close", None)
        if close is not None and bar is not batches:
            close()
    if count == 0:
        raise InvalidArgumentError(f"objective {objective.name!r}: `batches` yielded no batch; "
                                   f"a result needs at least one.")
    parts = {t.name: (states[t.name], reductions[t.name], dtypes[t.name].name) for t in terms}
    result = assemble(objective, parts, params, weights).finalize()
    objective.tracker.record(result)
    return result
