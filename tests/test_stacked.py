"""`Objective.evaluate_stacked`: K batches from one kernel launch per term, against K calls.

The oracle is K separate calls of the objective on ``x.take(k, batch_axis)`` of every input,
plus float64 NumPy references (`reference.py`) for some terms. The CUDA kernel runs under the
simulator against the CPU kernel and compiles to PTX, each in subprocesses (this file run as a
script), as ``test_cuda_sim.py`` / ``test_cuda_ptx.py`` do for the single-batch kernels.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

import lossforge
import reference as ref
from lossforge import InvalidArgumentError, InvalidTypeError
from lossforge.objective import StackedResult

from cuda_support import skip_without_numba_cuda, subprocess_env

K, B, D, C = 5, 6, 3, 4
TIMEOUT = 600


def _config(weighting="uncertainty"):
    return {"name": "stacked", "weighting": weighting, "terms": {
        "mse": {"loss": "mean_squared_error", "reduction": "weighted_mean",
                "inputs": {"labels": "y", "predictions": "p", "weights": "w"}},
        "sparse": {"loss": "sparse_softmax_cross_entropy", "weight": 0.5,
                   "inputs": {"labels": "cls", "logits": "x", "weights": "ks"}},
        "soft": {"loss": "softmax_cross_entropy", "params": {"label_smoothing": 0.1,
                                                              "class_weights": [1.0, 2.0, 0.5, 1.5]},
                 "inputs": {"onehot_labels": "onehot", "logits": "x"}},
        "pairs": {"loss": "mean_pairwise_squared_error", "inputs": {"labels": "y", "predictions": "p",
                                                                    "weights": "ws"}},
        "cos": {"loss": "cosine_distance", "params": {"axis": 1}, "reduction": "weighted_sum",
                "inputs": {"labels": "u", "predictions": "v", "weights": "ws1"}},
        "huber": {"loss": "huber_loss", "params": {"delta": 0.7},
                  "reduction": "weighted_sum_over_batch_size",
                  "inputs": {"labels": "y", "predictions": "p", "weights": "wf"}},
        "sig": {"loss": "sigmoid_cross_entropy", "params": {"pos_weight": [1.0, 3.0, 0.5]},
                "inputs": {"multi_class_labels": "b3", "logits": "p"}},
    }, "regularization": {"l2": {"type": "l2", "scale": 0.01, "params": ["fc"]}}}


def _data(seed=0, k=K, dtype=np.float64):
    """Stacked inputs: axis 0 indexes the K batches."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 2.0, (k, B, D)) * (rng.random((k, B, D)) > 0.3)
    w[1] = 0.0  # a batch with only zero weights
    ws = rng.uniform(0.5, 2.0, (k, B)) * (rng.random((k, B)) > 0.2)
    u, v = rng.normal(size=(k, B, D)), rng.normal(size=(k, B, D))
    cls = rng.integers(0, C, (k, B))
    batch = {"y": rng.normal(size=(k, B, D)).astype(dtype),
             "p": rng.normal(size=(k, B, D)).astype(dtype), "w": w,
             "ws": ws, "ws1": ws[:, :, None].copy(),
             "cls": cls, "x": 3 * rng.normal(size=(k, B, C)).astype(dtype),
             "ks": rng.uniform(0.5, 2.0, k),  # one scalar weight per batch
             "onehot": np.eye(C)[cls], "u": u / np.linalg.norm(u, axis=2, keepdims=True),
             "v": v / np.linalg.norm(v, axis=2, keepdims=True),
             "wf": rng.uniform(0.0, 1.0, (k, 1, D)),  # per-feature weights of each batch
             "b3": (rng.random((k, B, D)) > 0.5) * 1.0}
    params = {"fc": rng.normal(size=(3, 3)), "log_var/mse": 0.2, "log_var/sparse": -0.4}
    return batch, params


def _separate(objective, batch, params, axis=0):
    return [objective({key: np.take(v, k, axis=axis) for key, v in batch.items()}, params)
            for k in range(np.shape(next(iter(batch.values())))[axis])]


