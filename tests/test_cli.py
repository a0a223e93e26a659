"""The `lossforge` command: run, check, list, describe, plot."""
import csv
from pathlib import Path

import numpy as np
import pytest

import lossforge
from lossforge.cli import main

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_run_on_synthetic_data_prints_every_component(capsys):
    assert main(["run", str(CONFIGS / "multitask.yaml")]) == 0
    out = capsys.readouterr().out
    for name in ("click", "rating", "l2", "total", "share"):
        assert name in out
    objective = lossforge.load_objective(CONFIGS / "multitask.yaml")
    total = objective(*objective.example_batch(0, 32, 10)).total
    assert f"{total:14.6g}".strip() in out  # the printed total is the objective's on that data


def test_run_on_a_data_file_in_batches_with_history(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 40
    data = {"click": (rng.random(n) > 0.5) * 1.0, "click_prob": rng.uniform(0.1, 0.9, n),
            "rating": rng.normal(size=n), "rating_pred": rng.normal(size=n),
            "dense_w": rng.normal(size=(4, 4)), "out_w": rng.normal(size=4)}
    np.savez(tmp_path / "data.npz", **data)
    history = tmp_path / "history.csv"
    assert main(["run", str(CONFIGS / "multitask.yaml"), "--data", str(tmp_path / "data.npz"),
                 "--batches", "4", "--history", str(history)]) == 0
    rows = list(csv.DictReader(open(history)))
    assert len(rows) == 4
    objective = lossforge.load_objective(CONFIGS / "multitask.yaml")
    params = {"dense_w": data["dense_w"], "out_w": data["out_w"]}
    first = {k: v[:10] for k, v in data.items() if k not in params}
    assert float(rows[0]["total"]) == pytest.approx(objective(first, params).total, rel=1e-12)


def test_run_with_a_data_file_missing_keys_fails_clearly(tmp_path, capsys):
    np.savez(tmp_path / "data.npz", click=np.zeros(3))
    assert main(["run", str(CONFIGS / "multitask.yaml"), "--data", str(tmp_path / "data.npz")]) == 1
    assert "lacks the batch key(s)" in capsys.readouterr().err


def test_check_reports_problems_with_exit_code_1(tmp_path, capsys):
    assert main(["check", str(CONFIGS / "scene_depth_pose.yaml")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("terms:\n  a: {loss: msee, inputs: {labels: y, predictions: p}}\n")
    assert main(["check", str(bad)]) == 1
    assert f"{bad}:2:" in capsys.readouterr().err


def test_list_and_describe(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in lossforge.registry.names())
    assert main(["describe", "huber"]) == 0
    out = capsys.readouterr().out
    assert "huber_loss" in out and "delta = 1" in out and "S / count(W != 0)" in out
    assert main(["describe", "hubber"]) == 1
    assert "did you mean" in capsys.readouterr().err.lower()


def test_plot_writes_an_image(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (lossforge[plot])")
    history = tmp_path / "h.csv"
    assert main(["run", str(CONFIGS / "scene_depth_pose.yaml"), "--batches", "3",
                 "--history", str(history)]) == 0
    image = tmp_path / "c.png"
    assert main(["plot", str(history), "-o", str(image)]) == 0
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 10_000
