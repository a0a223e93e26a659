"""Distributed evaluation of an objective on Dask arrays (extra ``lossforge[dask]``).

`evaluate` gives the `ObjectiveResult` that one in-memory call on the whole arrays gives, to
float64 rounding, without gathering the data anywhere: for each term, the term's inputs are
aligned on common chunks along their first (sample) axis (each chunk holding whole rows of
every other axis), the term's kernel runs on each chunk where the chunk lives and returns a
four-number `LossState`, and the states are summed in a tree (``split_every`` at a time); only
the states travel. Regularizers (and uncertainty log-variances) depend on ``params`` only and
are evaluated once, on the client; task weights likewise.

It runs on whatever Dask scheduler is active: the local threaded one by default, or a
``distributed`` cluster once a ``Client`` exists::

    from dask.distributed import Client
    client = Client("tcp://scheduler:8786")       # an existing cluster (or Client() for a local one)
    result = lossforge.dask.evaluate(objective, {"y": y_dask, "p": p_dask})

The workers need lossforge installed; losses registered in the client process (user formulas)
travel with the tasks (by cloudpickle), so they need not be registered on the workers.

Arrays of rank 0, and weights whose first axis has length 1 (``(1, D)``), are broadcast: passed
whole to every chunk. NumPy arrays may be mixed with Dask arrays (they are chunked like the
term's predictions). ``import lossforge`` does not import Dask; this module imports it on its
first use.
"""
from __future__ import annotations

import types
import uuid
from collections.abc import Mapping

import numpy as np

from .errors import InvalidArgumentError, InvalidTypeError, LossforgeError
from .reduction import LossState

__all__ = ["evaluate", "term_states"]

INSTALL_HINT = "pip install 'lossforge[dask]' (dask[array] and distributed)"


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise InvalidArgumentError(f"lossforge.dask needs Dask, which is not installed: "
                                   f"{INSTALL_HINT}.") from None
    return dask, da


def _block_state(spec, params: dict, labels, predictions, weights, device: str, where: str):
    """The (LossState, output dtype name) of one chunk (runs on a worker)."""
    from . import compute
    from .reduction import Reduction
    if isinstance(spec, _Portable):  # not pickled: a local scheduler
        spec = spec.spec
    try:
        prepared, kernel_params = compute.prepare(spec, labels, predictions, weights, dict(params),
                                                  device)
        _, _, state = compute.run(spec, prepared, kernel_params, Reduction.SUM, device=device)
    except LossforgeError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return state, np.dtype(prepared.out_dtype).name


class _Portable:
    """A `LossSpec` as it travels to the workers: its fields and formulas, without what the
    client process cached on it (its compiled kernel modules exist only in that process and
    cannot be unpickled elsewhere). Unpickles as a `LossSpec` of the same class."""

    def __init__(self, spec) -> None:
        self.spec = spec

    def __reduce__(self):
        from .registry import LossSpec
        state = {}
        for key, value in vars(self.spec).items():
            if isinstance(value, types.ModuleType):
                continue  # a process-local cache (e.g. the spec's CPU kernel module)
            state[key] = _Portable(value) if isinstance(value, LossSpec) else value
        return _rebuild, (type(self.spec), state)


def _rebuild(cls, state: dict):
    spec = cls.__new__(cls)
    spec.__dict__.update(state)
    return spec


def _merge(*parts):
    """Sum of ``(LossState, dtype)`` parts, in order; dtypes promote as a concatenation's."""
    state, dtype = parts[0]
    for s, d in parts[1:]:
        state = state + s
        dtype = np.result_type(np.dtype(dtype), np.dtype(d)).name
    return state, dtype


def _tree(dask, parts: list, split_every: int, name: str):
    level = 0
    while len(parts) > 1:
        parts = [dask.delayed(_merge, pure=True)(*parts[i:i + split_every],
                                                 dask_key_name=f"{name}-merge-{level}-{i}")
                 for i in range(0, len(parts), split_every)]
        level += 1
    return parts[0]


