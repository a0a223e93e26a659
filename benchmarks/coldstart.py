"""Cold start, each figure from fresh subprocesses (median of ``repeat``).

* ``python -c pass``: the interpreter alone (wall), for scale;
* ``import lossforge`` (in-process time), and whether it imported numba (it should not);
* ``import numba`` alone (in-process), the part of a first call lossforge cannot avoid;
* import plus the first call of a built-in loss (MSE at 64 x 10), kernel cache warm;
* ``lossforge run configs/multitask.yaml`` (wall), kernel cache warm.

One untimed run of the first-call and ``lossforge run`` commands fills the kernel cache first.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

from .cases import DEFAULT_OBJECTIVE

_IMPORT = ("import time, sys; t = time.perf_counter(); import lossforge; "
           "print(time.perf_counter() - t, 'numba' in sys.modules)")
_NUMBA = "import time; t = time.perf_counter(); import numba; print(time.perf_counter() - t)"
_FIRST_CALL = ("import time; t = time.perf_counter(); import lossforge, numpy as np; "
               "y = np.zeros((64, 10), np.float32); p = np.ones((64, 10), np.float32); "
               "lossforge.losses.mean_squared_error(y, p); print(time.perf_counter() - t)")


def _python(code: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, done.stdout.strip()


def _lossforge_command() -> list[str]:
    exe = shutil.which("lossforge")
    return [exe] if exe else [sys.executable, "-m", "lossforge.cli"]


def run(repeat: int = 5, config=DEFAULT_OBJECTIVE) -> dict:
    """``{figure: {"median_s", "min_s", "samples_s", "what"}}`` plus ``numba_imported``."""
    cmd = _lossforge_command() + ["run", str(config)]
    env = dict(os.environ)
    _python(_FIRST_CALL)  # fill the kernel cache
    subprocess.run(cmd, capture_output=True, check=True, env=env)
    samples: dict[str, list[float]] = {"python": [], "import": [], "numba": [], "first_call": [],
                                       "run": []}
    numba_imported = []
    for _ in range(repeat):  # interleaved, so load drift hits every figure alike
        samples["python"].append(_python("pass")[0])
        out = _python(_IMPORT)[1].split()
        samples["import"].append(float(out[0]))
        numba_imported.append(out[1] == "True")
        samples["numba"].append(float(_python(_NUMBA)[1]))
        samples["first_call"].append(float(_python(_FIRST_CALL)[1]))
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        samples["run"].append(time.perf_counter() - t0)
    what = {"python": "python -c pass (wall, for scale)",
            "import": "import lossforge (in-process)",
            "numba": "import numba alone (in-process)",
            "first_call": "import lossforge + first MSE call, warm cache (in-process)",
            "run": f"lossforge run {os.path.relpath(config)} (wall, warm cache)"}
    out = {k: {"what": what[k], "median_s": statistics.median(v), "min_s": min(v), "samples_s": v}
           for k, v in samples.items()}
    out["numba_imported_by_import"] = any(numba_imported)
    out["command"] = " ".join(cmd)
    return out
