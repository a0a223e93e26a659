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

import contextlib
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
from numba.core.dispatcher import Dispatcher
from numba.core.errors import NumbaError, NumbaIRAssumptionWarning

from ..errors import FormulaError, LossforgeError


def _defer_scipy_blas() -> None:
    """Keep numba's start-up from importing SciPy's BLAS, which no lossforge kernel uses.

    numba's CPU target imports ``numba.np.arraymath`` on first use, and that module asks
    ``numba.np.linalg.ensure_blas()`` whether ``np.dot`` and friends may call BLAS, which
    imports ``scipy.linalg.cython_blas``: 0.16 s of a 0.58 s first call (import lossforge +
    one MSE call, warm cache) when SciPy is installed. Here that one question is answered by
    whether SciPy is installed at all (``find_spec``, which imports nothing), while
    ``numba.np.arraymath`` is imported; the real ``ensure_blas`` is put back at once, and
    numba's linear-algebra functions still call it when they compile. Numba internals that
    look different (another version) are left alone.
    """
    if "numba.np.arraymath" in sys.modules:
        return
    try:
        from numba.np import linalg
        real = linalg.ensure_blas
    except (ImportError, AttributeError):  # pragma: no cover - another numba layout
        return

    def scipy_installed():
        if importlib.util.find_spec("scipy") is None:
            raise ImportError("scipy is not installed")

    linalg.ensure_blas = scipy_installed
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        linalg.ensure_blas = real


_defer_scipy_blas()


def _allow_long_block_names() -> None:
    """Let LLVM parse numba's IR however long its block names grow in a long-lived process.

    numba names a block after its label, and each inlining of an ``inline="always"`` helper
    whose IR it has kept offsets the helper's labels by the largest label so far, so labels can
    double with every kernel a process compiles. After a few thousand (a test session compiling
    every loss in several modes and dtypes) a name passes LLVM's default limit of 1024
    characters for a local name in IR text, and compiling fails ("name is too long"): the
    limit is raised to the most the option takes.
    """
    import llvmlite.binding
    llvmlite.binding.set_option("lossforge", "-non-global-value-max-name-size=2147483647")


_allow_long_block_names()

__all__ = ["call", "loss_kernels", "cache_directory", "PARALLEL_THRESHOLD"]

_HERE = Path(__file__).resolve().parent
_SLOT_BEGIN = "# --- formula slot: replaced per loss by lossforge.kernels ---\n"
_SLOT_END = "# --- end of formula slot ---\n"

#: Inputs with at least this many elements (predictions, or loss elements if more) use the
#: multi-threaded kernels; below it, a thread launch costs more than it saves. Override with
#: $LOSSFORGE_PARALLEL_THRESHOLD.
PARALLEL_THRESHOLD = int(os.environ.get("LOSSFORGE_PARALLEL_THRESHOLD", 1 << 15))

_lock = threading.Lock()
_modules: dict[tuple, ModuleType] = {}  # (template, fingerprint, constants) -> module
_directory: Path | None = None


def call(kernel, *args):
    """``kernel(*args)`` (kept for callers of earlier versions: every generated kernel now
    takes the compile lock itself, see `_lock_compiles`)."""
    return kernel(*args)


_launch_lock = threading.Lock()
_layer_threadsafe: bool | None = None  # known after the first parallel launch


@contextlib.contextmanager
def parallel_launch():
    """Hold around every launch of a ``parallel=True`` kernel.

    numba's ``workqueue`` threading layer (its fallback where neither OpenMP nor TBB is found,
    e.g. macOS wheels) is not thread-safe: two Python threads launching parallel kernels at
    once abort the process ("Concurrent access has been detected"). Launches are serialised
    until the first one reveals the layer, and from then on only under ``workqueue``; with
    ``omp`` or ``tbb`` this is one global read per launch.
    """
    global _layer_threadsafe
    if _layer_threadsafe:
        yield
        return
    with _launch_lock:
        yield
        if _layer_threadsafe is None:
            try:
                _layer_threadsafe = numba.threading_layer() != "workqueue"
            except ValueError:  # no parallel region has run yet
                pass


_compiling = threading.local()