def _aligned_blocks(da, arrays: dict, spec, where: str):
    """Per input, the list of its blocks along the common first-axis chunks (or the whole
    array, repeated, for broadcast ones)."""
    anchor = arrays[spec.inputs[1]]
    if not isinstance(anchor, da.Array):
        anchor = next((a for a in arrays.values() if isinstance(a, da.Array) and a.ndim), None)
    if anchor is None or anchor.ndim == 0:
        raise InvalidArgumentError(f"{where}: no input is a Dask array of rank >= 1 to split into "
                                   f"chunks; pass the term's predictions as a dask.array.")
    rows, chunks = anchor.shape[0], anchor.chunks[0]
    blocks = {}
    for arg, a in arrays.items():
        if np.ndim(a) == 0 or (arg == "weights" and np.shape(a)[0] == 1 and rows != 1):
            whole = a if not isinstance(a, da.Array) else a.rechunk(a.shape).to_delayed().ravel()[0]
            blocks[arg] = [whole] * len(chunks)
            continue
        shape = np.shape(a)
        if shape[0] != rows:
            raise InvalidArgumentError(
                f"{where}: `{arg}` has {shape[0]} rows along the first axis but "
                f"`{spec.inputs[1]}` has {rows}; inputs split into chunks must have the same "
                f"first axis (weights may also have length 1 there, or be scalars).")
        if not isinstance(a, da.Array):
            a = da.from_array(np.asarray(a), chunks=(chunks,) + tuple(shape[1:]))
        if a.chunks[0] != chunks or any(len(c) > 1 for c in a.chunks[1:]):
            a = a.rechunk((chunks,) + tuple(shape[1:]))  # whole rows, the anchor's row chunks
        blocks[arg] = list(a.to_delayed().ravel())
    return blocks, len(chunks)


def term_states(objective, batch, device: str = "cpu", split_every: int = 8) -> dict:
    """``{term name: Delayed (LossState, dtype name)}``: each term's tree-reduced partial state,
    not yet computed (compute them together with ``dask.compute(*states.values())``)."""
    dask, da = _dask()
    if not isinstance(batch, Mapping):
        raise InvalidTypeError(f"objective {objective.name!r}: `batch` must be a mapping of batch "
                               f"key -> dask (or numpy) array; got {type(batch).__name__}.")
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise InvalidArgumentError(f"`split_every` must be an int >= 2; got {split_every!r}.")
    out = {}
    for term in objective.config.terms:
        spec = objective._specs[term.name]
        where = f"objective {objective.name!r}, term {term.name!r} ({spec.name})"
        arrays = {}
        for arg, key in term.inputs.items():
            if key not in batch:
                raise InvalidArgumentError(f"{where}: the batch has no key {key!r} for input "
                                           f"{arg!r}; batch keys: {sorted(batch.keys())}.")
            value = batch[key]
            arrays[arg] = value if isinstance(value, da.Array) else np.asarray(value)
        blocks, count = _aligned_blocks(da, arrays, spec, where)
        route, params = spec.route(dict(term.params))
        # a fresh name per call: every evaluation computes (a cluster that still holds the
        # results of an identical earlier graph would otherwise hand those back)
        name = f"lossforge-{term.name}-{uuid.uuid4().hex[:16]}"
        portable = _Portable(route)
        parts = [dask.delayed(_block_state, pure=True)(
                     portable, params, blocks[spec.inputs[0]][i], blocks[spec.inputs[1]][i],
                     blocks["weights"][i] if "weights" in blocks else 1.0, device,
                     f"{where}, chunk {i}", dask_key_name=f"{name}-chunk-{i}")
                 for i in range(count)]
        out[term.name] = _tree(dask, parts, split_every, name)
    return out


def evaluate(objective, batch, params=None, device: str = "cpu", *, split_every: int = 8,
             scheduler=None):
    """The objective on ``batch`` (key -> ``dask.array``), evaluated chunk by chunk by Dask.

    Equal (to float64 rounding) to ``objective(batch_as_numpy, params)``; see the module for
    how. ``scheduler`` is passed to ``dask.compute`` (None: the active one, e.g. a
    ``distributed.Client``). Records the result in ``objective.tracker`` as one call.

    Example (runs on Dask's local threaded scheduler)::

        >>> import dask.array as da, lossforge
        >>> objective = lossforge.load_objective({"terms": {"mse": {
        ...     "loss": "mean_squared_error", "inputs": {"labels": "y", "predictions": "p"}}}})
        >>> y = da.zeros(1000, chunks=100)
        >>> p = da.arange(1000, chunks=250) / 1000.0
        >>> result = lossforge.dask.evaluate(objective, {"y": y, "p": p})
        >>> round(result.total, 5)  # mean((i / 1000)**2) = 0.3328335: 6 digits would be a tie
        0.33283
    """
    from .objective.streaming import assemble
    dask, _ = _dask()
    weights = objective.weighting.weights(objective.tracker, params)
    objective._fixed_components(params)  # missing params fail before the cluster works
    states = term_states(objective, batch, device, split_every)
    computed = dask.compute(*states.values(), scheduler=scheduler)
    parts = {}
    for term, (state, dtype) in zip(objective.config.terms, computed):
        spec = objective._specs[term.name]
        parts[term.name] = (state if isinstance(state, LossState) else LossState(*state),
                            term.reduction or spec.reduction, dtype)
    result = assemble(objective, parts, params, weights).finalize()
    objective.tracker.record(result)
    return result
