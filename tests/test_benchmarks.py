"""The benchmark suite runs end to end (tiny sizes, the NumPy peer) and its agreement check
catches a peer that computes the wrong value. Nothing here asserts speed."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import peers, run  # noqa: E402


def test_sizes_parse():
    assert run.parse_size("16M") == run.parse_size("2^24") == 16_777_216
    assert run.parse_size("1e2") == 100 and run.parse_size("64k") == 65536
    with pytest.raises(Exception):
        run.parse_size("1.5")


def test_quick_run_writes_table_json_plot_and_flags_a_wrong_peer(tmp_path, monkeypatch, capsys):
    right = peers.XP_FORMULAS["softmax_cross_entropy"]
    monkeypatch.setitem(peers.XP_FORMULAS, "softmax_cross_entropy",
                        lambda xp, z, x: 1.01 * right(xp, z, x))  # 1% off: a wrong peer
    code = run.main(["--quick", "--sizes", "1000", "--peers", "numpy", "--sections",
                     "throughput,grad,latency", "--losses",
                     "mean_squared_error,softmax_cross_entropy,objective",
                     "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1  # a disagreement makes the run fail

    results = json.loads((tmp_path / "latest.json").read_text())
    assert (tmp_path / "throughput.png").stat().st_size > 0
    assert results["meta"]["peers"] == {"numpy": peers.np.__version__}
    rows = {r["loss"]: r for r in results["throughput"]}
    assert set(rows) == {"mean_squared_error", "softmax_cross_entropy", "objective:multitask"}
    for r in rows.values():
        assert r["size"] == 1000 and r["bytes"] > 0 and r["input_sets"] >= 2
        assert r["lossforge"] > 0 and r["floor"] > 0 and r["peers"]["numpy"] > 0
        assert r["speedup"] == pytest.approx(r["peers"]["numpy"] / r["lossforge"])
        assert r["pct_floor"] == pytest.approx(100 * r["floor"] / r["lossforge"])
    assert rows["mean_squared_error"]["agreement"]["numpy"]["ok"]
    assert rows["objective:multitask"]["agreement"]["numpy"]["ok"]
    assert not rows["softmax_cross_entropy"]["agreement"]["numpy"]["ok"]
    assert [(d["loss"], d["peer"]) for d in results["disagreements"]] == \
        [("softmax_cross_entropy", "numpy")]
    assert results["disagreements"][0]["rel_diff"] == pytest.approx(0.01, rel=1e-3)
    assert {g["loss"] for g in results["grad"]} == set(rows)  # value+grad at the largest size
    latency = {(r["library"], r["kind"]) for r in results["latency"]}
    assert {("lossforge", "mse"), ("lossforge", "objective"), ("numpy", "mse"),
            ("numpy", "objective"), ("numba", "mse")} <= latency
    assert all(r["agrees"] and r["us"] > 0 for r in results["latency"])

    # the Markdown table on stdout: one row per loss, the wrong peer marked loudly
    assert "| loss | shape | lossforge | floor | NumPy | vs fastest peer | GB/s | % of floor |" in out
    wrong = next(line for line in out.splitlines() if line.startswith("| softmax_cross_entropy |"))
    assert "WRONG" in wrong
    assert "1 DISAGREEMENT(S)" in out


def test_skips_missing_peers_with_a_note(monkeypatch):
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    loaded, skipped = peers.load(["numpy", "torch"])
    assert loaded == [] and "not installed" in skipped["torch"]


def test_cuda_without_a_gpu_says_so_and_exits_cleanly(tmp_path, capsys):
    from benchmarks import cuda
    if cuda._available()[0]:
        pytest.skip("a GPU is present: --device cuda would run the real benchmark")
    assert run.main(["--device", "cuda", "--quick", "--output", str(tmp_path)]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out
    assert not (tmp_path / "latest-cuda.json").exists()
