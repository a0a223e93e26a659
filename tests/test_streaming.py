"""Streaming evaluation (`Objective.evaluate`), mergeable result states and chunked file reading.

The oracle is twofold: a single call on the concatenated data, and float64 NumPy references
(`reference.py`) of the same reductions. Chunks are uneven, one is empty, and the first holds
only zero weights, so a per-chunk mean of means would be wrong for every reduction.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lossforge
import reference as ref
from lossforge import InvalidArgumentError, InvalidTypeError, ObjectiveState
from lossforge.streaming import read_chunks

REDUCTIONS = {"sum": "weighted_sum", "mean": "weighted_mean",
              "batch": "weighted_sum_over_batch_size", "nonzero": "weighted_sum_by_nonzero_weights"}
N, D, C = 64, 3, 5
BOUNDS = [0, 10, 10, 17, 40, 41, 64]  # chunk [10, 10) is empty; [0, 10) has only zero weights


def _config(weighting="static"):
    terms = {f"mse_{k}": {"loss": "mean_squared_error", "reduction": r,
                          "inputs": {"labels": "y", "predictions": "p", "weights": "w"}}
             for k, r in REDUCTIONS.items()}
    terms["ce"] = {"loss": "sparse_softmax_cross_entropy", "weight": 0.5,
                   "inputs": {"labels": "cls", "logits": "logits", "weights": "sw"}}
    terms["pairs"] = {"loss": "mean_pairwise_squared_error", "weight": 2.0,
                      "inputs": {"labels": "y", "predictions": "p", "weights": "sw"}}
    terms["cos"] = {"loss": "cosine_distance", "params": {"axis": 1}, "reduction": "weighted_mean",
                    "inputs": {"labels": "u", "predictions": "v", "weights": "sw1"}}
    return {"name": "streamed", "terms": terms, "weighting": weighting,
            "regularization": {"l2": {"type": "l2", "scale": 0.01, "params": ["fc"]}}}


def _data(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 2.0, (N, D)) * (rng.random((N, D)) > 0.3)
    w[:10] = 0.0
    sw = rng.uniform(0.5, 2.0, N) * (rng.random(N) > 0.25)
    sw[:10] = 0.0
    u = rng.normal(size=(N, D))
    v = rng.normal(size=(N, D))
    batch = {"y": rng.normal(size=(N, D)).astype(dtype), "p": rng.normal(size=(N, D)).astype(dtype),
             "w": w, "cls": rng.integers(0, C, N), "logits": 3 * rng.normal(size=(N, C)),
             "sw": sw, "sw1": sw[:, None].copy(), "u": u / np.linalg.norm(u, axis=1, keepdims=True),
             "v": v / np.linalg.norm(v, axis=1, keepdims=True)}
    return batch, {"fc": rng.normal(size=(4, 4))}


def _chunks(batch, bounds=BOUNDS):
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield {k: v[a:b] for k, v in batch.items()}


def _references(batch, params):
    """Every component by float64 NumPy, from the reference formulas."""
    y, p, w, sw = batch["y"], batch["p"], batch["w"], batch["sw"]
    out = {f"mse_{k}": ref.reduce(ref.mean_squared_error(y, p), w, r) for k, r in REDUCTIONS.items()}
    out["ce"] = ref.reduce(ref.sparse_softmax_cross_entropy(batch["cls"], batch["logits"]), sw,
                           ref.R_NONZERO)
    out["pairs"] = ref.reduce(ref.mean_pairwise_squared_error(y, p, sw[:, None]), 1.0, ref.R_SUM)
    out["cos"] = ref.reduce(ref.cosine_distance(batch["u"], batch["v"], 1), sw[:, None], ref.R_MEAN)
    out["l2"] = 0.01 * 0.5 * float(np.sum(params["fc"] ** 2))
    return out


def _assert_results_equal(a, b, rel=1e-12):
    assert list(a.components) == list(b.components)
    for name, c in a.components.items():
        d = b.components[name]
        assert c.value == pytest.approx(d.value, rel=rel, abs=1e-300), name
        assert c.weight == d.weight and c.kind == d.kind and c.reduction == d.reduction, name
        assert c.weighted == pytest.approx(d.weighted, rel=rel, abs=1e-300), name
    assert a.total == pytest.approx(b.total, rel=rel)


def test_streamed_result_equals_one_call_and_the_numpy_references():
    batch, params = _data()
    objective = lossforge.load_objective(_config())
    whole = objective(batch, params)
    streamed = objective.evaluate(_chunks(batch), params, progress=False)
    _assert_results_equal(streamed, whole)
    references = _references(batch, params)
    for name, expected in references.items():
        assert streamed[name].value == pytest.approx(expected, rel=1e-10), name
    assert references["mse_nonzero"] != 0.0 and references["mse_mean"] != 0.0
    # the first chunk alone has no non-zero weight: a mean of per-chunk means would differ
    per_chunk = [objective(c, params)["mse_nonzero"].value for c in _chunks(batch)]
    assert per_chunk[0] == 0.0
    assert abs(np.mean(per_chunk) - streamed["mse_nonzero"].value) > 1e-3
    # the states add up element by element
    state = streamed["mse_sum"].state
    assert state.element_count == N * D
    assert state.nonzero_count == np.count_nonzero(batch["w"])
    assert state.weight_sum == pytest.approx(batch["w"].sum(), rel=1e-14)


def test_regularizers_and_log_variances_are_taken_once_and_weights_computed_once():
    batch, params = _data(1)
    objective = lossforge.load_objective(_config("uncertainty"))
    params = dict(params, **{"log_var/ce": 0.3, "log_var/mse_sum": -0.2})
    streamed = objective.evaluate(list(_chunks(batch)), params, progress=False)
    whole = objective(batch, params)
    _assert_results_equal(streamed, whole)
    assert streamed["l2"].value == pytest.approx(_references(batch, params)["l2"], rel=1e-14)
    assert streamed["ce/log_var"].value == 0.3
    assert streamed["ce"].weight == pytest.approx(0.5 * np.exp(-0.3), rel=1e-15)


def test_the_tracker_records_a_stream_as_one_call():
    batch, params = _data(2)
    objective = lossforge.load_objective(_config())
    result = objective.evaluate(_chunks(batch), params, progress=False)
    assert len(objective.tracker) == 1
    assert objective.tracker.mean("mse_mean") == result["mse_mean"].value
    objective(batch, params)  # the same data in one call: the pooled mean is unchanged
    assert objective.tracker.mean("mse_mean") == pytest.approx(result["mse_mean"].value, rel=1e-12)


def test_float32_inputs_give_float32_rounded_values_as_one_call():
    batch, params = _data(3, np.float32)
    objective = lossforge.load_objective(_config())
    streamed = objective.evaluate(_chunks(batch), params, progress=False)
    whole = objective(batch, params)
    assert streamed["mse_mean"].dtype == whole["mse_mean"].dtype == "float32"
    assert streamed["mse_mean"].value == float(np.float32(streamed["mse_mean"].value))
    _assert_results_equal(streamed, whole, rel=1e-6)


def test_progress_bar_on_request_and_quiet_when_not_a_terminal(capsys):
    batch, params = _data(4)
    objective = lossforge.load_objective(_config())
    objective.evaluate(list(_chunks(batch)), params)  # None: stderr is not a terminal here
    assert capsys.readouterr().err == ""
    objective.evaluate(list(_chunks(batch)), params, progress=True)
    err = capsys.readouterr().err
    assert "6/6" in err and "batch/s" in err  # count of the list, rate
    with pytest.raises(InvalidTypeError, match="`progress`"):
        objective.evaluate([batch], params, progress="yes")


def test_evaluate_errors_name_the_argument_and_the_batch():
    batch, params = _data(5)
    objective = lossforge.load_objective(_config())
    with pytest.raises(InvalidTypeError, match="iterable of batch mappings.*call the objective"):
        objective.evaluate(batch, params)
    with pytest.raises(InvalidTypeError, match="iterable of batch mappings"):
        objective.evaluate(3, params)
    with pytest.raises(InvalidTypeError, match="item 1 of `batches`"):
        objective.evaluate([batch, [1, 2]], params)
    with pytest.raises(InvalidArgumentError, match="yielded no batch"):
        objective.evaluate(iter([]), params)
    bad = dict(batch, cls=batch["cls"] + C)  # out-of-range sparse labels
    with pytest.raises(InvalidArgumentError, match="batch 1 of `batches`.*term 'ce'"):
        objective.evaluate([batch, bad], params)
    with pytest.raises(InvalidArgumentError, match="needs the parameter array 'fc'"):
        objective.evaluate(_chunks(batch), None)
    assert len(objective.tracker) == 0  # failed evaluations record nothing


def test_caller_arrays_are_not_modified():
    batch, params = _data(6)
    copies = {k: v.copy() for k, v in batch.items()}
    for v in batch.values():
        v.flags.writeable = False
    lossforge.load_objective(_config()).evaluate(_chunks(batch), params, progress=False)
    assert all(np.array_equal(batch[k], copies[k]) for k in batch)


# --- states --------------------------------------------------------------------------------------

def test_states_merge_serialise_and_finalize_to_the_one_call_result():
    batch, params = _data(7)
    objective = lossforge.load_objective(_config())
    parts = [objective(c, params) for c in _chunks(batch)]
    whole = objective(batch, params)
    texts = [json.dumps(p.state.to_dict()) for p in parts]  # e.g. sent back by workers
    merged = sum(ObjectiveState.from_dict(json.loads(t)) for t in texts)
    _assert_results_equal(merged.finalize(), whole)
    _assert_results_equal(sum(parts), whole)
    _assert_results_equal(parts[0] + parts[1] + parts[3], objective(
        {k: np.concatenate([v[0:10], v[10:10], v[17:40]]) for k, v in batch.items()}, params))
    # a state round-trips exactly, and a result is its own state's finalization
    state = whole.state
    assert ObjectiveState.from_json(state.to_json()) == state
    assert state.finalize() == whole


def test_states_of_different_weights_or_params_do_not_add():
    batch, params = _data(8)
    objective = lossforge.load_objective(_config("uncertainty"))
    a = objective(batch, dict(params, **{"log_var/ce": 0.1}))
    b = objective(batch, dict(params, **{"log_var/ce": 0.2}))
    with pytest.raises(InvalidArgumentError, match="task weight"):
        a.state + b.state
    c = objective(batch, {"fc": params["fc"] * 2})
    d = objective(batch, params)
    with pytest.raises(InvalidArgumentError, match="regularizer 'l2'.*taken once"):
        c + d
    other = lossforge.load_objective({"terms": {"m": {"loss": "mse", "inputs": {
        "labels": "y", "predictions": "p"}}}})({"y": batch["y"], "p": batch["p"]})
    with pytest.raises(InvalidArgumentError, match="different objectives"):
        d.state + other.state


@pytest.mark.parametrize("data, match", [
    ({"components": []}, "not an ObjectiveState dict"),
    ({"format": "lossforge.ObjectiveState/1", "components": [{"name": "a"}]}, r"\[0\]` is malformed"),
    ({"format": "lossforge.ObjectiveState/1", "components": [
        {"name": "a", "kind": "term", "weight": 1.0, "reduction": "weighted_sum", "dtype": "int8",
         "state": {"weighted_sum": 1.0, "weight_sum": 1.0, "nonzero_count": 1.0,
                   "element_count": 1}}]}, "dtype must be one of"),
    ({"format": "lossforge.ObjectiveState/1", "components": [
        {"name": "a", "kind": "term", "weight": 1.0, "reduction": "weighted_sum", "dtype": "float64",
         "state": {"weighted_sum": "1", "weight_sum": 1.0, "nonzero_count": 1.0,
                   "element_count": 1}}]}, "malformed"),
    ({"format": "lossforge.ObjectiveState/1", "components": [
        {"name": "a", "kind": "loss", "weight": 1.0}]}, "kind must be one of"),
])
def test_malformed_state_data_is_a_clear_error(data, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ObjectiveState.from_dict(data)


def test_from_json_rejects_non_json():
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        ObjectiveState.from_json("{nope")
    with pytest.raises(InvalidTypeError, match="`text`"):
        ObjectiveState.from_json({"format": 1})


# --- reading files in chunks ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["npz", "npz_compressed", "npy", "mapping"])
def test_read_chunks_yields_the_rows_of_every_source(tmp_path, kind):
    rng = np.random.default_rng(9)
    arrays = {"y": rng.normal(size=(103, 3)), "cls": rng.integers(0, 5, 103).astype(np.int32),
              "f": np.asfortranarray(rng.normal(size=(103, 2))).astype(np.float32),
              "w": rng.random((1, 3)), "s": np.float64(2.5)}
    if kind == "npz":
        np.savez(tmp_path / "d.npz", **arrays)
        source = tmp_path / "d.npz"
    elif kind == "npz_compressed":
        arrays["f"] = np.ascontiguousarray(arrays["f"])
        np.savez_compressed(tmp_path / "d.npz", **arrays)
        source = str(tmp_path / "d.npz")
    elif kind == "npy":
        arrays = {"y": arrays["y"]}
        np.save(tmp_path / "y.npy", arrays["y"])
        source = tmp_path / "y.npy"
    else:
        np.save(tmp_path / "y.npy", arrays["y"])
        source = dict(arrays, y=str(tmp_path / "y.npy"))
    chunks = read_chunks(source, 25)
    assert len(chunks) == 5 and chunks.rows == 103
    for _ in range(2):  # iterable twice
        got = list(chunks)
        assert [len(c["y"]) for c in got] == [25, 25, 25, 25, 3]
        for key, value in arrays.items():
            if np.ndim(value) and np.shape(value)[0] == 103:
                assert np.array_equal(np.concatenate([c[key] for c in got]), value), key
                assert all(c[key].dtype == value.dtype for c in got)
            else:  # broadcast arrays come whole with every chunk
                assert all(np.array_equal(c[key], value) for c in got), key
    assert list(read_chunks(source, 1000))[0]["y"].shape == (103, 3)
    assert set(next(iter(read_chunks(source, 10, keys=["y"])))) == {"y"}


def test_read_chunks_errors(tmp_path):
    np.savez(tmp_path / "d.npz", y=np.zeros(10), p=np.zeros(9))
    with pytest.raises(InvalidArgumentError, match="share their first axis"):
        read_chunks(tmp_path / "d.npz", 3)
    with pytest.raises(InvalidArgumentError, match=r"lacks the key\(s\) \['q'\]"):
        read_chunks(tmp_path / "d.npz", 3, keys=["y", "q"])
    for bad in (0, -1):
        with pytest.raises(InvalidArgumentError, match="`chunk_size` must be >= 1"):
            read_chunks(tmp_path / "d.npz", bad)
    for bad in (2.0, True, "3"):
        with pytest.raises(InvalidTypeError, match="`chunk_size` must be an int"):
            read_chunks(tmp_path / "d.npz", bad)
    with pytest.raises(InvalidArgumentError, match="no such file"):
        read_chunks(tmp_path / "missing.npz", 3)
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(InvalidArgumentError, match="neither a .npy file nor a .npz"):
        read_chunks(tmp_path / "t.txt", 3)
    with pytest.raises(InvalidTypeError, match="`source`"):
        read_chunks(42, 3)
    np.savez_compressed(tmp_path / "f.npz", y=np.asfortranarray(np.zeros((10, 2))))
    with pytest.raises(InvalidArgumentError, match="Fortran order"):
        read_chunks(tmp_path / "f.npz", 3)


def test_streaming_a_file_equals_one_call(tmp_path):
    batch, params = _data(10)
    np.savez(tmp_path / "data.npz", **batch)
    objective = lossforge.load_objective(_config())
    streamed = objective.evaluate(read_chunks(tmp_path / "data.npz", 7, keys=objective.batch_keys),
                                  params, progress=False)
    _assert_results_equal(streamed, objective(batch, params))


# --- the command ---------------------------------------------------------------------------------

CONFIG = """
name: streamed
terms:
  rating: {loss: mean_squared_error, inputs: {labels: y, predictions: p, weights: w}}
  cls: {loss: sparse_softmax_cross_entropy, weight: 0.5, inputs: {labels: c, logits: x}}
