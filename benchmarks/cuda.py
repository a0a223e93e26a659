"""``--device cuda``: lossforge's CUDA path on device-resident float32 inputs.

Needs a GPU (``numba.cuda.is_available()``); without one it prints that and exits with 0.
Per loss and size: lossforge's ``device="cuda"`` time (inputs already on the device, the
reduced value copied back), a CUDA read-sum floor over the same device arrays (grid-stride,
float32 lanes, one float32 atomic per block; launched the way lossforge launches its kernels,
then synchronised), PyTorch CUDA when torch sees the GPU, GB/s of
inputs read once, % of the measured floor and % of the device's nominal bandwidth
(2 x memory clock x bus width). Results go to ``OUTPUT/latest-cuda.json``.
"""
from __future__ import annotations

import math
import sys

import numpy as np

THREADS = 256
cuda = float32 = None  # numba.cuda and numba.float32, set by `_floor_kernel` for `_read_sum`


def _log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _available() -> tuple[bool, str]:
    try:
        from numba import cuda
    except Exception as exc:  # numba-cuda missing or broken
        return False, f"numba.cuda cannot be imported ({type(exc).__name__}: {exc})"
    try:
        if cuda.is_available():
            return True, ""
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return False, "numba.cuda.is_available() is False (no NVIDIA driver or GPU visible)"


def _read_sum(a, out):
    # globals `cuda` and `float32` are set by _floor_kernel (the simulator swaps module globals)
    tid = cuda.threadIdx.x
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    s = float32(0.0)
    while i < a.size:
        s += float32(a[i])
        i += stride
    shared = cuda.shared.array(THREADS, float32)
    shared[tid] = s
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if tid < step:
            shared[tid] += shared[tid + step]
        cuda.syncthreads()
        step //= 2
    if tid == 0:
        cuda.atomic.add(out, 0, shared[0])


def _floor_kernel():
    """The CUDA read floor: a grid-stride float32 sum, block tree, one atomic per block."""
    import numba
    from numba import cuda as numba_cuda
    globals().update(cuda=numba_cuda, float32=numba.float32)
    return numba_cuda.jit(_read_sum)


def _device_info(cuda) -> dict:
    dev = cuda.get_current_device()
    info = {"name": str(getattr(dev, "name", b"?"), "utf-8") if isinstance(getattr(dev, "name", ""), bytes)
            else str(getattr(dev, "name", "?"))}
    try:
        info["compute_capability"] = ".".join(map(str, dev.compute_capability))
        info["sms"] = dev.MULTIPROCESSOR_COUNT
        clock_khz, bus_bits = dev.MEMORY_CLOCK_RATE, dev.GLOBAL_MEMORY_BUS_WIDTH
        info["nominal_gbps"] = 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    except Exception:  # the simulator has no attributes
        info.update(sms=2, nominal_gbps=None)
    return info