def _assert_matches(stacked: StackedResult, separate, rel=1e-12):
    assert len(stacked) == len(separate)
    for k, single in enumerate(separate):
        assert list(stacked.components) == list(single.components)
        for name, c in single.components.items():
            s = stacked[name]
            assert s.value[k] == pytest.approx(c.value, rel=rel, abs=1e-300), (k, name)
            assert s.weighted[k] == pytest.approx(c.weighted, rel=rel, abs=1e-300), (k, name)
            assert s.weight == c.weight and s.kind == c.kind and s.reduction == c.reduction
            if c.state is not None:
                got = s.state(k)
                assert got.element_count == c.state.element_count
                assert got.nonzero_count == c.state.nonzero_count
                assert got.weight_sum == pytest.approx(c.state.weight_sum, rel=rel, abs=1e-300)
        assert stacked.total[k] == pytest.approx(single.total, rel=rel)


def test_stacked_equals_k_separate_calls_and_numpy_references():
    batch, params = _data()
    objective = lossforge.load_objective(_config())
    stacked = objective.evaluate_stacked(batch, params=params)
    separate = _separate(objective, batch, params)
    _assert_matches(stacked, separate)
    for k in range(K):
        y, p, w = batch["y"][k], batch["p"][k], batch["w"][k]
        assert stacked["mse"].value[k] == pytest.approx(
            ref.reduce(ref.mean_squared_error(y, p), w, ref.R_MEAN), rel=1e-12)
        assert stacked["sparse"].value[k] == pytest.approx(ref.reduce(
            ref.sparse_softmax_cross_entropy(batch["cls"][k], batch["x"][k]), batch["ks"][k],
            ref.R_NONZERO), rel=1e-12)
        assert stacked["pairs"].value[k] == pytest.approx(ref.reduce(
            ref.mean_pairwise_squared_error(y, p, batch["ws"][k][:, None]), 1.0, ref.R_SUM),
            rel=1e-12)
    assert stacked["mse"].value[1] == 0.0  # zero weights: div_no_nan
    assert stacked["l2"].value.tolist() == [separate[0]["l2"].value] * K
    # each batch as an ObjectiveResult, with its state
    for k in (0, 3):
        at = stacked.at(k)
        assert at.total == pytest.approx(separate[k].total, rel=1e-12)
        assert at.state.finalize().total == pytest.approx(separate[k].total, rel=1e-12)
    assert len(stacked.results()) == K
    assert stacked.as_dict()["total"] is stacked.total
    assert len(objective.tracker) == K  # the K separate calls only: stacked records nothing


def test_one_kernel_launch_per_term(monkeypatch):
    from lossforge import kernels
    batch, params = _data(1)
    objective = lossforge.load_objective(_config())
    objective.evaluate_stacked(batch, params=params)  # compiled
    launched = []
    real = kernels.call
    monkeypatch.setattr(kernels, "call", lambda kernel, *a: launched.append(kernel) or real(kernel, *a))
    objective.evaluate_stacked(batch, params=params)
    assert len(launched) == len(objective.config.terms)
    assert all(k.__name__.startswith("run_stacked") for k in launched)


def test_large_batches_are_summed_in_chunks_like_a_single_call():
    # 3 batches of 40000 elements: above the parallel threshold, so each is chunked
    rng = np.random.default_rng(2)
    objective = lossforge.load_objective({"terms": {"m": {
        "loss": "mse", "inputs": {"labels": "y", "predictions": "p", "weights": "w"}}}})
    batch = {"y": rng.normal(size=(3, 4000, 10)), "p": rng.normal(size=(3, 4000, 10)),
             "w": (rng.random((3, 4000, 1)) > 0.1) * 1.0}
    stacked = objective.evaluate_stacked(batch)
    _assert_matches(stacked, _separate(objective, batch, {}))
    for k in range(3):
        assert stacked["m"].value[k] == pytest.approx(ref.reduce(
            ref.mean_squared_error(batch["y"][k], batch["p"][k]), batch["w"][k], ref.R_NONZERO),
            rel=1e-12)


