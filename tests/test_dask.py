"""`lossforge.dask.evaluate`: chunk-wise kernels and tree-reduced states on Dask arrays.

Compared with the in-memory call on the same (computed) arrays and a float64 NumPy reference,
on Dask's local schedulers and on a real ``distributed.LocalCluster`` of two worker processes
on the loopback interface, started here.
"""
import math
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lossforge
import reference as ref
from lossforge import InvalidArgumentError, InvalidTypeError

from cuda_support import subprocess_env

dask = pytest.importorskip("dask", reason="dask is not installed: pip install 'lossforge[dask]'")
da = pytest.importorskip("dask.array", reason="dask[array] is not installed: pip install 'lossforge[dask]'")
distributed = pytest.importorskip("distributed",
                                  reason="distributed is not installed: pip install 'lossforge[dask]'")
import lossforge.dask  # noqa: E402

N, D, C = 1000, 3, 4
README = pathlib.Path(__file__).resolve().parent.parent / "README.md"

CONFIG = {"name": "distributed", "weighting": "static", "terms": {
    "mse": {"loss": "mean_squared_error", "inputs": {"labels": "y", "predictions": "p", "weights": "w"}},
    "ce": {"loss": "sparse_softmax_cross_entropy", "weight": 0.5,
           "inputs": {"labels": "cls", "logits": "x", "weights": "sw"}},
    "pairs": {"loss": "mean_pairwise_squared_error", "inputs": {"labels": "y", "predictions": "p"}},
    "huber": {"loss": "huber_loss", "params": {"delta": 0.5}, "reduction": "weighted_mean",
              "inputs": {"labels": "y", "predictions": "p", "weights": "wf"}},
    "half": {"loss": "absolute_difference", "reduction": "weighted_sum",
             "inputs": {"labels": "y", "predictions": "p", "weights": "half"}},
}, "regularization": {"l2": {"type": "l2", "scale": 0.01, "params": ["fc"]}}}


def _numpy_data(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 2.0, (N, D)) * (rng.random((N, D)) > 0.3)
    w[:150] = 0.0  # whole chunks of zero weights
    return {"y": rng.normal(size=(N, D)), "p": rng.normal(size=(N, D)), "w": w,
            "cls": rng.integers(0, C, N), "x": 3 * rng.normal(size=(N, C)),
            "sw": rng.uniform(0.0, 2.0, N), "wf": rng.uniform(0.5, 1.5, (1, D)),
            "half": np.float64(0.5)}, {"fc": rng.normal(size=(5, 5))}


def _dask_batch(data):
    """Dask arrays of different, uneven chunkings (rechunked to a common one by evaluate);
    the broadcast weights stay NumPy."""
    batch = dict(data)
    batch["y"] = da.from_array(data["y"], chunks=(130, D))
    batch["p"] = da.from_array(data["p"], chunks=(97, 2))
    batch["w"] = da.from_array(data["w"], chunks=(250, 1))
    batch["cls"] = da.from_array(data["cls"], chunks=333)
    batch["x"] = da.from_array(data["x"], chunks=(90, C))
    return batch  # "sw" stays a NumPy array: chunked like the term's logits


def _assert_results_equal(a, b, rel=1e-12):
    assert list(a.components) == list(b.components)
    for name, c in a.components.items():
        assert c.value == pytest.approx(b[name].value, rel=rel), name
        assert c.weighted == pytest.approx(b[name].weighted, rel=rel), name
    assert a.total == pytest.approx(b.total, rel=rel)


@pytest.mark.parametrize("scheduler, split_every", [("threads", 8), ("sync", 2)])
def test_local_schedulers_equal_the_in_memory_call_and_numpy(scheduler, split_every):
    data, params = _numpy_data()
    objective = lossforge.load_objective(CONFIG)
    result = lossforge.dask.evaluate(objective, _dask_batch(data), params, scheduler=scheduler,
                                     split_every=split_every)
    _assert_results_equal(result, objective(data, params))
    assert result["mse"].value == pytest.approx(
        ref.reduce(ref.mean_squared_error(data["y"], data["p"]), data["w"], ref.R_NONZERO), rel=1e-12)
    assert result["ce"].value == pytest.approx(ref.reduce(
        ref.sparse_softmax_cross_entropy(data["cls"], data["x"]), data["sw"], ref.R_NONZERO), rel=1e-12)
    assert result["pairs"].value == pytest.approx(ref.reduce(
        ref.mean_pairwise_squared_error(data["y"], data["p"]), 1.0, ref.R_SUM), rel=1e-12)
    assert result["l2"].value == pytest.approx(0.005 * np.sum(params["fc"] ** 2), rel=1e-14)
    assert result["mse"].state.element_count == N * D
    assert len(objective.tracker) == 2  # the in-memory call and this one


def test_term_states_are_a_lazy_tree():
    data, _ = _numpy_data(1)
    objective = lossforge.load_objective(CONFIG)
    states = lossforge.dask.term_states(objective, _dask_batch(data), split_every=3)
    graph = dict(states["mse"].__dask_graph__())
    chunks = [k for k in graph if isinstance(k, str) and "-chunk-" in k]
    merges = [k for k in graph if isinstance(k, str) and "-merge-" in k]
    # predictions in 97-row chunks: 11 chunks, merged 3 at a time: 4 + 2 + 1 merges
    assert len(chunks) == math.ceil(N / 97) == 11
    assert len(merges) == 4 + 2 + 1
    state, dtype = dask.compute(states["mse"], scheduler="sync")[0]
    assert state.element_count == N * D and dtype == "float64"


