"""Launch compiled numba-cuda kernels with one driver call: arguments packed by lossforge.

A ``kernel[blocks, threads](*args)`` launch through numba-cuda (0.30) types every argument,
finds the overload, wraps every array in a cuda.core ``StridedMemoryView`` and hands the
flattened arguments to cuda.core's ``launch``: measured on an H100, ~80 µs of host time for
`lossforge.kernels.cuda.loss_pass`'s 13 arguments, most of a small call. The GPU runs the
kernel itself in a few microseconds.

`Launcher` does that work once per signature. The first launch of a signature goes through
numba-cuda (which compiles it) and keeps the compiled kernel's driver handle; later launches
write the arguments into a reused buffer, one 8-byte slot per kernel parameter, and call
``cuLaunchKernel`` with pointers to the slots (the driver copies each parameter's size from
its slot: a narrower scalar sits in the slot's low bytes, little-endian). Numba's kernel ABI
flattens the arguments into parameters:

* an array: ``meminfo`` (0), ``parent`` (0), ``nitems``, ``itemsize``, the data pointer, then
  ``shape`` and ``strides`` (bytes), one parameter per dimension;
* a Python ``int``: an int64; a ``float``: a float64; a ``bool``: a boolean; a NumPy scalar:
  its own type; a tuple: its items in order.

`slot_count` gives the number of parameters a signature flattens to; the tests compare it with
the ``.param`` list of the PTX that numba-cuda compiles for every registered loss (no GPU
needed), and the GPU tests compare every loss's results with numba's own launch.

A launcher serves one thread at a time: `lossforge.kernels.cuda` keeps one per thread and GPU
context (in its ``_Scratch``), so the argument buffer is never shared. Launches go to the
legacy default stream, as numba-cuda's do; the caller keeps the arguments alive until it
synchronises (cuLaunchKernel copies the buffer at the call, but the kernel reads the arrays
later).

``$LOSSFORGE_CUDA_LAUNCH=numba`` sends every launch through numba-cuda instead (a way to rule
this module out when something looks wrong).
"""
from __future__ import annotations

import os
import struct
import warnings

import numpy as np

__all__ = ["Launcher", "ENABLED", "slot_count", "pack", "pointer"]

#: False when ``$LOSSFORGE_CUDA_LAUNCH=numba`` (every launch through numba-cuda).
ENABLED = os.environ.get("LOSSFORGE_CUDA_LAUNCH", "").strip().lower() != "numba"

_MAX_SLOTS = 256  # parameters of one launch at most (loss_pass has 67-74)
_SCALARS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool",
            "float16", "float32", "float64"}  # numba types of at most 8 bytes
_float_bits = struct.Struct("<d")
_int_bits = struct.Struct("<q")


def slot_count(argtypes) -> int:
    """The number of kernel parameters numba flattens ``argtypes`` (numba types) into, or -1
    when one is not an array, a real scalar or a tuple of them (`pack` handles no other)."""
    count = 0
    for t in argtypes:
        if hasattr(t, "ndim") and hasattr(t, "layout"):  # an Array type
            count += 5 + 2 * t.ndim
        elif hasattr(t, "types") or hasattr(t, "count"):  # a (Uni)Tuple
            inner = slot_count(list(t))
            if inner < 0:
                return -1
            count += inner
        elif str(t) in _SCALARS:
            count += 1
        else:
            return -1
    return count


def pointer(array) -> int:
    """The device address of a numba device array's first element."""
    return array.device_ctypes_pointer.value or 0


def pack(args, out: list) -> list:
    """Append the kernel parameters of ``args`` (numba device arrays, Python ints and floats,
    NumPy scalars and tuples of them) to ``out`` as int64 slot values, in numba's order (see the
    module docstring)."""
    for a in args:
        kind = type(a)
        if kind is int:
            out.append(a)
        elif kind is bool:
            out.append(int(a))
        elif kind is float:
            out.append(_int_bits.unpack(_float_bits.pack(a))[0])
        elif kind is tuple:
            pack(a, out)
        elif isinstance(a, np.generic):
            out.append(int.from_bytes(a.tobytes(), "little", signed=True))
        else:  # a device array
            out += (0, 0, a.size, a.dtype.itemsize, pointer(a), *a.shape, *a.strides)
    return out


def _layout(array) -> str:
    """numba's layout of a device array ('C', 'F' or 'A'), as its ``_numba_type_`` decides it
    (without building the type): a kernel compiled for 'C' or 'F' has the strides built in, so
    the layout belongs to the key of the compiled overload."""
    dummy = array._dummy
    if 0 in array.strides and array.size:  # broadcast
        return "A"
    return "C" if dummy.is_c_contig else "F" if dummy.is_f_contig else "A"