regularization:
  l2: {type: l2, scale: 1.0e-3, params: [fc]}
"""


def test_run_with_chunk_size_prints_the_one_call_result(tmp_path, capsys):
    from lossforge.cli import main
    rng = np.random.default_rng(11)
    n = 500
    data = {"y": rng.normal(size=(n, 4)), "p": rng.normal(size=(n, 4)),
            "w": (rng.random((n, 1)) > 0.2) * 1.0, "c": rng.integers(0, 3, n),
            "x": rng.normal(size=(n, 3)), "fc": rng.normal(size=(7, 7))}
    np.savez(tmp_path / "data.npz", **data)
    (tmp_path / "c.yaml").write_text(CONFIG)
    assert main(["run", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data.npz"),
                 "--chunk-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "streamed in 8 chunk(s) of 64 rows (500 rows)" in out
    objective = lossforge.load_objective(str(tmp_path / "c.yaml"))
    whole = objective({k: v for k, v in data.items() if k != "fc"}, {"fc": data["fc"]})
    assert f"{whole.total:14.6g}".strip() in out.splitlines()[-1]
    assert main(["run", str(tmp_path / "c.yaml"), "--chunk-size", "64"]) == 1
    assert "--chunk-size streams a --data file" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data.npz"),
                 "--chunk-size", "0"]) == 1
    assert "`chunk_size` must be >= 1" in capsys.readouterr().err


_RSS_SCRIPT = textwrap.dedent("""
    import sys
    from lossforge.cli import main
    warm, args = sys.argv[1], sys.argv[2:]
    # a first run on a tiny file compiles (or loads) the kernels: compiler memory is not the
    # stream's; then the peak (VmHWM) is reset and measured over the real run alone
    assert main(args[:3] + [warm] + args[4:]) == 0
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    code = main(args)
    status = open("/proc/self/status").read()
    print("PEAK_KB", status.split("VmHWM:")[1].split()[0])
    sys.exit(code)