#: A cluster whose workers die (killed, out of memory) leaves a computation waiting for
#: workers forever: the cluster tests run in subprocesses under this limit instead.
CLUSTER_TIMEOUT = 180


def _run_script(args, cwd=None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, *args], env=subprocess_env(), cwd=cwd,
                              capture_output=True, text=True, timeout=CLUSTER_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} did not finish in {CLUSTER_TIMEOUT} s (did a Dask worker die?):\n"
                    f"{(exc.stderr or b'')[-3000:]!r}")


def test_readme_dask_example_runs_as_a_script(tmp_path):
    section = README.read_text().split("### Distributed: Dask")[1].split("\n## ")[0]
    blocks = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the README's Dask section needs one runnable ```py example"
    (tmp_path / "example.py").write_text(blocks[0])
    out = _run_script([str(tmp_path / "example.py")], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("{'total': ") and float(lines[1]) == pytest.approx(
        eval(lines[0])["total"], rel=1e-12)  # cluster and local scheduler agree


def _user_loss(y, p):  # a loss registered only in the client's process
    return abs(p - y) ** 1.5


def test_distributed_local_cluster_two_worker_processes():
    out = _run_script([__file__, "cluster"])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert out.stdout.strip().splitlines()[-1] == "cluster checks passed"


def _cluster_checks() -> None:
    """On a LocalCluster of 2 worker processes (loopback only): same result as in memory, the
    kernels run on both workers where the chunks live, a user loss travels with the tasks."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        lossforge.register_loss("dask_user_loss")(_user_loss)
        config = dict(CONFIG, terms=dict(CONFIG["terms"], user={
            "loss": "dask_user_loss", "inputs": {"labels": "y", "predictions": "p"}}))
        objective = lossforge.load_objective(config)
        # data generated and kept on the workers, chunk by chunk
        rng = da.random.default_rng(7)
        batch = {"y": rng.normal(size=(N, D), chunks=(125, D)),
                 "p": rng.normal(size=(N, D), chunks=(125, D)),
                 "w": rng.uniform(0.0, 1.0, size=(N, D), chunks=(125, D)),
                 "cls": rng.integers(0, C, size=N, chunks=125),
                 "x": rng.normal(size=(N, C), chunks=(125, C)),
                 "sw": rng.uniform(0.0, 2.0, size=N, chunks=125),
                 "wf": np.ones((1, D)), "half": np.float64(0.5)}
        batch = dict(zip(batch, dask.persist(*batch.values())))
        distributed.wait([v for v in batch.values() if isinstance(v, da.Array)])
        holders = {w for keys in client.who_has().values() for w in keys}
        assert len(holders) == 2, holders  # the data is spread over both workers
        params = {"fc": np.eye(5)}
        local = {k: (v.compute() if isinstance(v, da.Array) else v)  # gathered for the check
                 for k, v in batch.items()}
        # first in memory: the specs now carry this process's compiled kernel modules, which
        # must not travel to the workers (they cannot be unpickled there)
        expected = objective(local, params)
        with distributed.get_task_stream(client) as stream:
            result = lossforge.dask.evaluate(objective, batch, params)
        _assert_results_equal(result, expected)
        assert result["user"].value == pytest.approx(
            np.mean(np.abs(local["p"] - local["y"]) ** 1.5), rel=1e-12)
        tasks = [t for t in stream.data if "-chunk-" in str(t.get("key"))]
        assert len(tasks) == 6 * (N // 125), len(tasks)  # one per term and chunk
        workers = {t["worker"] for t in tasks}
        assert len(workers) == 2, workers  # the kernels ran where the chunks live
    print("cluster checks passed")


def test_errors_name_the_argument():
    data, params = _numpy_data(2)
    objective = lossforge.load_objective(CONFIG)
    batch = _dask_batch(data)
    with pytest.raises(InvalidArgumentError, match="term 'mse'.*`weights` has 999 rows"):
        lossforge.dask.evaluate(objective, dict(batch, w=batch["w"][:999]), params)
    with pytest.raises(InvalidArgumentError, match="no key 'x'"):
        lossforge.dask.evaluate(objective, {k: v for k, v in batch.items() if k != "x"}, params)
    with pytest.raises(InvalidTypeError, match="`batch` must be a mapping"):
        lossforge.dask.evaluate(objective, [batch], params)
    with pytest.raises(InvalidArgumentError, match="`split_every` must be an int >= 2"):
        lossforge.dask.evaluate(objective, batch, params, split_every=1)
    with pytest.raises(InvalidArgumentError, match="needs the parameter array 'fc'"):
        lossforge.dask.evaluate(objective, batch, None)
    with pytest.raises(InvalidArgumentError, match="no input is a Dask array"):
        lossforge.dask.evaluate(objective, data, params)
    bad = dict(batch, cls=da.from_array(data["cls"] + C, chunks=100))
    with pytest.raises(InvalidArgumentError, match=r"term 'ce'.*, chunk \d+: .*outside the valid range"):
        lossforge.dask.evaluate(objective, bad, params, scheduler="sync")


def test_missing_dask_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(InvalidArgumentError, match=r"pip install 'lossforge\[dask\]'"):
        lossforge.dask.evaluate(lossforge.load_objective(CONFIG), {})


def test_import_lossforge_imports_neither_dask_nor_numba():
    out = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys, lossforge
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed", "numba")))
    """)], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_docstring_example():
    import doctest
    result = doctest.testmod(lossforge.dask, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 3


if __name__ == "__main__" and sys.argv[1:] == ["cluster"]:
    _cluster_checks()