def main(args, objective) -> int:
    ok, why = _available()
    if not ok:
        print(f"--device cuda: no CUDA GPU here: {why}. Nothing was measured; run it on a machine "
              f"with an NVIDIA GPU and numba-cuda (pip install -e '.[cuda]').")
        return 0
    from numba import cuda

    from . import cases as case_module
    from . import floor as cpu_floor
    from . import peers as peer_module
    from . import report
    from .run import _agreement
    from .timing import Contestant, measure
    info = _device_info(cuda)
    _log(f"[CUDA: {info}]")
    kernel = _floor_kernel()
    from lossforge.kernels import cuda as lossforge_cuda
    launch = lossforge_cuda._scratch().launch
    blocks = 8 * info["sms"]
    out = cuda.to_device(np.zeros(1, np.float32))
    torch_peer = None
    if "torch" in (args.peers or "all") or args.peers == "all":
        try:
            import torch
            if torch.cuda.is_available():
                torch_peer = peer_module._torch()
                torch_peer.convert = lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()
                torch_peer.sync = lambda r: (torch.cuda.synchronize(), r)[1]
                torch_peer.name = "torch"
        except ImportError:
            pass
    rows = []
    for case in case_module.select(args.losses, objective):
        for size in args.sizes:
            rng = np.random.default_rng([args.seed, size])
            arrays, shape = case.make(rng, size)
            sets = case_module.rotated(arrays, 2)
            # an objective's parameter arrays (after its batch) stay on the host, as in training
            dev_sets = [tuple(cuda.to_device(a) if j < case.floor_count else a for j, a in enumerate(s))
                        for s in sets]
            views = [tuple(cuda.to_device(v) for v in cpu_floor.flat_views(s[:case.floor_count]) if v.size)
                     for s in sets]

            def floor_call(i):
                for v in views[i]:  # launched as lossforge launches (kernels/cuda_launch.py)
                    launch(kernel, blocks, THREADS, (v, out))
                cuda.synchronize()

            inputs, where = dev_sets, "device"
            try:
                case.lossforge(*dev_sets[0], device="cuda")
            except Exception as exc:  # a prepare that repacks its inputs takes host arrays only
                if "Pass host arrays" not in str(exc):
                    raise
                inputs, where = sets, "host (copied to the device by each call)"

            def lf_call(i):
                r = case.lossforge(*inputs[i], device="cuda")
                cuda.synchronize()
                return r

            contestants = [Contestant("lossforge", lf_call, sets=2),
                           Contestant("floor", floor_call, value=lambda r: 0.0, sets=2)]
            if case.value_and_grad is not None and where == "device":
                def vg_call(i):  # the gradient stays on the device, as a training step wants it
                    r = case.value_and_grad(*inputs[i], device="cuda")
                    cuda.synchronize()
                    return r
                contestants.append(Contestant("value_and_grad", vg_call, value=lambda r: 0.0,
                                              sets=2))
            if torch_peer is not None:
                formula, _ = case.peer_formula(torch_peer)
                if formula is not None:
                    native = [tuple(torch_peer.convert(a) for a in s) for s in sets]
                    contestants.append(Contestant(
                        "torch", lambda i, f=formula, n=native: torch_peer.sync(f(*n[i])),
                        value=torch_peer.value, sets=2))
            measure(contestants, args.repeat, args.rounds)
            by = {c.name: c for c in contestants}
            lf = by["lossforge"]
            if lf.error:
                _log(f"  {case.name} @ {size:,}: lossforge failed: {lf.error}")
                continue
            nbytes = sum(a.nbytes for a in arrays)
            floor_s = by["floor"].best
            if floor_s is None:
                _log(f"  floor failed: {by['floor'].error}")
            row = {"loss": case.name, "size": size, "shape": shape, "bytes": nbytes,
                   "lossforge": lf.best, "floor": floor_s, "gbps": nbytes / lf.best / 1e9,
                   "pct_floor": None if floor_s is None else 100 * floor_s / lf.best,
                   "pct_nominal": (100 * nbytes / lf.best / 1e9 / info["nominal_gbps"]
                                   if info.get("nominal_gbps") else None),
                   "value": lf.warm_value, "inputs": where}
            if "value_and_grad" in by and by["value_and_grad"].error is None:
                row["value_and_grad"] = by["value_and_grad"].best
            if "torch" in by and by["torch"].error is None:
                row["torch"] = by["torch"].best
                row["torch_agreement"] = _agreement(lf.warm_value, by["torch"].warm_value,
                                                    max(a.size for a in arrays))
            rows.append(row)
            _log(f"  {case.name} @ {size:,}: lossforge {report.fmt_time(lf.best)}, floor "
                 f"{report.fmt_time(floor_s)}, {row['gbps']:.1f} GB/s")
    lines = [f"## lossforge CUDA benchmark on {info['name']} (nominal "
             f"{info['nominal_gbps'] or math.nan:.0f} GB/s)", "",
             "| loss | elements | lossforge | value+grad | floor | PyTorch CUDA | GB/s | % of floor "
             "| % of nominal |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        torch_cell = report.fmt_time(r.get("torch"))
        if r.get("torch_agreement") and not r["torch_agreement"]["ok"]:
            torch_cell += " **WRONG**"
        nominal = "-" if r["pct_nominal"] is None else f"{r['pct_nominal']:.0f}%"
        pct_floor = "-" if r["pct_floor"] is None else f"{r['pct_floor']:.0f}%"
        host = " (host inputs)" if r["inputs"] != "device" else ""
        lines.append(f"| {r['loss']}{host} | {r['size']:,} | {report.fmt_time(r['lossforge'])} | "
                     f"{report.fmt_time(r.get('value_and_grad'))} | "
                     f"{report.fmt_time(r['floor'])} | {torch_cell} | {r['gbps']:.1f} | "
                     f"{pct_floor} | {nominal} |")
    print("\n".join(lines))
    report.write_json({"device": info, "rows": rows}, args.output / "latest-cuda.json")
    _log(f"wrote {args.output / 'latest-cuda.json'}")
    return 0