@pytest.mark.parametrize("axis", [1, -1])
def test_batch_axis_anywhere(axis):
    batch, params = _data(3)
    batch["ks"] = batch["ks"][:, None]  # (K, 1): per batch a (1,) weight, which has an axis 1
    objective = lossforge.load_objective(_config("static"))
    moved = {key: np.moveaxis(v, 0, axis) for key, v in batch.items()}
    stacked = objective.evaluate_stacked(moved, batch_axis=axis, params=params)
    _assert_matches(stacked, _separate(objective, moved, params, axis=axis))


def test_batches_of_one_loss_element():
    # logits (K, C): each batch is one row, its loss a scalar
    rng = np.random.default_rng(4)
    objective = lossforge.load_objective({"terms": {"ce": {
        "loss": "softmax_cross_entropy", "inputs": {"onehot_labels": "z", "logits": "x",
                                                    "weights": "w"}}}})
    batch = {"z": np.eye(C)[rng.integers(0, C, 7)], "x": rng.normal(size=(7, C)),
             "w": rng.uniform(0.5, 2, 7)}
    _assert_matches(objective.evaluate_stacked(batch), _separate(objective, batch, {}))


def _small_config():
    """Two terms of `_config` (a new dtype or memory layout compiles new kernels: keep it short)."""
    config = _config("static")
    config["terms"] = {k: config["terms"][k] for k in ("mse", "sparse")}
    return config


def test_float32_batches():
    batch, params = _data(5, dtype=np.float32)
    objective = lossforge.load_objective(_small_config())
    stacked = objective.evaluate_stacked(batch, params=params)
    assert stacked["mse"].dtype == "float32"
    assert all(v == float(np.float32(v)) for v in stacked["mse"].value)
    _assert_matches(stacked, _separate(objective, batch, params), rel=2e-6)


def test_inputs_are_not_modified_and_results_are_read_only():
    batch, params = _data(6)
    copies = {k: v.copy() for k, v in batch.items()}
    for v in batch.values():
        v.flags.writeable = False
    stacked = lossforge.load_objective(_small_config()).evaluate_stacked(batch, params=params)
    assert all(np.array_equal(batch[k], copies[k]) for k in batch)
    with pytest.raises(ValueError):
        stacked.total[0] = 1.0


def test_stacked_errors_name_the_argument():
    batch, params = _data(7)
    objective = lossforge.load_objective(_config())
    with pytest.raises(InvalidArgumentError, match="term 'mse'.*`labels` has 4 batches.*has 5"):
        objective.evaluate_stacked(dict(batch, y=batch["y"][:4]), params=params)
    with pytest.raises(InvalidArgumentError, match="term 'mse'.*`weights` has 2 batches"):
        objective.evaluate_stacked(dict(batch, w=batch["w"][:2]), params=params)
    with pytest.raises(InvalidArgumentError, match="term 'mse'.*`batch_axis`=3 is out of range for `labels` of rank 3"):
        objective.evaluate_stacked(batch, batch_axis=3, params=params)
    with pytest.raises(InvalidTypeError, match="`batch_axis` must be an int"):
        objective.evaluate_stacked(batch, batch_axis=True, params=params)
    with pytest.raises(InvalidArgumentError, match="no key 'y'"):
        objective.evaluate_stacked({k: v for k, v in batch.items() if k != "y"}, params=params)
    with pytest.raises(InvalidTypeError, match="`batch` must be a mapping"):
        objective.evaluate_stacked([batch], params=params)
    with pytest.raises(InvalidArgumentError, match="no batches"):
        objective.evaluate_stacked({k: v[:0] for k, v in batch.items()}, params=params)
    two = lossforge.load_objective({"terms": {
        "a": {"loss": "mse", "inputs": {"labels": "y", "predictions": "p"}},
        "b": {"loss": "mse", "inputs": {"labels": "y2", "predictions": "p2"}}}})
    with pytest.raises(InvalidArgumentError, match="term 'b' has 3 batches.*terms before it have 5"):
        two.evaluate_stacked({"y": batch["y"], "p": batch["p"], "y2": batch["y"][:3],
                              "p2": batch["p"][:3]})
    cos0 = lossforge.load_objective({"terms": {"c": {
        "loss": "cosine_distance", "params": {"axis": 0},
        "inputs": {"labels": "u", "predictions": "v"}}}})
    with pytest.raises(InvalidArgumentError, match="reduces over its first axis"):
        cos0.evaluate_stacked(batch)
    scalar = lossforge.load_objective({"terms": {"m": {
        "loss": "mse", "inputs": {"labels": "y", "predictions": "p"}}}})
    with pytest.raises(InvalidArgumentError, match="`labels`"):
        scalar.evaluate_stacked({"y": np.float64(1.0), "p": np.ones(3)})
    bad = dict(batch, cls=batch["cls"] + C)  # out-of-range labels: the single-call checks hold
    with pytest.raises(InvalidArgumentError, match="term 'sparse'.*outside the valid range"):
        objective.evaluate_stacked(bad, params=params)


