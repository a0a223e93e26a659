"""What the CUDA test files share: whether numba-cuda is installed, and subprocess environments."""
import os
from importlib import metadata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def numba_cuda_installed() -> bool:
    # numba ships a deprecated built-in numba.cuda, so importing it proves nothing
    try:
        metadata.version("numba-cuda")
    except metadata.PackageNotFoundError:
        return False
    return True


def skip_without_numba_cuda(what: str):
    """A skip marker, with a reason that is true on machines without numba-cuda."""
    return pytest.mark.skipif(
        not numba_cuda_installed(),
        reason=f"numba-cuda is not installed (pip install 'lossforge[cuda]'): no CUDA kernels to {what}")


def subprocess_env(**extra) -> dict:
    """The environment of a subprocess: lossforge importable, the simulator off unless asked."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    env.update(extra)
    return env
