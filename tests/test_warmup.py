"""The opt-in background warm-up: it loads numba and the kernels, and never changes a result."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lossforge


def _run(code: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                         env=dict(os.environ, **env), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_environment_variable_starts_a_background_warm_up_at_import():
    got = _run("""
        import json, sys, threading
        import lossforge
        workers = [t for t in threading.enumerate() if t.name == "lossforge-warm-up"]
        for t in workers:
            t.join()
        # a float32 call of log_loss (LossSpec.fast_logs) runs its fast_logs module; the
        # warm-up's valid inputs need no rerun with the full log, so that module is not loaded
        kernels = lossforge.registry.get("log_loss").__dict__
        k = kernels.get("_cpu_kernels_fast_logs")
        print(json.dumps({"threads": len(workers), "numba": "numba" in sys.modules,
                          "compiled": len(k.serial_reduce.signatures) if k else 0,
                          "full_log_module": "_cpu_kernels" in kernels}))
    """, LOSSFORGE_WARMUP="log_loss")
    assert got == {"threads": 1, "numba": True, "compiled": 1, "full_log_module": False}


def test_without_the_variable_import_starts_nothing():
    got = _run("""
        import json, sys, threading
        import lossforge
        print(json.dumps({"threads": [t.name for t in threading.enumerate()
                                      if t.name == "lossforge-warm-up"],
                          "numba": "numba" in sys.modules}))
    """, LOSSFORGE_WARMUP="0")
    assert got == {"threads": [], "numba": False}


def test_warm_up_in_the_foreground_then_results_are_unchanged():
    rng = np.random.default_rng(0)
    y = rng.random((8, 3)).astype(np.float32)
    p = rng.uniform(0.05, 0.95, (8, 3)).astype(np.float32)
    assert lossforge.warm_up(["log_loss", "sparse_softmax_cross_entropy"], background=False) is None
    want = np.mean(-y * np.log(p + 1e-7) - (1 - y) * np.log(1 - p + 1e-7), dtype=np.float64)
    assert lossforge.losses.log_loss(y, p) == pytest.approx(want, rel=1e-6)


def test_unknown_loss_names_fail_at_once_with_a_suggestion():
    with pytest.raises(lossforge.registry.UnknownLossError, match="log_loss"):
        lossforge.warm_up(["log_los"])