# --- CUDA: simulator and PTX (subprocesses) ------------------------------------------------------

needs_numba_cuda = skip_without_numba_cuda("check")


@needs_numba_cuda
def test_stacked_cuda_kernel_matches_the_cpu_under_the_simulator():
    out = subprocess.run([sys.executable, __file__, "simulator"],
                         env=subprocess_env(NUMBA_ENABLE_CUDASIM="1"), capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert not summary["failures"], "\n".join(summary["failures"][:20])
    assert summary["cases"] >= 9 and summary["launches"] >= 9
    assert set(summary["losses"]) >= {"mean_squared_error", "sparse_softmax_cross_entropy",
                                      "mean_pairwise_squared_error", "cosine_distance"}


@needs_numba_cuda
def test_every_registered_loss_stacked_kernel_compiles_to_ptx():
    """Every loss's ``stacked_pass`` for cc 9.0 (float32 and float64, one process each, in
    parallel), and ``stacked_finish`` and one loss for cc 8.0 too."""
    runs = {dtype: subprocess.Popen([sys.executable, __file__, "ptx", dtype], env=subprocess_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for dtype in ("float32", "float64")}
    names = lossforge.registry.names()
    results = []
    for dtype, run in runs.items():
        out, err = run.communicate(timeout=TIMEOUT)
        assert run.returncode == 0, err[-4000:]
        results += json.loads(out.strip().splitlines()[-1])
    compiled = {(r["kernel"], r["variant"], r["cc"]) for r in results if r["ok"] is True}
    for name in names:
        for variant in ("float32", "float64"):
            assert (name, variant, "9.0") in compiled, [r for r in results if r["kernel"] == name]
    assert ("mean_squared_error", "float32", "8.0") in compiled
    assert {("stacked_finish", "float64", cc) for cc in ("8.0", "9.0")} <= compiled
    assert all(r["ok"] is True and r["target"] == "sm_" + r["cc"].replace(".", "") and
               r["ptx_version"] for r in results), [r for r in results if r["ok"] is not True]


def _simulator_worker(gpu: bool = False) -> None:
    """The stacked CUDA kernel against the CPU; ``gpu``: on a real GPU (``test_cuda_gpu.py``)."""
    if not gpu:
        sys.setswitchinterval(5e-4)
        from test_cuda_sim import _make_simulator_shared_arrays_atomic
        _make_simulator_shared_arrays_atomic()
    import numba
    from lossforge import registry, stacked as st
    from lossforge.kernels import cuda as kc
    from lossforge.kernels import cuda_stacked as kcs
    assert kc.SIMULATOR != gpu
    failures, launches, losses = [], [], set()
    cases = 0

    def hook(spec, args):
        expected = kcs.stacked_signature(spec, args[2].dtype)
        got = tuple(numba.typeof(a) for a in args)
        if got != tuple(expected):
            failures.append(f"{spec.name}: launched with {got}, PTX compiles {expected}")
        launches.append(spec.name)

    kcs.launch_hook = hook
    rng = np.random.default_rng(0)

    def check(name, y, p, w=1.0, params=None, rtol=1e-9):
        nonlocal cases
        cases += 1
        losses.add(name)
        spec = registry.get(name)
        try:
            cpu, _ = st.stacked_states(spec, y, p, w, params)
            gpu, _ = st.stacked_states(spec, y, p, w, params, device="cuda")
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            return
        if not np.allclose(gpu, cpu, rtol=rtol, atol=1e-12):
            failures.append(f"{name}: cpu {cpu.tolist()} vs gpu {gpu.tolist()}")

    kc.configure(threads=8, blocks=8)
    y, p = rng.normal(size=(3, 10, 7)), rng.normal(size=(3, 10, 7))  # 70 elements per batch
    w = rng.random((3, 10, 7)) * (rng.random((3, 10, 7)) > 0.3)
    check("mean_squared_error", y, p, w)  # 3 blocks x 8 threads per batch: a strided loop
    check("mean_squared_error", y.astype(np.float32), p.astype(np.float32), 0.5, rtol=1e-5)
    check("huber_loss", y, p, rng.random((3, 1, 7)), {"delta": 0.5})
    check("mean_pairwise_squared_error", y, p, rng.random((3, 10)))
    u = y / np.linalg.norm(y, axis=2, keepdims=True)
    check("cosine_distance", u, p / np.linalg.norm(p, axis=2, keepdims=True),
          rng.random((3, 10, 1)), {"axis": 1})
    cls = rng.integers(0, 4, (3, 9))
    x = rng.normal(size=(3, 9, 4))
    check("sparse_softmax_cross_entropy", cls, x, rng.random(3))
    check("softmax_cross_entropy", np.eye(4)[cls], x, 1.0,
          {"label_smoothing": 0.2, "class_weights": [1.0, 2.0, 0.5, 1.0]})
    kc.configure(threads=4, blocks=2)
    previous, kcs.MAX_GRID_Y = kcs.MAX_GRID_Y, 2  # 5 batches on 2 grid rows: the k-stride loop
    check("log_loss", rng.random((5, 6)), rng.uniform(0.1, 0.9, (5, 6)), rng.random((5, 6)))
    kcs.MAX_GRID_Y = previous
    # an objective on device="cuda"
    objective = lossforge.load_objective({"terms": {
        "m": {"loss": "mse", "inputs": {"labels": "y", "predictions": "p", "weights": "w"}},
        "s": {"loss": "sparse_softmax_cross_entropy", "inputs": {"labels": "c", "logits": "x"}}}})
    batch = {"y": y, "p": p, "w": w, "c": cls, "x": x}
    cases += 1
    on_cpu = objective.evaluate_stacked(batch)
    on_cuda = objective.evaluate_stacked(batch, device="cuda")
    if not np.allclose(on_cuda.total, on_cpu.total, rtol=1e-9):
        failures.append(f"objective: cpu {on_cpu.total} vs gpu {on_cuda.total}")
    if gpu:  # the default launch over large batches
        kc.configure(threads=256, blocks=1024)
        yb, pb = rng.normal(size=(64, 2000, 50)), rng.normal(size=(64, 2000, 50))
        check("mean_squared_error", yb, pb, rng.random((64, 2000, 1)))
        check("log_loss", rng.random((16, 100_000)), rng.uniform(0.01, 0.99, (16, 100_000)))
        check("sparse_softmax_cross_entropy", rng.integers(0, 100, (32, 4000)),
              rng.normal(size=(32, 4000, 100)).astype(np.float32), 1.0, rtol=1e-5)
    print(json.dumps({"failures": failures, "cases": cases, "launches": len(launches),
                      "losses": sorted(losses)}))


def _ptx_worker(dtype: str) -> None:
    from lossforge import registry
    from lossforge.kernels import cuda_stacked
    results = cuda_stacked.check_ptx(ccs=((9, 0),), dtypes=(dtype,), support=dtype == "float64")
    if dtype == "float32":
        results += cuda_stacked.check_ptx(ccs=((8, 0),), dtypes=(dtype,), support=False,
                                          specs=[registry.get("mean_squared_error")])
    else:
        results += cuda_stacked.check_ptx(ccs=((8, 0),), specs=[], dtypes=())
    print(json.dumps(results))


if __name__ == "__main__":
    if sys.argv[1] in ("simulator", "gpu"):
        _simulator_worker(gpu=sys.argv[1] == "gpu")
    elif sys.argv[1] == "ptx":
        _ptx_worker(sys.argv[2])
