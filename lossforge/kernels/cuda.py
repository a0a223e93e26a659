"""CUDA kernels for every registered loss, generated from the same formulas as the CPU ones.

Used through ``device="cuda"`` (``spec(labels, predictions, ..., device="cuda")``,
``spec.value_and_grad(..., device="cuda")``, ``compute.run(..., device="cuda")``), and by
``lossforge gpu-check``. Needs the ``lossforge[cuda]`` extra (``numba-cuda[cu13]``); nothing
else in lossforge imports this module, so ``import lossforge`` and the CPU path never load
``numba.cuda``.

Kernels
-------
Each loss gets one kernel module, generated from ``template_cuda.py`` around the formula slot
that the CPU template gets (see there for why formulas are ``njit(inline="always")``):
``loss_pass`` walks the loss elements with a grid-stride loop, one thread per flat loss element
(elementwise losses) or per row/fibre (row-wise losses, whose formula reads the whole row),
and reduces the partial state ``(sum L*W, sum W, count W != 0)`` per block with a
shared-memory tree into ``partials[block]``. The last block to finish (a ticket counter)
sums the block partials in block order: a deterministic reduction in one launch (no float
atomics), so a result is reproducible for a given launch configuration. The state then goes through
the same `lossforge.reduction.finalize` as on the CPU. The weighted values
(``Reduction.NONE``) and the weighted gradient are written in the same pass, as the CPU
kernels' ``mode`` bits ask; `_scale` applies the reduction's denominator to the gradient
afterwards (it is known only once the state is), and `_cast`/`_fill` convert and clear.

Launch configuration: `configure` (or ``$LOSSFORGE_CUDA_THREADS`` / ``$LOSSFORGE_CUDA_BLOCKS``):
threads per block (a power of two <= `MAX_THREADS`, default 256) and the maximum number of
blocks (default 1024; fewer when the input is small). The simulator tests use tiny launches.

Inputs and outputs
------------------
NumPy inputs are prepared exactly as on the CPU (all checks) and copied to the device. Objects
with ``__cuda_array_interface__`` (numba device arrays, CuPy arrays, PyTorch CUDA tensors)
are used in place through `numba.cuda.as_cuda_array`, with no host copy: the loss's
``prepare`` runs on host stand-ins of their shape and dtype (zero-filled, lazily allocated) to
check shapes and find the kernel layout, and the device arrays are then reshaped to that
layout (they must be C-contiguous) and cast on the device where the dtype differs. Values of
device-resident inputs are not read on the host, so the host-side value checks do not apply to
them: an out-of-range sparse label gives a NaN loss (as TF does on GPUs) instead of an error.
A custom ``prepare`` used with device arrays must therefore only check, reshape and cast.

Weights reach the kernel as the compact form of `lossforge.inputs.weights_view`'s broadcast
``(A, M, I)`` view: a C-contiguous array whose dims are full or 1 (the broadcast ones), plus
``M`` and ``I``. Scalar, per-sample and per-feature weights thus stay tiny on the device.

Reduced values come back as NumPy scalars of the output dtype, as on the CPU. Unreduced values
and gradients are NumPy arrays when every input was a host array, and numba device arrays
(which have ``__cuda_array_interface__``: ``cupy.asarray``/``torch.as_tensor`` wrap them
without a copy) when any input was a device array.

Checks without a GPU: ``tests/test_cuda_sim.py`` runs every kernel under the CUDA simulator
and compares with the CPU path (there the formulas run as compiled CPU code on the NumPy arrays
behind the simulator's fake device arrays: see `device_view`); `check_ptx`
(``lossforge gpu-check``, ``tests/test_cuda_ptx.py``) compiles every kernel to PTX with
`numba.cuda.compile_ptx` and explicit signatures, and links it with nvJitLink to report
registers and spills. Neither measures speed: that needs a GPU.

Per-call costs (measured on an H100 with numba-cuda 0.30.4)
-----------------------------------------------------------
* Host-side work dominates small calls: each allocation cost ~50 µs, a one-element
  host-to-device copy ~200 µs, numba-cuda's launch of ``loss_pass`` ~80 µs. So a call makes
  one launch (the fused reduction above), reuses its small buffers (`_Scratch`: block
  partials, the ticket, the sums, scalar weights, placeholders; per thread and GPU), launches
  through `lossforge.kernels.cuda_launch` (one ``cuLaunchKernel`` with the arguments packed
  by lossforge: ~15 µs) and reads the three sums into pinned memory with one
  ``cuMemcpyDtoH``. Repeated calls on device arrays replay a launch plan
  (`lossforge.kernels.cuda_small`): ~40-50 µs a call up to 1M elements, where this module's
  general path takes ~170-250 µs. Before all that, a call took 0.7-1.5 ms whatever its size.
* The formulas compute in float64 whatever the input dtype, exactly as the CPU kernels do
  (so results match); GPUs with slow float64 (most consumer parts) pay for it.
* Row-wise losses run one thread per row: a thread reads its whole row (several times for a
  softmax), so wide rows are read uncoalesced. A block-per-row kernel would need row formulas
  split into reductions.
* With a scalar weight the gradient's final scale (weight / denominator) is known before
  the pass and applied in it (``mode & SCALED``); other weights take a second pass (`_scale`)
  when the denominator is not 1.
* Kernels compile on the first call of each signature in each process (no on-disk cache).
"""
from __future__ import annotations