def _key(args) -> tuple:
    """What decides the compiled overload: each array's dtype, dimensions and layout, each
    scalar's type, tuples item by item (numba types every Python float as float64, every int
    as int64)."""
    key = []
    for a in args:
        kind = type(a)
        if kind is int or kind is float or kind is bool:
            key.append(kind)
        elif kind is tuple:
            key.append(_key(a))
        elif isinstance(a, np.generic):
            key.append(a.dtype)
        else:
            key.append((a.dtype, a.ndim, _layout(a)))
    return tuple(key)


class Launcher:
    """Fast launches of ``cuda.jit`` kernels on the calling thread's current GPU context.

    ``launcher(kernel, blocks, threads, args)`` launches ``kernel`` (a numba-cuda dispatcher)
    over ``blocks`` x ``threads`` with ``args``; ``numba_launch(kernel, blocks, threads)``
    is the configured dispatcher used for a signature's first launch and for signatures
    `pack` cannot flatten. (With `ENABLED` False, `lossforge.kernels.cuda` makes no
    launcher.)
    """

    def __init__(self, numba_launch):
        from cuda.bindings import driver
        self._driver = driver
        self._numba_launch = numba_launch
        self._handles: dict = {}  # (dispatcher, signature key) -> (CUkernel, parameter count)
        self._slots = np.zeros(_MAX_SLOTS, dtype=np.int64)
        # cuLaunchKernel's kernelParams: a pointer to each slot
        self._pointers = self._slots.ctypes.data + 8 * np.arange(_MAX_SLOTS, dtype=np.int64)
        self._params = self._pointers.ctypes.data
        self._stream = driver.CUstream(0)
        self._success = driver.CUresult.CUDA_SUCCESS

    def __call__(self, kernel, blocks: int, threads: int, args: tuple) -> None:
        key = (kernel, _key(args))
        entry = self._handles.get(key)
        if entry is None or entry[1] < 0:  # a first launch, or a signature `pack` cannot flatten
            self._numba_launch(kernel, blocks, threads)(*args)
            if entry is None:
                self._remember(kernel, key, args)
            return
        handle, count = entry
        values = pack(args, [])
        if len(values) != count:
            raise TypeError(f"cuda_launch.pack: {len(values)} parameters for a kernel of {count}")
        self._slots[:count] = values
        self.launch_packed(handle, blocks, threads)

    def launch_packed(self, handle, blocks: int, threads: int) -> None:
        """Launch the kernel ``handle`` on the parameters already in the slots (`slots`)."""
        error, = self._driver.cuLaunchKernel(handle, blocks, 1, 1, threads, 1, 1, 0, self._stream,
                                             self._params, 0)
        if error != self._success:
            raise RuntimeError(f"cuLaunchKernel failed: {error.name} ({blocks} blocks x "
                               f"{threads} threads)")

    @property
    def slots(self) -> np.ndarray:
        """The parameter slots the next `launch_packed` reads (int64, one per parameter)."""
        return self._slots

    def handle(self, kernel, args) -> tuple | None:
        """``(driver handle, parameter count)`` of ``kernel``'s overload for ``args`` once a
        launch has compiled it (count -1: launched through numba-cuda), else None."""
        return self._handles.get((kernel, _key(args)))

    def _remember(self, kernel, key, args) -> None:
        """Keep the driver handle of the overload numba-cuda just launched for ``args``."""
        try:
            argtypes = tuple(kernel.typeof_pyval(a) for a in args)
            compiled = kernel.overloads[argtypes]
            handle = compiled._codelibrary.get_cufunc().handle
        except Exception as exc:  # numba-cuda internals moved: keep numba's launch
            warnings.warn(f"lossforge: fast CUDA launches are off for "
                          f"{getattr(kernel, '__name__', kernel)} ({type(exc).__name__}: {exc}); "
                          f"launching through numba-cuda.", RuntimeWarning, stacklevel=3)
            self._handles[key] = (None, -1)
            return
        count = slot_count(argtypes)
        self._handles[key] = (handle, count if count <= _MAX_SLOTS else -1)

    def copy_to_host(self, host_address: int, device_address: int, nbytes: int) -> None:
        """Copy ``nbytes`` from the device to (pinned) host memory: one synchronous
        ``cuMemcpyDtoH``, which waits for the launches before it."""
        error, = self._driver.cuMemcpyDtoH(host_address, device_address, nbytes)
        if error != self._success:
            raise RuntimeError(f"cuMemcpyDtoH of {nbytes} bytes failed: {error.name}")
