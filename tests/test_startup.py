"""What the first computation loads: numba's start-up without SciPy's BLAS, which no lossforge
kernel uses (it cost 0.16 s of a 0.58 s import + first call), and numba's own BLAS-using
functions still working afterwards."""
import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np

CODE = """
    import json, sys
    import numpy as np
    import lossforge
    lossforge.losses.mean_squared_error(np.ones(3, np.float32), np.zeros(3, np.float32))
    loaded = "scipy.linalg" in sys.modules
    import numba
    from numba.np import arraymath, linalg
    out = {"scipy_linalg_after_first_call": loaded, "have_blas": arraymath._HAVE_BLAS,
           "ensure_blas_is_numbas": linalg.ensure_blas.__qualname__ == "ensure_blas"}
    if out["have_blas"]:
        @numba.njit
        def dot(a, b):
            return np.dot(a, b)
        a = np.arange(6.0).reshape(2, 3)
        out["dot"] = dot(a, a.T).tolist()
    print(json.dumps(out))
"""


def test_first_call_skips_scipy_blas_and_numba_blas_still_works():
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(CODE)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    scipy = importlib.util.find_spec("scipy") is not None
    assert got["scipy_linalg_after_first_call"] is False
    assert got["ensure_blas_is_numbas"] is True  # restored after numba's start-up
    assert got["have_blas"] is scipy  # the answer numba would have found
    if scipy:  # np.dot through SciPy's BLAS, imported when numba compiles it
        a = np.arange(6.0).reshape(2, 3)
        assert got["dot"] == (a @ a.T).tolist()