import math
import mmap
import os
import re
import threading
import time
import warnings
from importlib import metadata

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["GRAD", "MAX_THREADS", "SIMULATOR", "VALUES", "check_gpu", "check_ptx", "configure",
           "device_view", "is_device_array", "kernel_module", "launch_configuration",
           "loss_signature", "prepare", "run"]

INSTALL_HINT = "pip install 'lossforge[cuda]' (or: pip install 'numba-cuda[cu13]>=0.30')"


def _require_numba_cuda() -> None:
    """Fail clearly, before ``numba.cuda`` is imported, when NVIDIA's numba-cuda is missing.

    numba still ships a deprecated built-in ``numba.cuda``; importing it would "work" and then
    fail later in confusing ways, so the distribution is checked, not the import.
    """
    try:
        metadata.version("numba-cuda")
    except metadata.PackageNotFoundError:
        raise InvalidArgumentError(
            f"lossforge's CUDA kernels (device='cuda', `lossforge gpu-check`) need NVIDIA's "
            f"numba-cuda package, which is not installed: {INSTALL_HINT}.") from None


def _restore_numpy_row_stack() -> None:
    """Let numba-cuda 0.30 compile under NumPy >= 2.5.

    numba-cuda (0.30.4) registers an overload for ``np.row_stack`` when its array module is
    imported during the first compile; NumPy 2.5 removed that alias of ``np.vstack``, so every
    compile failed with "module 'numpy' has no attribute 'row_stack'" (seen on an H100 with
    NumPy 2.5.2). numba 0.68.1 guards the line; numba-cuda does not yet, so the alias is put
    back, pointing at ``np.vstack`` exactly as in NumPy < 2.5.
    """
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


_require_numba_cuda()
_restore_numpy_row_stack()

import numba  # noqa: E402
from numba import cuda, float64  # noqa: E402

try:  # numba-cuda has its own warning classes
    from numba.cuda.core.errors import NumbaPerformanceWarning  # noqa: E402
except ImportError:  # pragma: no cover
    from numba.core.errors import NumbaPerformanceWarning  # noqa: E402

from ..reduction import LossState, Reduction, finalize  # noqa: E402
from .cuda_launch import pointer, slot_count  # noqa: E402

#: True when running under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).
SIMULATOR = bool(numba.config.ENABLE_CUDASIM)
VALUES = 1        # mode bit: write L * W to `values` (as template.py)
GRAD = 2          # mode bit: write W * dL/dp to `grad`
SCALED = 4        # mode bit: the gradient's scale is `grad_scale`, not W (see template_cuda.py)
MAX_THREADS = 512  # threads per block at most: the size of the kernels' shared-memory tree

_gpu_checked = False
#: Called as ``hook(spec, args)`` before each ``loss_pass`` launch (tests compare the argument
#: types with what `check_ptx` compiles).
launch_hook = None


# --- launch configuration ------------------------------------------------------------------------

def _check_threads(threads) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or \
            not 1 <= threads <= MAX_THREADS or threads & (threads - 1):
        raise InvalidArgumentError(f"CUDA threads per block must be a power of two in "
                                   f"[1, {MAX_THREADS}]; got {threads!r}.")
    return int(threads)


def _check_blocks(blocks) -> int:
    if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)) or blocks < 1:
        raise InvalidArgumentError(f"the maximum number of CUDA blocks must be a positive int; "
                                   f"got {blocks!r}.")
    return int(blocks)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidArgumentError(f"${name} must be an integer; got {value!r}.") from None


_threads = _check_threads(_env_int("LOSSFORGE_CUDA_THREADS", 256))
_max_blocks = _check_blocks(_env_int("LOSSFORGE_CUDA_BLOCKS", 1024))


def configure(threads: int | None = None, blocks: int | None = None) -> tuple[int, int]:
    """Set the threads per block and the maximum blocks per launch; returns the previous pair.

    Threads must be a power of two <= `MAX_THREADS` (the block reduction halves it). A launch
    uses ``min(blocks, ceil(n / threads))`` blocks; the grid-stride loop covers the rest.
    Simulator runs want tiny values (e.g. 32 threads, 2-4 blocks): each simulated thread is a
    Python thread.
    """
    global _threads, _max_blocks
    previous = (_threads, _max_blocks)
    new_threads = _threads if threads is None else _check_threads(threads)
    new_blocks = _max_blocks if blocks is None else _check_blocks(blocks)
    _threads, _max_blocks = new_threads, new_blocks
    return previous