""")


def _peak_rss_mib(config, data, warm, chunk_size) -> float:
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(warm), "run", str(config),
                          "--data", str(data), "--chunk-size", str(chunk_size)],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__)))))
    assert out.returncode == 0, out.stderr[-3000:]
    return int(out.stdout.split("PEAK_KB")[1].split()[0]) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"),
                    reason="needs Linux's /proc/self/clear_refs to reset the peak RSS")
def test_run_with_chunk_size_keeps_memory_flat_as_the_file_grows(tmp_path):
    """Peak RSS of `lossforge run --chunk-size` over a 16 MB and a 160 MB file: about equal
    (loading the whole file would add 144 MB)."""
    (tmp_path / "c.yaml").write_text(CONFIG)
    rng = np.random.default_rng(12)
    peaks = {}
    # the warm-up file has one full chunk and a partial one: the kernels the real runs call
    for rows in (30_000, 100_000, 1_000_000):  # 20 float64 values per row: 16 MB and 160 MB
        path = tmp_path / f"d{rows}.npz"
        np.savez(path, y=rng.normal(size=(rows, 8)), p=rng.normal(size=(rows, 8)),
                 w=np.ones((1, 1)), c=np.zeros(rows, dtype=np.int64),
                 x=rng.normal(size=(rows, 3)), fc=np.ones((7, 7)))
        if rows > 30_000:
            peaks[rows] = _peak_rss_mib(tmp_path / "c.yaml", path, tmp_path / "d30000.npz", 20000)
            path.unlink()
    growth = peaks[1_000_000] - peaks[100_000]
    assert growth < 30, f"peak RSS grew by {growth:.0f} MiB for 144 MB more data: {peaks}"


@pytest.mark.parametrize("module", ["lossforge.objective.state", "lossforge.objective.objective",
                                    "lossforge.streaming", "lossforge.stacked"])
def test_docstring_examples(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module), extraglobs={"np": np},
                             optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 3
