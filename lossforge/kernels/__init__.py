"""Compiled kernels, built on first use and cached on disk.

Importing this package imports numba; the rest of lossforge imports it lazily (only when a
loss is first computed), so ``import lossforge`` stays fast.

Each loss's kernels live in a module generated from ``template.py`` with that loss's formula
from ``formulas.py``, written to a cache directory whose name is a fingerprint of the kernel
sources and of the Python, numba, llvmlite and numpy versions. An edit or an upgrade thus
lands in a fresh directory: a stale compiled kernel is never loaded. The directory is
``$LOSSFORGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/lossforge`` (``~/.cache/lossforge``); if it
cannot be written, a temporary directory is used with one warning.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType

import llvmlite
import numba
import numpy as np

from . import formulas

__all__ = ["loss_kernels", "pairwise_kernels", "cache_directory", "PARALLEL_THRESHOLD"]

_HERE = Path(__file__).resolve().parent
_SLOT_BEGIN = "# --- formula slot: replaced per loss by lossforge.kernels ---\n"
_SLOT_END = "# --- end of formula slot ---\n"

#: Inputs with at least this many loss elements use the multi-threaded kernels; below it,
#: a thread launch costs more than it saves. Override with $LOSSFORGE_PARALLEL_THRESHOLD.
PARALLEL_THRESHOLD = int(os.environ.get("LOSSFORGE_PARALLEL_THRESHOLD", 1 << 15))

_lock = threading.Lock()
_modules: dict[str, ModuleType] = {}
_directory: Path | None = None


def _fingerprint() -> str:
    digest = hashlib.sha256()
    from lossforge import __version__
    for part in (__version__, platform.python_version(), numba.__version__,
                 llvmlite.__version__, np.__version__):
        digest.update(part.encode() + b"\0")
    for name in ("formulas.py", "template.py", "pairwise.py"):
        digest.update((_HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_directory() -> Path:
    """The directory holding this installation's generated kernel modules and their caches."""
    global _directory
    if _directory is None:
        base = os.environ.get("LOSSFORGE_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
            "lossforge")
        candidate = Path(base) / f"kernels-{_fingerprint()}"
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = candidate / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            fallback = Path(tempfile.mkdtemp(prefix="lossforge-kernels-"))
            warnings.warn(f"lossforge: kernel cache directory {candidate} is not writable ({exc}); "
                          f"compiling into {fallback} for this process only. Set "
                          f"LOSSFORGE_CACHE_DIR to a writable directory to keep compiled kernels.",
                          RuntimeWarning, stacklevel=3)
            candidate = fallback
        _directory = candidate
    return _directory


def _load(module_name: str, source: str) -> ModuleType:
    """Write ``source`` as ``module_name.py`` in the cache directory (once) and import it."""
    path = cache_directory() / f"{module_name}.py"
    if not path.exists() or path.read_text() != source:
        # numba keys its cache on the file's mtime and size: write atomically, and only when
        # the content differs, so concurrent processes never see a half-written module.
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    qualified = f"_lossforge_kernels_{path.parent.name.replace('-', '_')}_{module_name}"
    spec = importlib.util.spec_from_file_location(qualified, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module  # numba's cache needs to find the module while compiling
    spec.loader.exec_module(module)
    return module


def _slot(formula_name: str) -> str:
    """The slot text binding ``LOSS_AT`` to a formula of either form."""
    import inspect
    formula = getattr(formulas, formula_name)
    arity = len(inspect.signature(formula.py_func).parameters)
    if arity == 4:  # row-wise: f(y, p, j, params)
        return f"LOSS_AT = _formulas.{formula_name}\n"
    return (f"_SCALAR = _formulas.{formula_name}\n\n\n"
            "@njit(inline=\"always\")\n"
            "def LOSS_AT(y, p, j, params):\n"
            "    return _SCALAR(float64(y[j]), float64(p[j]), params)\n")


def loss_kernels(formula_name: str) -> ModuleType:
    """The kernel module of the formula ``formulas.<formula_name>``, built on first use.

    It provides ``reduce_serial``/``reduce_parallel(y, p, w, params, n) -> (sum L*W, sum W,
    count W != 0)`` and ``values_serial``/``values_parallel(y, p, w, params, n, out)``.
    """
    module = _modules.get(formula_name)
    if module is not None:
        return module
    with _lock:
        if formula_name not in _modules:
            template = (_HERE / "template.py").read_text()
            head, rest = template.split(_SLOT_BEGIN)
            _, tail = rest.split(_SLOT_END)
            source = head + _SLOT_BEGIN + _slot(formula_name) + _SLOT_END + tail
            _modules[formula_name] = _load(formula_name, source)
        return _modules[formula_name]


def pairwise_kernels() -> ModuleType:
    """The module of ``pairwise_sums`` (see ``pairwise.py``), loaded from the cache directory."""
    with _lock:
        if "pairwise" not in _modules:
            _modules["pairwise"] = _load("pairwise", (_HERE / "pairwise.py").read_text())
        return _modules["pairwise"]