def launch_configuration(n: int, threads: int | None = None, lanes: int = 1) -> tuple[int, int]:
    """``(blocks, threads)`` of a launch over ``n`` elements of ``lanes`` threads each (a power
    of two of threads, fewer than configured when ``n * lanes`` is smaller but at least
    ``lanes``; at most the configured number of blocks)."""
    n *= lanes
    threads = min(_threads if threads is None else threads, 1 << max(0, n - 1).bit_length())
    threads = max(threads, lanes)
    return max(1, min(_max_blocks, -(-n // threads))), threads


def _launch(kernel, blocks: int, threads: int):
    """``kernel[blocks, threads]``, without numba-cuda's low-occupancy warning.

    Small inputs get small grids on purpose; the warning (for grids under 128 blocks) would
    fire on every small call.
    """
    if blocks >= 128 or SIMULATOR:
        return kernel[blocks, threads]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        return kernel[blocks, threads]


# --- availability --------------------------------------------------------------------------------

def check_gpu() -> None:
    """Raise `InvalidArgumentError` unless a GPU (or the simulator) can run the kernels."""
    global _gpu_checked
    if _gpu_checked or SIMULATOR:
        return
    if not cuda.is_available():
        raise InvalidArgumentError(
            "device='cuda': no CUDA GPU is visible (numba.cuda.is_available() is False: no "
            "NVIDIA driver or GPU on this machine, or CUDA_VISIBLE_DEVICES hides it). Use "
            "device='cpu'; `lossforge gpu-check` compiles the kernels without a GPU.")
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        raise InvalidArgumentError(
            f"device='cuda': numba-cuda cannot find NVVM to compile kernels: {INSTALL_HINT}.")
    _gpu_checked = True


# --- device arrays -------------------------------------------------------------------------------

def is_device_array(obj) -> bool:
    """Whether ``obj`` lives on the GPU: a numba device array or a ``__cuda_array_interface__``."""
    if isinstance(obj, (np.ndarray, np.generic, float, int, list, tuple)):
        return False
    return getattr(type(obj), "__cuda_ndarray__", False) is True or \
        hasattr(obj, "__cuda_array_interface__")


def _as_device(obj, name: str):
    """A numba device array viewing ``obj``'s GPU memory (no copy)."""
    if getattr(type(obj), "__cuda_ndarray__", False) is True:
        return obj
    if SIMULATOR:
        raise InvalidArgumentError(f"`{name}`: the CUDA simulator only takes numba device arrays "
                                   f"(numba.cuda.to_device), not {type(obj).__name__}.")
    return cuda.as_cuda_array(obj)


if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _FakeArray
    from numba.cuda.simulator.cudadrv.devicearray import FakeWithinKernelCUDAArray as _FakeInKernel

    def device_view(a):
        """Simulator: the NumPy array behind a fake device array, so that the formulas (which
        the simulator runs as compiled CPU code) can take it as an argument."""
        if isinstance(a, _FakeInKernel):
            a = a.__dict__["_item"]
        return a._ary if isinstance(a, _FakeArray) else a
else:
    @numba.njit(inline="always")
    def device_view(a):
        """On a GPU: the array itself (inlined away)."""
        return a


def _tree_sum(shared, t):
    """Sum ``shared[c, :blockDim.x]`` into ``shared[c, 0]`` (c = 0, 1, 2) with a shared-memory
    tree, in a fixed order; every thread of the block must call it (it syncs). Needs
    ``blockDim.x`` a power of two. The kernels' block reduction, written once."""
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            shared[0, t] += shared[0, t + half]
            shared[1, t] += shared[1, t + half]
            shared[2, t] += shared[2, t + half]
        cuda.syncthreads()
        half //= 2


#: `_tree_sum` inlined into a kernel's IR (see ``template_cuda.py`` for why inlined ``njit``
#: functions, not device functions); under the simulator a simulated device function, which
#: (unlike a plain function) sees the launch's simulated ``cuda`` module.
block_tree_sum = (cuda.jit(device=True)(_tree_sum) if SIMULATOR
                  else numba.njit(inline="always")(_tree_sum))


def _reshape(array, shape):
    """A C-order reshape of a contiguous device array (a view)."""
    shape = tuple(int(s) for s in shape)
    return array if tuple(array.shape) == shape else array.reshape(shape)


def _flat(array):
    return _reshape(array, (array.size,))


def _contiguous(array) -> bool:
    return array.size == 0 or array.ndim == 0 or array.is_c_contiguous()


def _converted(array, dtype):
    """``array`` (a contiguous device array) as ``dtype``: itself, or a cast copy on the device."""
    dtype = np.dtype(dtype)
    if array.dtype == dtype:
        return array
    out = cuda.device_array(array.shape, dtype=dtype)
    _elementwise(_cast, out.size, (_flat(array), _flat(out)))
    return out


def _host_contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` C-contiguous without zero strides: numba types a device array with a zero
    stride (a size-1 dim NumPy left at stride 0 counts) as layout 'A', a specialisation other
    than the one `check_ptx` compiles."""
    array = np.ascontiguousarray(array)
    return array.copy() if array.size and 0 in array.strides else array


def _to_device(array):
    return array if is_device_array(array) else cuda.to_device(_host_contiguous(array))


def _conform(spec, array, like: np.ndarray, name: str):
    """The device ``array`` in the layout (shape, dtype) that ``prepare`` gave its stand-in."""
    if not _contiguous(array):
        raise InvalidArgumentError(
            f"{spec.name}: `{name}` is a non-contiguous device array (shape "
            f"{tuple(array.shape)}, strides {tuple(array.strides)}); pass a C-contiguous one "
            f"(e.g. cupy.ascontiguousarray or tensor.contiguous()).")
    if array.size != like.size:
        raise InvalidArgumentError(
            f"{spec.name}: its prepare turns `{name}` of shape {tuple(array.shape)} into "
            f"{like.shape}, which is not a reshape; device arrays need prepares that only check, "
            f"reshape and cast. Pass host arrays instead.")
    return _converted(_reshape(array, like.shape), like.dtype)


def _standin(shape, dtype) -> np.ndarray:
    """A zero-filled host array of ``shape`` that costs no time to make: its pages are mapped
    only if touched. ``np.zeros`` is not enough: glibc serves blocks under its (adaptive, up to
    32 MB) mmap threshold from the heap and clears them, which cost ~0.3 ms a call for
    1M-element inputs on an H100 machine (slower than 16M ones, which get fresh pages)."""
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < 1 << 20:  # np.zeros is as fast here (measured: 6 µs vs 10 µs at 400 kB)
        return np.zeros(shape, dtype=dtype)
    return np.ndarray(shape, dtype=dtype, buffer=mmap.mmap(-1, nbytes))


def prepare(spec, labels, predictions, weights, params: dict):
    """``spec._prepare`` for ``device="cuda"``: also takes device arrays, without host copies.

    With host inputs only, this is ``spec._prepare`` itself (its arrays are copied to the device
    by `run`). Otherwise ``prepare`` runs on zero-filled host stand-ins of the device arrays
    (``np.zeros`` is allocated lazily by the OS: untouched pages cost nothing) to check shapes
    and dtypes and find the layout, and the returned `Prepared` holds the device arrays in that
    layout. Returns ``(prepared, kernel_params)``.
    """
    check_gpu()
    given = (labels, predictions, weights)
    on_device = [is_device_array(a) for a in given]
    if not any(on_device):
        return spec._prepare(labels, predictions, weights, params)
    names = (*spec.inputs, "weights")
    arrays = [_as_device(a, n) if d else a for a, n, d in zip(given, names, on_device)]
    standins = [_standin(a.shape, a.dtype) if d else a
                for a, d in zip(arrays, on_device)]
    prepared, kernel_params = spec._prepare(*standins, params)
    y, p, w = prepared.y, prepared.p, prepared.weights
    if on_device[0]:
        y = _conform(spec, arrays[0], y, names[0])
    if on_device[1]:
        p = _conform(spec, arrays[1], p, names[1])
    if on_device[2]:  # shape only: the weights' dtype is the kernel's, set in _device_weights
        like = np.broadcast_to(np.zeros((), dtype=arrays[2].dtype), np.shape(w))  # no memory
        w = _conform(spec, arrays[2], like, names[2])
    return prepared._replace(y=y, p=p, weights=w), kernel_params


def _device_weights(weights, loss_shape, kd, scratch=None):
    """``(compact weights on the device, M, I)`` for ``loss_pass`` (see its docstring)."""
    from ..inputs import weights_view
    if is_device_array(weights):
        # the layout from a stand-in; the device weights reshape to it unless weights_view had
        # to materialise a broadcast (more than three alternating runs: rare, done on the host)
        view = weights_view(_standin(weights.shape, kd), loss_shape, kd)
        own = tuple(s if st else 1 for s, st in zip(view.shape, view.strides))
        if math.prod(own) != weights.size:
            return _device_weights(weights.copy_to_host(), loss_shape, kd, scratch)
        return _converted(_reshape(weights, own), kd), view.shape[1], view.shape[2]
    view = weights_view(weights, loss_shape, kd)
    compact = _host_contiguous(view[tuple(slice(None) if st else slice(0, 1) for st in view.strides)])
    if compact.size == 1:
        # ``scratch``: the caller's `_scratch()`, looked up once a call (it costs ~10 µs)
        return (scratch or _scratch()).scalar_weight(compact), view.shape[1], view.shape[2]
    return cuda.to_device(compact), view.shape[1], view.shape[2]


# --- per-call buffers ----------------------------------------------------------------------------

class _Scratch:
    """The small device buffers of `run`, allocated once per thread and GPU, not per call.

    On an H100 each ``cuda.device_array`` cost ~50 µs and each ``cuda.to_device`` of one
    weight ~200 µs, several times a call: most of a small call's time. Reuse is safe because
    every call on a thread launches on the default stream and waits for its result before it
    returns, so a launch never overlaps the previous one's use of a buffer; threads (and GPUs)
    get their own buffers.
    """

    MAX_SCALARS = 64  # distinct scalar weights kept on the device (a few in practice)

    def __init__(self):
        self._placeholders: dict = {}
        self._scalars: dict = {}
        self._partials = cuda.device_array((1024, 3), dtype=np.float64)
        self.done = cuda.to_device(np.zeros(1, dtype=np.int32))  # `loss_pass` leaves it at 0
        self.totals = cuda.device_array(3, dtype=np.float64)
        self._host_totals = cuda.pinned_array(3, dtype=np.float64)
        self._launcher = _new_launcher()
        self.plans: dict = {}  # `cuda_small.Plan`s (or None: no plan) by call layout
        self.launches = 0  # kernels launched through `launch` (`cuda_small` counts a call's)
        if self._launcher is not None:  # (host address, device address, bytes) of the sums
            self._totals_copy = (self._host_totals.ctypes.data, pointer(self.totals), 24)

    def launch(self, kernel, blocks: int, threads: int, args: tuple) -> None:
        """``kernel[blocks, threads](*args)``: through the thread's `cuda_launch.Launcher`
        (one driver call), or numba-cuda's launch under the simulator or when it is off."""
        self.launches += 1
        if self._launcher is None:
            _launch(kernel, blocks, threads)(*args)
        else:
            self._launcher(kernel, blocks, threads, args)

    def partials(self, blocks: int):
        """The block partials of a launch of ``blocks`` blocks: ``(rows >= blocks, 3)``."""
        if self._partials.shape[0] < blocks:
            self._partials = cuda.device_array((blocks, 3), dtype=np.float64)
        return self._partials

    def placeholder(self, dtype: np.dtype, ndim: int):
        """A 1-element array of ``ndim`` dims: an output the kernel's `mode` never writes (not
        an empty array, whose zero strides would make numba type it as layout 'A')."""
        key = (dtype, ndim)
        array = self._placeholders.get(key)
        if array is None:
            array = self._placeholders[key] = cuda.device_array((1,) * ndim, dtype=dtype)
        return array

    def scalar_weight(self, compact: np.ndarray):
        """A one-element weights array on the device, shared by calls with the same value."""
        key = (compact.dtype, compact.shape, compact.tobytes())
        array = self._scalars.get(key)
        if array is None:
            if len(self._scalars) >= self.MAX_SCALARS:
                self._scalars.clear()
            array = self._scalars[key] = cuda.to_device(compact)
        return array

    def read_totals(self) -> tuple[float, float, float]:
        """``totals`` on the host (through pinned memory: a faster copy than a pageable one)."""
        if self._launcher is None:
            host = self.totals.copy_to_host(self._host_totals)
        else:
            self._launcher.copy_to_host(*self._totals_copy)
            host = self._host_totals
        return float(host[0]), float(host[1]), float(host[2])


def _new_launcher():
    """A `cuda_launch.Launcher` for a thread's buffers, or None: under the simulator, with
    ``$LOSSFORGE_CUDA_LAUNCH=numba``, or without NVIDIA's ``cuda.bindings``."""
    from . import cuda_launch
    if SIMULATOR or not cuda_launch.ENABLED:
        return None
    try:
        return cuda_launch.Launcher(_launch)
    except ImportError:  # cuda-bindings comes with numba-cuda[cu13]; an older install may lack it
        return None


_scratch_local = threading.local()


def _scratch() -> _Scratch:
    held = getattr(_scratch_local, "held", None)
    if held is None:
        held = _scratch_local.held = []
    # found by the context object's identity (numba-cuda's Context is unhashable): buffers
    # die with their context (`cuda.close()`), and a new context gets new ones
    context = 0 if SIMULATOR else cuda.current_context()
    for owner, scratch in held:
        if owner is context:
            return scratch
    scratch = _Scratch()
    held.append((context, scratch))
    return scratch


# --- kernels -------------------------------------------------------------------------------------

def computes_in_float32(spec, kernel_dtype) -> bool:
    """Whether ``spec``'s CUDA kernel for ``kernel_dtype`` inputs runs its formulas' float32
    variant: float32 inputs of a loss with ``float32_math``, as on the CPU, if it is
    elementwise or its row formula calls ``math`` (the softmaxes' ``exp``: float32 on the GPU,
    their row sums float64, `lossforge.kernels.warp.row_logsumexp32`). Memory-bound row
    formulas (cosine, pairwise) keep float64: it costs them nothing on a GPU."""
    if np.dtype(kernel_dtype) != np.float32 or not spec.float32_math:
        return False
    known = spec.__dict__.get("_cuda_float32")
    if known is None:
        from ..registry import calls_math
        known = spec.__dict__["_cuda_float32"] = (spec.kind == "elementwise" or
                                                  calls_math(spec.value))
    return known


def kernel_module(spec, kernel_dtype=np.float64):
    """The CUDA kernel module of ``spec`` (``loss_pass``) for ``kernel_dtype`` inputs,
    generated and imported on first use, like the CPU one
    (`lossforge.kernels.generated_module`) from ``template_cuda.py``: one module for float64
    formulas (any dtype), another for float32 variants (`computes_in_float32`)."""
    float32 = computes_in_float32(spec, kernel_dtype)
    attribute = "_cuda_kernels32" if float32 else "_cuda_kernels"
    module = spec.__dict__.get(attribute)
    if module is None:
        from .. import kernels
        module = spec.__dict__[attribute] = kernels.generated_module(
            spec, "template_cuda.py", prefix="cuda32_" if float32 else "cuda_", float32=float32)
    return module  # kept on the spec, as the CPU module is (`lossforge.compute.run`)


@cuda.jit
def _cast(src, dst):
    """``dst[i] = src[i]`` over flat arrays (numba's conversion: rounds to nearest)."""
    for i in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit
def _scale(src, dst, factor):
    """``dst[i] = src[i] * factor``, with ``factor`` of ``src``'s dtype: NumPy's
    ``grad * (1.0 / denominator)`` on a float32 array multiplies in float32, so does this."""
    for i in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[i] = src[i] * factor


@cuda.jit
def _fill(dst, value):
    """``dst[i] = value`` over a flat array."""
    for i in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[i] = value


def _elementwise(kernel, n: int, args: tuple, scratch=None) -> None:
    """Launch one of the flat kernels above over ``n`` elements (none when ``n`` is 0)."""
    if n:
        blocks, threads = launch_configuration(n)
        (scratch or _scratch()).launch(kernel, blocks, threads, args)


def _fill_zero(array, scratch=None) -> None:
    _elementwise(_fill, array.size, (_flat(array), array.dtype.type(0)), scratch)


def _output(array, shape, out_dtype, on_device: bool, scale: float | None = 1.0, scratch=None):
    """``(array * scale).reshape(shape).astype(out_dtype)`` (``scale=None``: zeros, as
    ``div_no_nan``'s gradient), on the device or copied to the host."""
    out_dtype = np.dtype(out_dtype)
    if scale == 1.0 and array.dtype == out_dtype:
        result = array
    else:
        result = array if array.dtype == out_dtype else cuda.device_array(array.shape, out_dtype)
        if scale is None:
            _fill_zero(result, scratch)
        elif scale == 1.0:
            _elementwise(_cast, array.size, (_flat(array), _flat(result)), scratch)
        else:
            _elementwise(_scale, array.size,
                         (_flat(array), _flat(result), array.dtype.type(scale)), scratch)
    if on_device:
        return _reshape(result, shape)
    return result.copy_to_host().reshape(shape)


def run(spec, prepared, params: tuple[float, ...], reduction: Reduction, with_grad: bool = False,
        on_launch=None, grad_out=None):
    """`lossforge.compute.run` on the GPU: ``(value, grad or None, LossState)``.

    Same meaning as the CPU path: the same partial state, `finalize` and denominators; see the
    module docstring for where the results live. ``on_launch((kernel, blocks, threads, args))``
    is called with the ``loss_pass`` launch (`lossforge.kernels.cuda_small` plans from it).
    ``grad_out``: a device array (numba, CuPy, PyTorch CUDA) of the predictions' shape and the
    gradient's dtype to write the gradient into, and return, instead of a new one
    (`check_grad_out`).
    """
    from ..compute import _fold_denominator, denominator
    from ..inputs import scalar_weight
    check_gpu()
    y, p, weights, loss_shape, grad_shape, out_dtype, kd = prepared
    kd, out_dtype = np.dtype(kd), np.dtype(out_dtype)
    on_device = any(is_device_array(a) for a in (y, p, weights))
    n = math.prod(loss_shape)
    none = reduction is Reduction.NONE
    dy, dp = _to_device(y), _to_device(p)
    scratch = _scratch()
    # unused outputs are placeholders (never written: `mode` has no bit for them)
    values = cuda.device_array(n, dtype=kd) if none else scratch.placeholder(kd, 1)
    if with_grad and grad_out is not None:
        grad = _reshape(check_grad_out(grad_out, grad_shape, kd, out_dtype, (dy, dp)), dp.shape)
    else:
        grad = (cuda.device_array(tuple(dp.shape), dtype=kd) if with_grad
                else scratch.placeholder(kd, dp.ndim))
    if with_grad and ((spec.kind != "elementwise" and not spec.grad_fills_rows) or not n):
        _fill_zero(grad, scratch)  # as the CPU's np.zeros: a row formula need not write every entry
    sums = (0.0, 0.0, 0.0)
    folded = False  # whether the kernel applied the reduction's denominator to the gradient
    if n:
        module = kernel_module(spec, kd)
        w, middle, inner = _device_weights(weights, loss_shape, kd, scratch)
        mode = (VALUES if none else 0) | (GRAD if with_grad else 0)
        grad_scale = 1.0
        if with_grad and not is_device_array(weights) and np.ndim(weights) == 0:
            scales, folded = _fold_denominator(scalar_weight(weights, kd), reduction, n)
            if folded:
                mode |= SCALED
                grad_scale = float(scales[1])
        blocks, threads = launch_configuration(n, lanes=module.LANES)
        args = (dy, dp, w, int(middle), int(inner), tuple(float(v) for v in params), int(n),
                values, grad, mode, grad_scale, scratch.partials(blocks), scratch.done,
                scratch.totals)
        if launch_hook is not None:
            launch_hook(spec, args)
        scratch.launch(module.loss_pass, blocks, threads, args)
        if on_launch is not None:
            on_launch((module.loss_pass, blocks, threads, args))
        sums = scratch.read_totals()
    state = LossState(*sums, n)
    value = (_output(values, loss_shape, out_dtype, on_device, 1.0, scratch) if none
             else out_dtype.type(finalize(state, reduction)))
    if not with_grad:
        return value, None, state
    denom = denominator(state, reduction)
    if folded:
        scale = 1.0
    else:
        scale = 1.0 / denom if denom != 0 else None  # as the CPU path: grad * (1.0 / denom)
    if grad_out is not None:  # scaled in place (its dtype is the kernel's)
        _output(grad, grad_shape, out_dtype, True, scale, scratch)
        return value, grad_out, state
    return value, _output(grad, grad_shape, out_dtype, on_device, scale, scratch), state


def _extent(array) -> tuple[int, int]:
    """``[start, end)`` device addresses of a contiguous device array."""
    start = pointer(array)
    return start, start + array.size * array.dtype.itemsize


def check_grad_out(grad_out, shape, dtype: np.dtype, result_dtype: np.dtype, reads=()):
    """``grad_out`` as a numba device array if the kernel can write a gradient of ``shape`` and
    ``dtype`` into it with no conversion after the kernel: a C-contiguous device array sharing
    no memory with the device arrays it ``reads`` (`lossforge.inputs.check_grad_out`'s rules on
    the GPU)."""
    from ..errors import InvalidTypeError
    from ..inputs import check_grad_dtype
    check_grad_dtype(dtype, result_dtype)
    if not is_device_array(grad_out):
        raise InvalidTypeError(
            f"`grad_out` with device='cuda' must be a device array (numba, CuPy, PyTorch CUDA); "
            f"got {type(grad_out).__name__}. Pass numba.cuda.device_array({tuple(shape)}, "
            f"dtype=np.{dtype}) and reuse it.")
    out = _as_device(grad_out, "grad_out")
    problems = []
    if tuple(out.shape) != tuple(shape):
        problems.append(f"shape {tuple(out.shape)}, not the predictions' {tuple(shape)}")
    if out.dtype != dtype:
        problems.append(f"dtype {out.dtype}, not the gradient's {dtype}")
    if not _contiguous(out):
        problems.append("not C-contiguous")
    if not problems and out.size and not SIMULATOR:
        start, end = _extent(out)
        if any(a.size and start < _extent(a)[1] and _extent(a)[0] < end for a in reads):
            problems.append("it shares memory with the inputs the kernel reads")
    if problems:
        raise InvalidArgumentError(
            f"`grad_out` cannot hold the gradient: {'; '.join(problems)}. Pass a device array "
            f"of its own, numba.cuda.device_array({tuple(shape)}, dtype=np.{dtype}), or "
            f"grad_out=None.")
    return out


# --- compiling to PTX without a GPU (lossforge gpu-check) ----------------------------------------

def _array_type(dtype, ndim: int):
    return numba.types.Array(numba.from_dtype(np.dtype(dtype)), ndim, "C")


def loss_signature(spec, dtype=np.float32):
    """The argument types of ``spec``'s ``loss_pass`` for inputs of ``dtype``, as `run` passes them.

    The kernel layout (dims, label dtype) comes from ``spec.prepare`` on the loss's example
    inputs (`LossSpec.example_inputs`), cast to ``dtype`` where they are floats.
    """
    labels, predictions, kwargs = spec.example_inputs(np.random.default_rng(0), 2, 3)
    labels, predictions = (np.asarray(a).astype(dtype) if np.asarray(a).dtype.kind == "f"
                           else np.asarray(a) for a in (labels, predictions))
    prepared, params = spec._prepare(labels, predictions, 1.0, dict(kwargs))
    kd = np.dtype(prepared.kernel_dtype)
    t = numba.types
    return (_array_type(prepared.y.dtype, prepared.y.ndim),
            _array_type(prepared.p.dtype, prepared.p.ndim),
            _array_type(kd, 3), t.int64, t.int64, numba.typeof(tuple(float(v) for v in params)),
            t.int64, _array_type(kd, 1), _array_type(kd, prepared.p.ndim), t.int64, t.float64,
            _array_type(np.float64, 2), _array_type(np.int32, 1), _array_type(np.float64, 1))


def _support_jobs():
    """``(kernel name, variant, dispatcher, signature)`` of the loss-independent kernels."""
    f16, f32, f64 = np.float16, np.float32, np.float64
    jobs = []
    for kd in (f32, f64):
        name = np.dtype(kd).name
        jobs.append(("_fill", name, _fill, (_array_type(kd, 1), numba.from_dtype(np.dtype(kd)))))
        jobs.append(("_scale", name, _scale, (_array_type(kd, 1), _array_type(kd, 1),
                                              numba.from_dtype(np.dtype(kd)))))
    jobs.append(("_scale", "float32->float16", _scale,
                 (_array_type(f32, 1), _array_type(f16, 1), numba.types.float32)))
    for src, dst in [(f64, f32), (f32, f64), (f16, f32), (f32, f16), (np.int32, np.int64),
                     (np.int64, f32), (np.bool_, f32)]:
        jobs.append(("_cast", f"{np.dtype(src).name}->{np.dtype(dst).name}", _cast,
                     (_array_type(src, 1), _array_type(dst, 1))))
    return jobs


def _ptx_header(ptx: str) -> dict:
    version = re.search(r"^\.version\s+(\S+)", ptx, re.M)
    target = re.search(r"^\.target\s+(\S+)", ptx, re.M)
    entry = re.search(r"\.entry\s+\S+\s*\(([^)]*)\)", ptx)
    return {"ptx_version": version.group(1) if version else None,
            "target": target.group(1).rstrip(",") if target else None,
            "ptx_params": len(re.findall(r"\.param\s", entry.group(1))) if entry else None}


def _linker():
    """nvJitLink's ``(Linker, LinkerOptions, ObjectCode)`` from cuda.core, or None."""
    try:
        from cuda.core import Linker, LinkerOptions, ObjectCode
    except ImportError:
        try:
            from cuda.core.experimental import Linker, LinkerOptions, ObjectCode
        except ImportError:
            return None
    return Linker, LinkerOptions, ObjectCode


def _resources(ptx: str, cc: tuple[int, int], linker) -> dict:
    """Registers and spills from linking ``ptx`` to a cubin with nvJitLink (no ptxas, no GPU)."""
    Linker, LinkerOptions, ObjectCode = linker
    link = Linker(ObjectCode.from_ptx(ptx.encode(), name="kernel"),
                  options=LinkerOptions(arch=f"sm_{cc[0]}{cc[1]}", verbose=True))
    link.link("cubin")
    log = link.get_info_log() or ""
    registers = re.search(r"[Uu]sed (\d+) registers", log)
    stores = re.search(r"(\d+) bytes spill stores", log)
    loads = re.search(r"(\d+) bytes spill loads", log)
    return {"registers": int(registers.group(1)) if registers else None,
            "spill_stores": int(stores.group(1)) if stores else 0,
            "spill_loads": int(loads.group(1)) if loads else 0}


def check_ptx(ccs=((8, 0), (9, 0)), specs=None, dtypes=(np.float32, np.float64),
              support: bool = True, resources: bool = True, on_result=None) -> list[dict]:
    """Compile every loss's ``loss_pass`` (and the support kernels) to PTX for each ``cc``.

    No GPU needed: `numba.cuda.compile_ptx` with an explicit signature (`loss_signature`:
    contiguous arrays, as `run` launches them) and compute capability. With ``resources`` and
    nvJitLink available, each PTX is also linked to a cubin to read registers and spills.
    Returns one dict per (kernel, variant, cc): ``kernel``, ``variant``, ``cc``, ``ok``,
    ``error``, ``ptx_version``, ``target``, ``ptx_params`` (the kernel's parameters in the PTX)
    and ``launch_slots`` (those `cuda_launch.slot_count` packs for the signature: equal when the
    fast launch fits the kernel), ``registers``, ``spill_stores``, ``spill_loads``,
    ``seconds`` (``skipped`` with a reason instead of a result when a loss has no example
    inputs). ``on_result(dict)`` is called as each result arrives.
    """
    if cuda.compile_ptx is None or SIMULATOR:
        raise InvalidArgumentError("the CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1), which "
                                   "cannot compile PTX; unset it to run the PTX checks.")
    from .. import registry
    specs = registry.specs() if specs is None else list(specs)
    linker = _linker() if resources else None
    jobs = []
    for spec in specs:
        for dtype in dtypes:
            variant = np.dtype(dtype).name
            try:
                signature = loss_signature(spec, dtype)
                jobs.append((spec.name, variant,
                             lambda s=spec, d=dtype: kernel_module(s, d).loss_pass, signature,
                             None))
            except Exception as exc:  # no example inputs: cannot know the kernel's layout
                jobs.append((spec.name, variant, None, None, f"{type(exc).__name__}: {exc}"))
    if support:
        jobs += [(name, variant, lambda k=kernel: k, sig, None)
                 for name, variant, kernel, sig in _support_jobs()]
    results = []
    for name, variant, kernel, signature, skipped in jobs:
        for cc in ccs:
            cc = tuple(cc)
            result = {"kernel": name, "variant": variant, "cc": f"{cc[0]}.{cc[1]}", "ok": False,
                      "error": None, "ptx_version": None, "target": None, "ptx_params": None,
                      "launch_slots": None, "registers": None, "spill_stores": None,
                      "spill_loads": None, "seconds": 0.0}
            if skipped is not None:
                result.update(ok=None, skipped=skipped)
            else:
                start = time.perf_counter()
                try:
                    ptx, _ = cuda.compile_ptx(kernel(), signature, cc=cc)
                    # what the fast launch packs must be what the kernel takes
                    result.update(_ptx_header(ptx), ok=True, launch_slots=slot_count(signature))
                    if linker is not None:  # a PTX that does not link would not load either
                        result.update(_resources(ptx, cc, linker))
                except Exception as exc:
                    result["ok"] = False
                    result["error"] = f"{type(exc).__name__}: {exc}"
                result["seconds"] = round(time.perf_counter() - start, 3)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results
