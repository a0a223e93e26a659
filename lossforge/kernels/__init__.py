"""Compiled kernels, built on first use and cached on disk.

Importing this package imports numba; the rest of lossforge imports it lazily (only when a
loss is first computed), so ``import lossforge`` stays fast.

Each loss's kernels live in a module generated from ``template.py`` around that loss's
registered formulas, named after the loss and the fingerprint of its formulas, in a cache
directory whose name is a fingerprint of the template and of the lossforge, Python, numba,
llvmlite and numpy versions. An edited formula, template or upgrade thus lands in a fresh
module: a stale compiled kernel is never loaded. The directory is
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

__all__ = ["call", "loss_kernels", "cache_directory", "PARALLEL_THRESHOLD"]

_HERE = Path(__file__).resolve().parent
_SLOT_BEGIN = "# --- formula slot: replaced per loss by lossforge.kernels ---\n"
_SLOT_END = "# --- end of formula slot ---\n"

#: Inputs with at least this many loss elements use the multi-threaded kernels; below it,
#: a thread launch costs more than it saves. Override with $LOSSFORGE_PARALLEL_THRESHOLD.
PARALLEL_THRESHOLD = int(os.environ.get("LOSSFORGE_PARALLEL_THRESHOLD", 1 << 15))

_lock = threading.Lock()
_modules: dict[tuple[str, str], ModuleType] = {}
_directory: Path | None = None


_warm: set = set()


def call(kernel, *args):
    """``kernel(*args)``; the first call of each argument signature in this process holds a
    file lock, so processes compiling into one cache directory never interleave.

    numba's cache index has no lock: processes compiling the same kernels at once were seen to
    load another loss's kernel (see ../shared/reference/numba-cuda.md). Once a signature has
    been called, later calls skip the lock (a set lookup).
    """
    key = (id(kernel),) + tuple((a.dtype.str, a.ndim, a.flags.c_contiguous, a.flags.writeable)
                                if isinstance(a, np.ndarray) else type(a) for a in args)
    if key in _warm:
        return kernel(*args)
    with _file_lock(cache_directory() / ".compile.lock"):
        result = kernel(*args)
    _warm.add(key)
    return result


class _file_lock:
    """An exclusive ``fcntl.flock`` on ``path`` (a no-op where fcntl does not exist)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no advisory file locks; numba's own behaviour
            return self
        try:
            self.file = open(self.path, "a")
            fcntl.flock(self.file, fcntl.LOCK_EX)
        except OSError:  # an unwritable cache directory: run unlocked
            self.file = None
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()  # closing releases the lock


def _fingerprint() -> str:
    digest = hashlib.sha256()
    from lossforge import __version__
    for part in (__version__, platform.python_version(), numba.__version__,
                 llvmlite.__version__, np.__version__):
        digest.update(part.encode() + b"\0")
    for name in ("template.py", "template_cuda.py", "template_stacked.py",
                 "template_cuda_stacked.py"):
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


def _slot(spec) -> str:
    """The slot text binding ``LOSS_AT``/``GRAD_AT`` to ``spec``'s compiled formulas."""
    params = "".join(f", params[{i}]" for i in range(len(spec.params)))
    lines = ["from lossforge.registry import jitted_formula as _jitted",
             f"_VALUE = _jitted({spec.fingerprint!r}, 'value')"]
    if spec.grad is not None:
        lines.append(f"_GRAD = _jitted({spec.fingerprint!r}, 'grad')")
    if spec.kind == "rowwise":
        value = f"_VALUE(y, p, j{params})"
        grad = f"_GRAD(y, p, j, scale, grad{params})"
    else:
        value = f"_VALUE(float64(y[j]), float64(p[j]){params})"
        grad = f"grad[j] = scale * _GRAD(float64(y[j]), float64(p[j]){params})"
    if spec.grad is None:
        grad = "pass  # no gradient formula: never called (mode has no GRAD bit)"
    return "\n".join(lines + [
        "", "", '@njit(inline="always", error_model="numpy")', "def LOSS_AT(y, p, j, params):",
        f"    return {value}",
        "", "", '@njit(inline="always", error_model="numpy")',
        "def GRAD_AT(y, p, j, scale, grad, params):",
        f"    {grad}", ""])


def loss_kernels(spec):
    """The CPU kernel module of the `LossSpec` ``spec``, generated and imported on first use.

    It provides ``run_serial``/``run_parallel(y, p, w, params, n, values, grad, mode) ->
    (sum L*W, sum W, count W != 0)`` (see ``template.py``).
    """
    return generated_module(spec, "template.py")


def generated_module(spec, template: str, prefix: str = ""):
    """``template`` (a file of this package) with ``spec``'s formula slot, imported once.

    The module file is ``<prefix><loss>_<formula fingerprint>.py`` in `cache_directory` (whose
    name fingerprints the templates), so each loss's compiled kernels cache under their own name.
    """
    key = (template, spec.fingerprint)
    module = _modules.get(key)
    if module is not None:
        return module
    with _lock:
        if key not in _modules:
            from lossforge import registry
            registry.remember(spec)  # the generated module looks its formulas up by fingerprint
            head, rest = (_HERE / template).read_text().split(_SLOT_BEGIN)
            _, tail = rest.split(_SLOT_END)
            source = head + _SLOT_BEGIN + _slot(spec) + _SLOT_END + tail
            _modules[key] = _load(f"{prefix}{_safe(spec.name)}_{spec.fingerprint}", source)
        return _modules[key]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40]
