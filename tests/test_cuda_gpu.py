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
    print(out.stdout)
