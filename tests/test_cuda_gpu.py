"""The CUDA path on a real GPU: the simulator's checks, run on the device, plus large launches.

The development and CI machines have no GPU, so these tests skip there (the reason says so); on
a machine with one, ``python -m pytest tests/test_cuda_gpu.py`` runs them. They reuse the
simulator workers of ``test_cuda_sim.py`` and ``test_stacked.py`` without the simulator, which
adds what the simulator cannot show: real atomics and block reductions over ~1M elements at the
default launch configuration (256 threads x up to 1024 blocks), real device memory, and the
kernels' PTX loaded by the driver. Also ``lossforge run --device cuda`` and the benchmark
suite's ``--device cuda`` section end to end.
"""
import functools
import json
import os
import subprocess
import sys

import pytest

from cuda_support import ROOT, numba_cuda_installed, subprocess_env
from test_cuda_sim import check_objective_on_cuda

TIMEOUT = 900


@functools.cache
def _no_gpu_reason() -> str:
    """Why these tests cannot run here, or '' when numba.cuda sees a GPU (asked in a
    subprocess: initialising CUDA in the pytest process would tie it to the driver)."""
    if not numba_cuda_installed():
        return "numba-cuda is not installed (pip install 'lossforge[cuda]')"
    out = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
                         env=subprocess_env(), capture_output=True, text=True, timeout=120)
    if out.stdout.strip() != "True":
        return "no CUDA GPU is visible to numba.cuda on this machine"
    return ""


@pytest.fixture
def gpu():
    reason = _no_gpu_reason()
    if reason:
        pytest.skip(reason)


def _run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=subprocess_env(), capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=ROOT, **kw)


