"""Stacked CUDA kernels: the partial states of K batches of one loss in one launch.

Used by `lossforge.stacked.stacked_states` (``Objective.evaluate_stacked(..., device="cuda")``).
Each loss gets a module generated from ``template_cuda_stacked.py`` (formula slot as every
kernel): ``stacked_pass`` runs on a 2-d grid, ``blockIdx.y`` over the K batches and
``blockIdx.x`` x threads over each batch's elements, writing per-block partial states
``partials[k, block]``; `stacked_finish` (one block per batch) sums them in block order into
``out[k]``: the same two-pass deterministic reduction as `lossforge.kernels.cuda`, per batch.
Launch sizes follow `lossforge.kernels.cuda.configure`: threads per block as configured (fewer
for small batches), and about ``blocks / K`` blocks per batch (at least one).

Like the rest of the CUDA path this is checked without a GPU: under the simulator against the
CPU kernels and compiled to PTX (`check_ptx`) in ``tests/test_stacked.py``.
"""
from __future__ import annotations

import warnings

import numpy as np

from . import cuda as kc
from .cuda import MAX_THREADS, _array_type, _device_weights, _to_device, block_tree_sum, check_gpu

from numba import cuda, float64  # noqa: E402  (kc has checked that numba-cuda is installed)

__all__ = ["kernel_module", "run", "stacked_configuration", "stacked_finish", "stacked_signature",
           "check_ptx"]

#: The largest y extent of a CUDA grid.
MAX_GRID_Y = 65535


def kernel_module(spec):
    """The stacked CUDA kernel module of ``spec`` (``stacked_pass``), generated on first use."""
    from .. import kernels
    return kernels.generated_module(spec, "template_cuda_stacked.py", prefix="cuda_stacked_")


@cuda.jit
def stacked_finish(partials, out):
    """``out[k, c] = sum_b partials[k, b, c]`` for each batch ``k`` (c = 0, 1, 2), in block order.

    Block ``blockIdx.x`` takes batches ``blockIdx.x, blockIdx.x + gridDim.x, ...``; thread
    ``t`` sums blocks ``t, t + T, ...`` in order, then a shared-memory tree sums the threads.
    """
    shared = cuda.shared.array((3, MAX_THREADS), float64)
    t = cuda.threadIdx.x
    for k in range(cuda.blockIdx.x, partials.shape[0], cuda.gridDim.x):
        a = 0.0
        b = 0.0
        c = 0.0
        for i in range(t, partials.shape[1], cuda.blockDim.x):
            a += partials[k, i, 0]
            b += partials[k, i, 1]
            c += partials[k, i, 2]
        shared[0, t] = a
        shared[1, t] = b
        shared[2, t] = c
        block_tree_sum(shared, t)
        if t == 0:
            out[k, 0] = shared[0, 0]
            out[k, 1] = shared[1, 0]
            out[k, 2] = shared[2, 0]
        cuda.syncthreads()


