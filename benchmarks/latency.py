"""Small-batch latency: microseconds per call at 64 x 10 elements, lossforge and peers.

At this size a call is all dispatch: argument checks, kernel selection, result boxing. The
figures are per call, from samples of back-to-back calls over 8 rotated input sets (see
`benchmarks.timing`). lossforge is timed through its TF-v1 function, through the registry's
spec call, and as the composed objective (configs/multitask.yaml: 2 x log_loss + MSE + L2);
the peers compute MSE and the same objective; a bare Numba kernel computing MSE is the
floor of what any Numba-based call can cost.
"""
from __future__ import annotations

import numpy as np

from .cases import DEFAULT_OBJECTIVE, rotated
from .timing import Contestant, measure

SETS = 8


def _bare_kernel():
    from numba import njit

    @njit(cache=True, error_model="numpy")
    def mse(y, p):
        s = 0.0
        for i in range(y.shape[0]):
            for j in range(y.shape[1]):
                d = float(p[i, j]) - float(y[i, j])
                s += d * d
        return s / y.size
    return mse


def run(peers, shape=(64, 10), repeat: int = 15, rounds: int = 3, objective_path=DEFAULT_OBJECTIVE,
        seed: int = 0) -> list[dict]:
    """One row per contestant: name, library, what, us per call (best round), value, agreement."""
    import lossforge
    from lossforge import registry

    from .peers import RTOL, objective_formula
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(shape, dtype=np.float32)
    p = rng.standard_normal(shape, dtype=np.float32)
    mse_sets = rotated((y, p), SETS)
    objective = lossforge.load_objective(str(objective_path))
    keys = list(objective.batch_keys)
    params = list(dict.fromkeys(k for reg in objective.config.regularizers for k in reg.params))
    batch, values = objective.example_batch(seed, *shape)
    obj_arrays = tuple(np.asarray(batch[k], np.float32) for k in keys) + \
        tuple(np.asarray(values[k], np.float32) for k in params)
    obj_sets = rotated(obj_arrays, SETS)
    obj_dicts = [(dict(zip(keys, s[:len(keys)])), dict(zip(params, s[len(keys):]))) for s in obj_sets]
    spec = registry.get("mean_squared_error")
    bare = _bare_kernel()
    terms = len(objective.config.terms) + len(objective.config.regularizers)

    rows = [  # (library, what, contestant)
        ("lossforge", "MSE: losses.mean_squared_error",
         Contestant("lossforge/mse", lambda i: lossforge.losses.mean_squared_error(*mse_sets[i]), sets=SETS)),
        ("lossforge", "MSE: registry.get(...)(y, p)",
         Contestant("lossforge/spec", lambda i: spec(*mse_sets[i]), sets=SETS)),
        ("lossforge", f"objective ({terms} terms)",
         Contestant("lossforge/objective", lambda i: objective(*obj_dicts[i]).total, sets=SETS)),
        ("numba", "MSE: bare @njit kernel (reference)",
         Contestant("numba/mse", lambda i: bare(*mse_sets[i]), sets=SETS)),
    ]
    for peer in peers:
        native = [tuple(peer.convert(a) for a in s) for s in mse_sets]
        fn = peer.compile(peer.formulas["mean_squared_error"])
        rows.append((peer.name, "MSE", Contestant(
            f"{peer.name}/mse", (lambda fn, native, peer: lambda i: peer.sync(fn(*native[i])))(fn, native, peer),
            value=peer.value, sets=SETS)))
        formula, why = objective_formula(peer, objective)
        if formula is None:
            continue
        fn = peer.compile(formula)
        native = [tuple(peer.convert(a) for a in s) for s in obj_sets]
        rows.append((peer.name, f"objective ({terms} terms)", Contestant(
            f"{peer.name}/objective",
            (lambda fn, native, peer: lambda i: peer.sync(fn(*native[i])))(fn, native, peer),
            value=peer.value, sets=SETS)))
    measure([c for _, _, c in rows], repeat, rounds, round_time=0.05)
    objective.tracker.reset()
    reference = {"mse": rows[0][2].warm_value, "objective": rows[2][2].warm_value}
    out = []
    for library, what, c in rows:
        kind = "objective" if c.name.endswith("/objective") else "mse"
        ref = reference[kind]
        rel = None if c.warm_value is None or ref is None else abs(c.warm_value - ref) / max(abs(ref), 1e-30)
        out.append({"library": library, "what": what, "kind": kind, "shape": list(shape),
                    "us": None if c.best is None else c.best * 1e6,
                    "rounds_us": [r * 1e6 for r in c.rounds], "calls_per_round": c.calls_per_round,
                    "value": c.warm_value, "reference_value": ref, "rel_diff": rel, "agrees": rel is not None and rel <= RTOL,
                    "error": c.error})
    return out
