"""The README's table of losses is the registry's own, and its code examples run."""
import pathlib
import re

import numpy as np

import lossforge

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- registry table: begin -->\n", "<!-- registry table: end -->"


def test_registry_table_is_current():
    text = README.read_text()
    table = text.split(BEGIN)[1].split(END)[0].strip()
    assert table == lossforge.registry.markdown_table(), (
        "README's loss table is stale: regenerate it with "
        "python -c 'import lossforge; print(lossforge.registry.markdown_table())'")


def test_python_examples_run(monkeypatch, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    (tmp_path / "configs").symlink_to(README.parent / "configs")
    monkeypatch.chdir(tmp_path)  # the examples write files (history.csv): not into the repo
    rng = np.random.default_rng(0)
    namespace = {"labels": rng.normal(size=(4, 3)), "predictions": rng.normal(size=(4, 3)),
                 "mask": (rng.random((4, 1)) > 0.3).astype(float),
                 "batch": {"click": (rng.random(8) > 0.5) * 1.0, "click_prob": rng.uniform(0.1, 0.9, 8),
                           "rating": rng.normal(size=8), "rating_pred": rng.normal(size=8)},
                 "dense_w": rng.normal(size=(4, 4)), "out_w": rng.normal(size=4)}
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    finally:
        for name in ("log_cosh_demo", "pseudo_huber_demo"):
            lossforge.registry.unregister(name, missing_ok=True)