def stacked_configuration(segment: int, count: int) -> tuple[tuple[int, int], int]:
    """``((blocks per batch, grid y), threads)`` of a launch over ``count`` batches of
    ``segment`` elements: at most about the configured number of blocks in all."""
    _, threads = kc.launch_configuration(segment)
    per_batch = max(1, min(-(-segment // threads), -(-kc._max_blocks // count)))
    return (per_batch, min(count, MAX_GRID_Y)), threads


def run(spec, prepared, kernel_params, segment: int, count: int, out: np.ndarray) -> None:
    """Fill ``out[:, :3]`` with the partial state of each of ``count`` batches of ``segment``
    flat loss elements of ``prepared`` (host arrays), computed on the GPU."""
    check_gpu()
    y, p, weights, loss_shape, _, _, kd = prepared
    kd = np.dtype(kd)
    module = kernel_module(spec)
    w, middle, inner = _device_weights(weights, loss_shape, kd)
    (per_batch, grid_y), threads = stacked_configuration(segment, count)
    partials = cuda.device_array((count, per_batch, 3), dtype=np.float64)
    args = (_to_device(y), _to_device(p), w, int(middle), int(inner),
            tuple(float(v) for v in kernel_params), int(segment), int(count), partials)
    if launch_hook is not None:
        launch_hook(spec, args)
    _configured(module.stacked_pass, (per_batch, grid_y), threads)(*args)
    totals = cuda.device_array((count, 3), dtype=np.float64)
    finish_threads = kc.launch_configuration(per_batch, threads)[1]
    _configured(stacked_finish, (min(count, kc._max_blocks), 1), finish_threads)(partials, totals)
    out[:, :3] = totals.copy_to_host()


def _configured(kernel, grid: tuple[int, int], threads: int):
    """``kernel[grid, threads]`` without numba-cuda's low-occupancy warning (small stacks get
    small grids on purpose), as `lossforge.kernels.cuda` launches."""
    if kc.SIMULATOR or grid[0] * grid[1] >= 128:
        return kernel[grid, threads]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kc.NumbaPerformanceWarning)
        return kernel[grid, threads]


#: Called as ``hook(spec, args)`` before each ``stacked_pass`` launch (tests compare the
#: argument types with what `check_ptx` compiles).
launch_hook = None


# --- PTX without a GPU ---------------------------------------------------------------------------

def stacked_signature(spec, dtype=np.float32):
    """The argument types of ``spec``'s ``stacked_pass`` for inputs of ``dtype``, as `run`
    launches it (the layout of `lossforge.kernels.cuda.loss_signature`)."""
    import numba
    base = kc.loss_signature(spec, dtype)
    y, p, w, middle, inner, params = base[:6]
    t = numba.types
    return (y, p, w, middle, inner, params, t.int64, t.int64, _array_type(np.float64, 3))


def check_ptx(ccs=((8, 0), (9, 0)), specs=None, dtypes=(np.float32, np.float64),
              support: bool = True) -> list[dict]:
    """Compile each loss's ``stacked_pass`` (and `stacked_finish`) to PTX for each ``cc``.

    No GPU needed (`numba.cuda.compile_ptx` with explicit signatures). Returns one dict per
    (kernel, variant, cc): ``kernel``, ``variant``, ``cc``, ``ok``, ``error``, ``target``,
    ``ptx_version``, or ``skipped`` (a loss without example inputs).
    """
    if cuda.compile_ptx is None or kc.SIMULATOR:
        from ..errors import InvalidArgumentError
        raise InvalidArgumentError("the CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1), which "
                                   "cannot compile PTX; unset it to run the PTX checks.")
    from .. import registry
    specs = registry.specs() if specs is None else list(specs)
    jobs = []
    for spec in specs:
        for dtype in dtypes:
            try:
                jobs.append((spec.name, np.dtype(dtype).name,
                             lambda s=spec: kernel_module(s).stacked_pass,
                             stacked_signature(spec, dtype), None))
            except Exception as exc:  # no example inputs: the layout is unknown
                jobs.append((spec.name, np.dtype(dtype).name, None, None,
                             f"{type(exc).__name__}: {exc}"))
    if support:
        jobs.append(("stacked_finish", "float64", lambda: stacked_finish,
                     (_array_type(np.float64, 3), _array_type(np.float64, 2)), None))
    results = []
    for name, variant, kernel, signature, skipped in jobs:
        for cc in ccs:
            cc = tuple(cc)
            result = {"kernel": name, "variant": variant, "cc": f"{cc[0]}.{cc[1]}", "ok": False,
                      "error": None, "target": None, "ptx_version": None}
            if skipped is not None:
                result.update(ok=None, skipped=skipped)
            else:
                try:
                    ptx, _ = cuda.compile_ptx(kernel(), signature, cc=cc)
                    result.update(kc._ptx_header(ptx), ok=True)
                except Exception as exc:
                    result["error"] = f"{type(exc).__name__}: {exc}"
            results.append(result)
    return results