def _lock_compiles(dispatcher, lock: Path, loss: str = "?", siblings=()) -> None:
    """Make ``dispatcher`` hold the file lock ``lock`` whenever it compiles or loads from the
    cache.

    numba's cache index has no lock: processes compiling the same kernels at once were seen to
    load another loss's kernel (see ../shared/reference/numba-cuda.md). Each generated module
    has its own lock (numba's index files are per source file), so a process loading one loss
    never waits for another process compiling a different one. numba calls
    ``_compile_for_args`` only when no compiled signature matches a call, so a call of an
    already compiled signature costs nothing extra.

    A formula numba cannot compile raises `FormulaError` naming ``loss`` (at its first use);
    other losses are unaffected. A cache file numba cannot read (truncated, overwritten) is
    never trusted: the caches of the module's dispatchers (``siblings``) are emptied, with one
    warning, and the kernel compiled afresh.
    """
    compile_for_args = dispatcher._compile_for_args

    def locked(*args, **kwargs):
        if getattr(_compiling, "active", False):  # a nested compile: the lock is held
            return compile_for_args(*args, **kwargs)
        _compiling.active = True
        try:
            with _file_lock(lock), warnings.catch_warnings():
                # numba's pedantic scope check misreads the formulas inlined into prange loops
                # (the compiled code is right: every loss is tested against float64 references)
                warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning)
                try:
                    try:
                        return compile_for_args(*args, **kwargs)
                    except Exception as exc:  # noqa: BLE001 -- only cache reads are retried
                        if not _raised_by_numba_cache(exc):
                            raise
                        warnings.warn(f"lossforge: a kernel cache file of loss {loss!r} in "
                                      f"{lock.parent} could not be read ({type(exc).__name__}: "
                                      f"{exc}); it is discarded and the kernel recompiled.",
                                      RuntimeWarning, stacklevel=2)
                        for d in siblings or (dispatcher,):
                            if getattr(d, "_cache", None) is not None:
                                d._cache.flush()
                        return compile_for_args(*args, **kwargs)
                except (NumbaError, AttributeError, NameError, TypeError, ValueError,
                        KeyError, IndexError, NotImplementedError, AssertionError,
                        ImportError) as exc:
                    # (numba raises some typing failures raw, e.g. AttributeError for an
                    # unknown math.* function, ImportError for np.linalg without scipy)
                    if isinstance(exc, LossforgeError):
                        raise
                    raise FormulaError.from_numba(loss, exc) from None
        finally:
            _compiling.active = False

    dispatcher._compile_for_args = locked