def test_every_registered_loss_matches_the_cpu_path_on_the_gpu(gpu):
    # the CPU reference compiles every loss's kernels: shards in parallel on a GPU machine's cores
    shards = max(1, min(8, (os.cpu_count() or 2) // 2))
    workers = [subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "test_cuda_sim.py"),
                                 "worker", str(i), str(shards), "gpu"], env=subprocess_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(shards)]
    summaries = []
    for worker in workers:
        out, err = worker.communicate(timeout=TIMEOUT)
        assert worker.returncode == 0, err[-4000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    covered = sorted(name for s in summaries for name in s["losses"])
    assert covered == summaries[0]["registered"]  # every loss, each once
    assert all(s["cases"] >= 19 * len(s["losses"]) for s in summaries)
    failures = [f for s in summaries for f in s["failures"]]
    assert not failures, "\n".join(failures[:30])


#: Every registered loss on the GPU, printed as exact hex floats: reduced values and
#: value+gradient on host arrays, on device arrays and on PyTorch CUDA tensors (the CUDA Array
#: Interface), three times each (the first call plans, the next two replay the plan:
#: kernels/cuda_small.py), and unreduced values. Scalar weights: the gradient's scale is folded
#: into the kernel. Then an objective evaluated three times on a device batch.
_EVERY_LOSS_ON_CUDA = r"""
import json
import numpy as np
from numba import cuda
import lossforge.kernels.cuda as kc
from lossforge import registry
try:
    import torch
    torch = torch if torch.cuda.is_available() else None
except ImportError:
    torch = None

def host(a):
    if isinstance(a, np.ndarray):
        return a
    return a.cpu().numpy() if torch is not None and torch.is_tensor(a) else a.copy_to_host()


results = {}
for spec in registry.specs():
    try:
        y, p, kw = spec.example_inputs(np.random.default_rng(3), 257, 9)
    except Exception:  # a user loss without example inputs (none is built in)
        continue
    y, p = np.asarray(y), np.asarray(p, dtype=np.float32)
    y = y.astype(np.float32) if y.dtype.kind == "f" else y
    inputs = [(y, p), (cuda.to_device(y), cuda.to_device(p))]
    if torch is not None:
        inputs.append((torch.as_tensor(y, device="cuda"), torch.as_tensor(p, device="cuda")))
    got = []
    for yy, pp in inputs:
        try:
            for _ in range(3):
                got += [spec(yy, pp, 0.5, device="cuda", **kw),
                        spec(yy, pp, 2.0, "weighted_sum", device="cuda", **kw)]
                if spec.grad is not None:
                    out = (torch.empty_like(pp) if torch is not None and torch.is_tensor(pp)
                           else cuda.device_array(pp.shape, pp.dtype))
                    for args in ((0.5,), (2.0, "weighted_sum")):
                        value, grad = spec.value_and_grad(yy, pp, *args, device="cuda", **kw)
                        got += [value, *np.ravel(host(grad))]
                        value, grad = spec.value_and_grad(yy, pp, *args, device="cuda",
                                                          grad_out=out, **kw)
                        assert grad is out
                        got += [value, *np.ravel(host(grad))]
        except Exception as exc:  # a prepare that repacks its inputs takes host arrays only
            assert "Pass host arrays" in str(exc), exc
    got += list(np.ravel(spec(y, p, reduction="none", device="cuda", **kw)))
    if spec.grad is not None:
        value, grad = spec.value_and_grad(y, p, 0.5, device="cuda", **kw)
        got += [value, *np.ravel(grad)]
    results[spec.name] = [float(v).hex() for v in got]
scratch = kc._scratch()
launcher = scratch._launcher
fast = None if launcher is None else sorted({count for _, count in launcher._handles.values()})
plans = sum(plan is not None for plan in scratch.plans.values())
import lossforge
objective = lossforge.load_objective("configs/multitask.yaml")
batch, params = objective.example_batch(seed=3, batch_size=64, classes=5)
on_device = {k: cuda.to_device(np.asarray(v, np.float32)) for k, v in batch.items()}
evaluations = []
for _ in range(3):  # each term's plan, then its replays
    evaluations += [float(v).hex() for _, v in sorted(
        objective(on_device, params, device="cuda").as_dict().items())]
mse = registry.get("mse")
y, p = cuda.to_device(np.zeros(64, np.float32)), cuda.to_device(np.ones(64, np.float32))
overlap = []
for _ in range(3):  # the general path, then a planned layout: both refuse it
    try:
        mse.value_and_grad(y, p, device="cuda", grad_out=p)
    except ValueError as exc:
        overlap.append(str(exc))
    mse.value_and_grad(y, p, device="cuda", grad_out=cuda.device_array(64, np.float32))
print(json.dumps({"results": results, "fast": fast, "plans": plans, "overlap": overlap,
                  "objective": evaluations}))
"""


def test_the_fast_launch_gives_numba_cudas_launch_bits(gpu):
    # lossforge packs the kernels' arguments itself (kernels/cuda_launch.py) and replays them
    # (kernels/cuda_small.py); a parameter out of place would read the wrong array or size, so
    # every loss is compared with the general path and numba-cuda's own launch
    # ($LOSSFORGE_CUDA_LAUNCH=numba, which turns both off), bit for bit
    runs = {}
    for mode in ("fast", "numba"):
        env = dict(subprocess_env(), LOSSFORGE_CUDA_LAUNCH="" if mode == "fast" else "numba")
        runs[mode] = subprocess.Popen([sys.executable, "-c", _EVERY_LOSS_ON_CUDA], env=env,
                                      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
    outputs = {}
    for mode, proc in runs.items():
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err[-4000:]
        outputs[mode] = json.loads(out.strip().splitlines()[-1])
    fast, numba_launch = outputs["fast"], outputs["numba"]
    assert numba_launch["fast"] is None and numba_launch["plans"] == 0  # the general path
    assert fast["fast"] and all(count > 0 for count in fast["fast"]), fast["fast"]
    assert fast["plans"] >= len(fast["results"])  # (pairwise takes host arrays only)
    assert sorted(fast["results"]) == sorted(registry_names())
    for mode in (fast, numba_launch):  # grad_out=predictions: the kernel would read what it writes
        assert len(mode["overlap"]) == 3
        assert all("shares memory with the inputs" in m for m in mode["overlap"]), mode["overlap"]
    different = [name for name in fast["results"]
                 if fast["results"][name] != numba_launch["results"][name]]
    assert not different, different
    assert len(fast["objective"]) >= 3 * 10  # total, 3 components x (value, weight, weighted)
    assert fast["objective"] == numba_launch["objective"]


def registry_names() -> list[str]:
    out = _run(["-c", "import json, lossforge; print(json.dumps(lossforge.registry.names()))"])
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_objective_on_the_gpu_matches_the_cpu(gpu):
    check_objective_on_cuda(subprocess_env(), "configure()")


def test_stacked_kernel_matches_the_cpu_on_the_gpu(gpu):
    out = _run([os.path.join(ROOT, "tests", "test_stacked.py"), "gpu"])
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert not summary["failures"], "\n".join(summary["failures"][:20])
    assert summary["cases"] >= 12


def test_lossforge_run_on_cuda_prints_the_cpu_total(gpu):
    totals = {}
    for device in ("cpu", "cuda"):
        out = _run(["-m", "lossforge.cli", "run", "configs/multitask.yaml", "--device", device])
        assert out.returncode == 0, out.stderr[-3000:]
        totals[device] = [line.split()[1] for line in out.stdout.splitlines()
                          if line.startswith("total")]
    assert totals["cpu"] == ["3.60164"] and totals["cuda"] == totals["cpu"], totals


def test_benchmark_suite_runs_its_cuda_section(gpu, tmp_path):
    out = _run(["-m", "benchmarks.run", "--device", "cuda", "--quick", "--sizes", "1e4,1e6",
                "--losses", "mean_squared_error,log_loss", "--output", str(tmp_path), "--no-plot"])
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    result = json.loads((tmp_path / "latest-cuda.json").read_text())
    assert result["rows"], "no CUDA results were written"
    assert all(r["lossforge"] > 0 and r["floor"] > 0 and r["value_and_grad"] > 0
               for r in result["rows"]), result["rows"]
    print(out.stdout)
