"""Per-call time of repeated ``device="cuda"`` calls, the way a training loop makes them.

``python -m benchmarks.cuda_calls`` (needs a GPU, numba-cuda and PyTorch CUDA): for MSE, log
loss and softmax cross-entropy at 100, 1M and 16.8M float32 elements already on the device,
the median of a few hundred calls (each followed by ``cuda.synchronize()``) of

* the value on numba device arrays and on PyTorch CUDA tensors (the CUDA Array Interface),
* value+gradient into a new device array, and into a reused ``grad_out``,

with PyTorch's ``mse_loss(...).item()`` beside MSE, and a check that the three kinds of input
give the same value. ``LOSSFORGE_CUDA_LAUNCH=numba`` measures the general path with
numba-cuda's launches instead (at 100 elements). The throughput tables are
``python -m benchmarks.run --device cuda``.
"""
from __future__ import annotations

import os
import time

import numpy as np

LOSSES = ("mean_squared_error", "log_loss", "softmax_cross_entropy")
SIZES = (100, 1_000_000, 16_777_216)


def _median_us(call, repeat: int, cuda) -> float:
    for _ in range(5):
        call()
    cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def main() -> int:
    import torch
    from numba import cuda

    from lossforge import registry
    rng = np.random.default_rng(0)
    mode = "numba-cuda launch" if os.environ.get("LOSSFORGE_CUDA_LAUNCH") == "numba" else "fast"
    sizes = SIZES if mode == "fast" else SIZES[:1]
    for name in LOSSES:
        spec = registry.get(name)
        for n in sizes:
            if spec.kind == "rowwise":
                labels, predictions, kw = spec.example_inputs(rng, max(1, n // 1000), min(n, 1000))
            else:
                labels, predictions, kw = spec.example_inputs(rng, n, 1)
            labels = np.asarray(labels)
            labels = labels.astype(np.float32) if labels.dtype.kind == "f" else labels
            predictions = np.asarray(predictions, dtype=np.float32)
            y, p = cuda.to_device(labels), cuda.to_device(predictions)
            ty, tp = torch.as_tensor(labels, device="cuda"), torch.as_tensor(predictions,
                                                                              device="cuda")
            repeat = 400 if n < 10 ** 7 else 150
            out = cuda.device_array(p.shape, p.dtype)
            times = {
                "numba arrays": _median_us(lambda: spec(y, p, device="cuda", **kw), repeat, cuda),
                "torch tensors": _median_us(lambda: spec(ty, tp, device="cuda", **kw), repeat,
                                            cuda),
                "v+g": _median_us(lambda: spec.value_and_grad(y, p, device="cuda", **kw),
                                  repeat // 2, cuda),
                "v+g grad_out": _median_us(
                    lambda: spec.value_and_grad(y, p, device="cuda", grad_out=out, **kw),
                    repeat // 2, cuda)}
            same = float(spec(y, p, device="cuda", **kw)) == \
                float(spec(ty, tp, device="cuda", **kw)) == \
                float(spec(labels, predictions, device="cuda", **kw))
            line = f"{mode} {name:28s} n={n:>11,d}  " + "  ".join(
                f"{k} {v:7.1f} us" for k, v in times.items()) + f"  same={same}"
            if name == "mean_squared_error":
                torch_call = lambda: torch.nn.functional.mse_loss(tp, ty).item()  # noqa: E731
                line += f"  | torch mse+item {_median_us(torch_call, repeat, cuda):7.1f} us"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