def _raised_by_numba_cache(exc: BaseException) -> bool:
    """Whether ``exc`` comes from reading numba's on-disk cache (numba.core.caching)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace(os.sep, "/").endswith("numba/core/caching.py"):
            return True
        tb = tb.tb_next
    return False


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
    from lossforge.kernels import prefetch, vmath
    for part in (__version__, platform.python_version(), numba.__version__,
                 llvmlite.__version__, np.__version__, vmath.VECTOR_WIDTH,
                 str(prefetch.PREFETCH_ROWS)):
        digest.update(part.encode() + b"\0")
    # every template, vmath, and the registry's compilation of formulas into their variants
    for path in sorted(_HERE.glob("*.py")) + [_HERE.parent / "registry.py"]:
        digest.update(path.read_bytes())
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


def _load(module_name: str, source: str, loss: str = "?") -> ModuleType:
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
    lock = path.parent / f".{module_name}.lock"
    dispatchers = [v for v in vars(module).values() if isinstance(v, Dispatcher)]
    for value in dispatchers:
        _lock_compiles(value, lock, loss, dispatchers)
    return module


def _slot(spec, template: str, constants=(), float32: bool = False,
          fast_logs: bool = False) -> str:
    """The slot text binding a template's formula names to ``spec``'s compiled formulas, with
    the parameters in ``constants`` (``((index, value), ...)``) as literals; ``float32``: the
    formulas' float32 variants (``template_cuda.py``'s float32 module, `_cuda_slot`);
    ``fast_logs``: float32 variants whose ``log`` is ``vmath.log_or_nan`` (`loss_kernels`)."""
    if template == "template_elementwise.py":
        return _elementwise_slot(spec, constants, fast_logs)
    if template == "template_cuda.py":
        return _cuda_slot(spec, constants, float32)
    if template == "template.py" and spec.float32_math:
        text = _rowwise_float32_slot(spec, constants)
    else:
        text = _plain_slot(spec, constants)
    if template == "template.py":
        from lossforge import registry
        # a row that calls math is compute-bound: ask for the next rows meanwhile (see
        # lossforge.kernels.prefetch; a memory-bound row measured slower with it)
        text += f"\n\nPREFETCH = {registry.calls_math(spec.value)}\n"
    return text


def _cuda_slot(spec, constants, float32: bool) -> str:
    """``template_cuda.py``'s slot: the formulas in the form a CUDA kernel inlines
    (`lossforge.registry.jitted_formula`'s target ``"cuda"``: a warp per row where the formulas
    share rows, ``LANES = 32``; libdevice's float32 math in a float32 variant). Under the
    simulator, which runs the formulas as CPU code, their CPU form: one lane reads a row whole
    and the others repeat it."""
    from lossforge import registry
    lanes = 32 if registry.shares_rows(spec) else 1
    target = 'target="cpu" if SIMULATOR else "cuda"'
    return _plain_slot(spec, constants, target, float32) + f"\n\nLANES = {lanes}\n"


def _plain_slot(spec, constants, option: str = "", float32: bool = False) -> str:
    """The slot calling ``spec``'s formulas as written (float64 arithmetic), or with ``float32``
    their float32 variants on float32 elements, parameters and gradient scale; ``option``, e.g.
    ``'target="cuda"'``, is passed on to `lossforge.registry.jitted_formula`."""
    params = _param_args(spec, constants, "float32" if float32 else "")
    option = (", float32=True" if float32 else "") + (f", {option}" if option else "")
    lines = ["from numba import float32"] if float32 else []
    lines += ["from lossforge.registry import jitted_formula as _jitted",
             f"_VALUE = _jitted({spec.fingerprint!r}, 'value'{option})"]
    if spec.grad is not None:
        lines.append(f"_GRAD = _jitted({spec.fingerprint!r}, 'grad'{option})")
    if spec.kind == "rowwise":
        scale = "float32(scale)" if float32 else "scale"
        value = f"float64(_VALUE(y, p, j{params}))"
        grad = f"_GRAD(y, p, j, {scale}, grad{params})"
    else:
        cast = "float32" if float32 else "float64"
        element = f"{cast}(y[j]), {cast}(p[j]){params}"  # the formulas' arguments at j
        value = f"float64(_VALUE({element}))"
        grad = f"grad[j] = scale * _GRAD({element})"
    if spec.grad is None:
        grad = "pass  # no gradient formula: never called (mode has no GRAD bit)"
    fused = []
    if spec.fused_grad is not None:
        lines.append(f"_FUSED = _jitted({spec.fingerprint!r}, 'fused_grad'{option})")
        if spec.kind == "rowwise":
            body = [f"    return float64(_FUSED(y, p, j, {scale}, grad{params}))"]
        else:  # (loss, dloss/dp)
            body = [f"    v, g = _FUSED({element})",
                    "    grad[j] = scale * g", "    return float64(v)"]
        fused = ['@njit(inline="always", error_model="numpy")',
                 "def FUSED_AT(y, p, j, scale, grad, params):", *body, "", ""]
    return "\n".join(lines + [
        "", "", '@njit(inline="always", error_model="numpy")', "def LOSS_AT(y, p, j, params):",
        f"    return {value}",
        "", "", '@njit(inline="always", error_model="numpy")',
        "def GRAD_AT(y, p, j, scale, grad, params):",
        f"    {grad}", "", "", *fused, *_loss_grad_at(spec)])


def _param_args(spec, constants, cast: str = "") -> str:
    """The formula's parameter arguments in a slot, ``, params[0], 2.0``: each a kernel
    argument, or its value in ``constants`` as a literal; each wrapped in ``cast(...)``."""
    fixed = dict(constants)
    args = (repr(fixed[i]) if i in fixed else f"params[{i}]" for i in range(len(spec.params)))
    return "".join(f", {cast}({a})" if cast else f", {a}" for a in args)


def _rowwise_float32_slot(spec, constants) -> str:
    """``LOSS_AT``/``GRAD_AT``/``LOSS_GRAD_AT`` of ``template.py`` for a row-wise loss with
    ``float32_math``: the float32 variant of its formulas for float32 logits, the formulas
    themselves otherwise."""
    p64 = _param_args(spec, constants)
    p32 = _param_args(spec, constants, "float32")
    fp = spec.fingerprint
    lines = ["from numba import float32, types", "from numba.extending import overload",
             "from lossforge.registry import jitted_formula as _jitted", ""]
    lines += _by_dtype(fp, "value", "LOSS_AT", "y, p, j, params",
                       f"return float64(_VALUE32(y, p, j{p32}))", f"return _VALUE64(y, p, j{p64})")
    grad_args = "y, p, j, scale, grad, params"
    if spec.grad is None:
        lines += [f"def GRAD_AT({grad_args}):", "    pass  # compiled only", "", "",
                  f"def _no_grad({grad_args}):", "    pass  # never called", "", "",
                  '@overload(GRAD_AT, inline="always")',
                  f"def _grad_at({grad_args}):", "    return _no_grad", ""]
        return "\n".join(lines + _loss_grad_at(spec))
    lines += _by_dtype(fp, "grad", "GRAD_AT", grad_args,
                       f"_GRAD32(y, p, j, float32(scale), grad{p32})",
                       f"_GRAD64(y, p, j, scale, grad{p64})")
    if spec.fused_grad is not None:  # returns the loss, in float64 (as LOSS_AT)
        lines += _by_dtype(fp, "fused_grad", "FUSED_AT", grad_args,
                           f"return float64(_FUSED_GRAD32(y, p, j, float32(scale), grad{p32}))",
                           f"return _FUSED_GRAD64(y, p, j, scale, grad{p64})")
    return "\n".join(lines + _loss_grad_at(spec))


def _by_dtype(fingerprint: str, role: str, name: str, args: str, call32: str, call64: str):
    """Slot lines defining ``name(args)``: ``call32`` (which calls ``_<ROLE>32``, the float32
    variant of the spec's ``role`` formula) for float32 ``p``, else ``call64`` (``_<ROLE>64``,
    the formula itself)."""
    upper = role.upper()
    return [f"_{upper}64 = _jitted({fingerprint!r}, {role!r})",
            f"_{upper}32 = _jitted({fingerprint!r}, {role!r}, float32=True)", "", "",
            f"def _{role}32({args}):", f"    {call32}", "", "",
            f"def _{role}64({args}):", f"    {call64}", "", "",
            f"def {name}({args}):", "    pass  # compiled only: see the overload", "", "",
            f'@overload({name}, inline="always", jit_options={{"error_model": "numpy"}})',
            f"def _{role}_at({args}):",
            f"    return _{role}32 if p.dtype == types.float32 else _{role}64", "", ""]


def _loss_grad_at(spec) -> list[str]:
    """``LOSS_GRAD_AT``: the loss, and its gradient if ``write_grad``, through ``FUSED_AT`` (the
    spec's ``fused_grad``) if it has one, else ``LOSS_AT`` and ``GRAD_AT`` in turn."""
    if spec.fused_grad is not None:
        body = ["    if write_grad:", "        return FUSED_AT(y, p, j, scale, grad, params)",
                "    return LOSS_AT(y, p, j, params)"]
    else:
        body = ["    v = LOSS_AT(y, p, j, params)", "    if write_grad:",
                "        GRAD_AT(y, p, j, scale, grad, params)", "    return v"]
    return ['@njit(inline="always", error_model="numpy")',
            "def LOSS_GRAD_AT(y, p, j, scale, grad, params, write_grad):", *body, ""]


def _elementwise_slot(spec, constants, fast_logs: bool = False) -> str:
    """``VALUE``/``GRAD``/``VALUE_GRAD`` of ``template_elementwise.py``: the float32 variant of
    each formula for float32 kernels (parameters cast to float32; with ``fast_logs``, the one
    taking ``vmath.log_or_nan`` as ``log``), the formula itself for float64 ones; and the
    constants ``SUM_IN_LOOP`` and ``FUSED``."""
    option = ", log_or_nan=True" if fast_logs else ""
    from lossforge import registry
    p64 = _param_args(spec, constants)
    p32 = _param_args(spec, constants, "float32")
    lines = ["from lossforge.registry import jitted_formula as _jitted", ""]
    roles = [("value", "VALUE"), ("grad", "GRAD")]
    if spec.fused_grad is not None:
        roles.append(("fused_grad", "VALUE_GRAD"))
    else:  # the two formulas in one loop (used where FUSED, below)
        lines += ["def VALUE_GRAD(y, p, params):", "    pass  # compiled only: see the overload",
                  "", "", '@overload(VALUE_GRAD, inline="always")',
                  "def _value_grad(y, p, params):",
                  "    return lambda y, p, params: (VALUE(y, p, params), GRAD(y, p, params))",
                  "", ""]
    for role, name in roles:
        lines += [f"def {name}(y, p, params):", "    pass  # compiled only: see the overload", ""]
        if role == "grad" and spec.grad is None:
            lines += ["", "def _no_grad(y, p, params):", "    return y * 0  # never called", "", "",
                      f'@overload({name}, inline="always")', f"def _{role}(y, p, params):",
                      "    return _no_grad", "", ""]
            continue
        lines += [f"_{name}64 = _jitted({spec.fingerprint!r}, {role!r})",
                  f"_{name}32 = _jitted({spec.fingerprint!r}, {role!r}, float32=True{option})",
                  "", "",
                  f"def _{role}32(y, p, params):", f"    return _{name}32(y, p{p32})", "", "",
                  f"def _{role}64(y, p, params):",
                  f"    return _{name}64(float64(y), float64(p){p64})", "", "",
                  f'@overload({name}, inline="always", jit_options={{"error_model": "numpy"}})',
                  f"def _{role}(y, p, params):",
                  f"    return _{role}32 if y == types.float32 else _{role}64", "", ""]
    # a formula on vmath's polynomials is compute-bound: see the template's docstring. Its
    # gradient, written in the loop computing the loss, overlaps the stores with that work
    # (log_loss at 16M float32: value+gradient 10.3 -> 8.7 ms), and its loss is summed from
    # the block buffer as in the value-only loop, so the value keeps that loop's bits
    sum_in_loop = not registry.calls_math(spec.value)
    fused = spec.fused_grad is not None or (not sum_in_loop and spec.grad is not None)
    lines += [f"SUM_IN_LOOP = {sum_in_loop}", f"FUSED = {fused}", ""]
    return "\n".join(lines)


def loss_kernels(spec, constants=(), fast_logs: bool = False):
    """The CPU kernel module of the `LossSpec` ``spec``, generated and imported on first use.

    It provides the kernels by mode, ``SERIAL[mode]``/``PARALLEL[mode](y, p, w, params, n,
    values, grad, mode) -> (sum L*W, sum W, count W != 0)`` (see ``template.py``). Its
    formulas take the parameters in ``constants`` (``((index, value), ...)``, from
    `LossSpec.constants`) as literals, whatever ``params`` holds there. ``fast_logs`` (an
    elementwise ``spec`` with `LossSpec.fast_logs`): the module whose float32 kernels take
    ``vmath.log_or_nan`` as ``log``, a module of its own, compiled only if used.
    """
    if spec.kind != "elementwise":
        return generated_module(spec, "template.py", constants=constants)
    return generated_module(spec, "template_elementwise.py", prefix="fast_logs_" if fast_logs
                            else "", constants=constants, fast_logs=fast_logs)


def generated_module(spec, template: str, prefix: str = "", constants=(), float32: bool = False,
                     fast_logs: bool = False):
    """``template`` (a file of this package) with ``spec``'s formula slot, imported once.

    The module file is ``<prefix><loss>_<formula fingerprint>.py`` in `cache_directory` (whose
    name fingerprints the templates), so each loss's compiled kernels cache under their own
    name; ``_c<hash>`` is appended for a slot with ``constants`` (see `loss_kernels`).
    """
    def generate() -> ModuleType:
        from lossforge import registry
        registry.remember(spec)  # the generated module looks its formulas up by fingerprint
        head, rest = (_HERE / template).read_text().split(_SLOT_BEGIN)
        _, tail = rest.split(_SLOT_END)
        slot = _slot(spec, template, constants, float32, fast_logs)
        source = head + _SLOT_BEGIN + slot + _SLOT_END + tail
        name = f"{prefix}{_safe(spec.name)}_{spec.fingerprint}"
        if constants:
            name += "_c" + hashlib.sha256(repr(constants).encode()).hexdigest()[:8]
        return _load(name, source, spec.name)
    return _once((template, spec.fingerprint, constants, float32, fast_logs), generate)


def cached_copy(filename: str) -> ModuleType:
    """``filename``, a module of this package whose kernels are ``cache=True`` and that has no
    formula slot (``regularizer_sums.py``), copied into `cache_directory` and imported once:
    its kernels then cache beside the loss kernels (a fingerprinted directory, compile locks),
    not in the package's directory."""
    return _once((filename,), lambda: _load(Path(filename).stem, (_HERE / filename).read_text(),
                                            filename))


def _once(key: tuple, make) -> ModuleType:
    """``_modules[key]``, made by ``make()`` under the lock by the first thread to ask (a dict
    lookup, without the lock, once it is there)."""
    module = _modules.get(key)
    if module is None:
        with _lock:
            if key not in _modules:
                _modules[key] = make()
            module = _modules[key]
    return module


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40]
