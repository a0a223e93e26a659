"""CUDA kernels under the CUDA simulator: every registered loss against the CPU path.

No GPU exists on the development and CI machines, so the numbers of the CUDA kernels are
checked under numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``), which must be set before
numba is imported and replaces ``compile_ptx`` with None: the checks run in worker
subprocesses (this file run as a script), never in the pytest process. Whether the kernels
are real CUDA is checked by ``test_cuda_ptx.py``.

Each worker takes every other registered loss (so newly registered losses are covered at once;
a user-defined loss with a parameter and a plain helper function is registered first) and
compares ``device="cuda"`` with ``device="cpu"``: every reduction, scalar / per-sample / full /
all-zero weights, values and gradients, float64 (rtol 1e-6) and float32 (rtol 1e-5, atol 1e-6
of the largest entry: the CPU's float32 kernels compute in float32), device-array inputs
(outputs stay on the device), a dtype cast on the device, a NaN input and a second launch
configuration. Launches are tiny (2 blocks of 8 threads; once 3 blocks of 32): each simulated
thread is a Python thread. The argument types of every launch are compared with the signatures that
``lossforge gpu-check`` compiles to PTX.
"""
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cuda_support import ROOT, skip_without_numba_cuda, subprocess_env

needs_numba_cuda = skip_without_numba_cuda("check")

SHARDS = 2
TIMEOUT = 600


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)


@needs_numba_cuda
def test_every_registered_loss_matches_the_cpu_path_under_the_simulator():
    env = subprocess_env(NUMBA_ENABLE_CUDASIM="1")
    workers = [subprocess.Popen([sys.executable, __file__, "worker", str(i), str(SHARDS)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(SHARDS)]
    outputs = [w.communicate(timeout=TIMEOUT) for w in workers]
    summaries = []
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-4000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    covered = sorted(name for s in summaries for name in s["losses"])
    assert covered == summaries[0]["registered"]  # every loss, each once
    assert "sim_user_pseudo_huber" in covered
    assert all(s["cases"] >= 16 * len(s["losses"]) for s in summaries)
    failures = [f for s in summaries for f in s["failures"]]
    assert not failures, "\n".join(failures[:30])


def test_import_lossforge_loads_neither_numba_nor_numba_cuda():
    out = _python("""
        import json, sys
        import lossforge
        after_import = sorted(m for m in sys.modules if m.split(".")[0] in ("numba", "numba_cuda"))
        lossforge.losses.mean_squared_error([0.0, 1.0], [1.0, 1.0])
        cuda = sorted(m for m in sys.modules if m.startswith(("numba.cuda", "numba_cuda")))
        print(json.dumps({"after_import": after_import, "cuda_after_cpu_call": cuda}))
    """)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"after_import": [], "cuda_after_cpu_call": []}


def test_device_cuda_without_numba_cuda_says_what_to_install():
    out = _python("""
        import importlib.metadata as md
        real = md.version
        def version(name):
            if name == "numba-cuda":
                raise md.PackageNotFoundError(name)
            return real(name)
        md.version = version  # as if numba-cuda were not installed
        import sys, lossforge
        try:
            lossforge.registry.get("mse")([0.0], [1.0], device="cuda")
        except lossforge.InvalidArgumentError as exc:
            print(exc)
        assert not any(m.startswith("numba.cuda") for m in sys.modules)
    """)
    assert out.returncode == 0, out.stderr
    assert "numba-cuda" in out.stdout and "pip install 'lossforge[cuda]'" in out.stdout


@needs_numba_cuda
def test_device_cuda_without_a_gpu_is_a_clear_error():
    out = _python("""
        import lossforge
        from numba import cuda
        if cuda.is_available():
            print("GPU")
        else:
            for call in (lambda s: s([0.0], [1.0], device="cuda"),
                         lambda s: s.value_and_grad([0.0], [1.0], device="cuda")):
                try:
                    call(lossforge.registry.get("mse"))
                except lossforge.InvalidArgumentError as exc:
                    print(exc)
    """)
    assert out.returncode == 0, out.stderr
    if out.stdout.strip() == "GPU":
        pytest.skip("a GPU is visible here")
    assert out.stdout.count("no CUDA GPU is visible") == 2


@needs_numba_cuda
def test_grad_out_on_the_cuda_path():
    # value_and_grad(..., device="cuda", grad_out=a device array): the gradient is written into
    # it and it is returned, the same numbers as a new array; bad ones are refused as on the CPU
    out = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import json
        import numpy as np
        from numba import cuda
        import lossforge
        rng = np.random.default_rng(5)
        report = {}
        for name in ("mean_squared_error", "softmax_cross_entropy", "huber_loss"):
            spec = lossforge.registry.get(name)
            y, p, kw = spec.example_inputs(rng, 6, 5)
            y = cuda.to_device(np.asarray(y, np.float32))
            p = cuda.to_device(np.asarray(p, np.float32))
            for args in ((0.5,), (2.0, "weighted_sum")):
                value, grad = spec.value_and_grad(y, p, *args, device="cuda", **kw)
                out = cuda.device_array(p.shape, np.float32)
                cuda.to_device(np.full(p.shape, np.nan, np.float32), to=out)  # poisoned
                value_out, returned = spec.value_and_grad(y, p, *args, device="cuda",
                                                          grad_out=out, **kw)
                report[f"{name}{args}"] = [returned is out, float(value_out) == float(value),
                                           bool((out.copy_to_host() == grad.copy_to_host()).all())]
        spec = lossforge.registry.get("mse")
        y = cuda.to_device(np.zeros((4, 3), np.float32))
        p = cuda.to_device(np.ones((4, 3), np.float32))
        errors = []
        for bad in (np.empty((4, 3), np.float32), cuda.device_array((3, 4), np.float32),
                    cuda.device_array((4, 3), np.float64),
                    cuda.device_array((4, 6), np.float32)[:, ::2]):
            try:
                spec.value_and_grad(y, p, device="cuda", grad_out=bad)
                errors.append(None)
            except (TypeError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        try:
            spec.value_and_grad(np.zeros((4, 3), np.float16), np.ones((4, 3), np.float16),
                                device="cuda", grad_out=cuda.device_array((4, 3), np.float16))
        except ValueError as exc:
            errors.append(str(exc))
        print(json.dumps({"report": report, "errors": errors}))
    """)], env=subprocess_env(NUMBA_ENABLE_CUDASIM="1"), capture_output=True, text=True,
        timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["report"]) == 6
    assert all(checks == [True, True, True] for checks in result["report"].values()), result
    numpy_array, shape, dtype, strided, float16 = result["errors"]
    assert numpy_array.startswith("InvalidTypeError") and "must be a device array" in numpy_array
    assert "shape (3, 4), not the predictions' (4, 3)" in shape
    assert "dtype float64, not the gradient's float32" in dtype
    assert "not C-contiguous" in strided
    assert "needs float32 or float64 inputs" in float16 and "float16" in float16


def test_unknown_device_is_an_error():
    import lossforge
    spec = lossforge.registry.get("mse")
    for device in ("gpu", "CUDA", None):
        with pytest.raises(lossforge.InvalidArgumentError, match="`device` must be one of"):
            spec([0.0], [1.0], device=device)
        with pytest.raises(lossforge.InvalidArgumentError, match="`device` must be one of"):
            spec.value_and_grad([0.0], [1.0], device=device)


# --- the worker (runs under the simulator) -------------------------------------------------------

def _user_square(x):  # a plain helper: the registry compiles it with the formula
    return x * x


def _user_pseudo_huber(y, p, delta):
    return delta * delta * (math.sqrt(1.0 + _user_square((p - y) / delta)) - 1.0)


def _user_pseudo_huber_grad(y, p, delta):
    return (p - y) / math.sqrt(1.0 + _user_square((p - y) / delta))


def _make_simulator_shared_arrays_atomic() -> None:
    """Close a race in numba-cuda's simulator (0.30): ``cuda.shared.array`` creates a launch's
    array on first use with an unlocked get-then-set, so two threads can each get their own
    array, and a block reduction would then read a slot of an uninitialised one. Same
    behaviour, made atomic, so that these tests cannot flake on simulator internals."""
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    lock = threading.Lock()
    original = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory, or an error
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)  # as the original: file and line
        with lock:
            if key not in self._allocations:
                self._allocations[key] = np.empty(shape, dtype)
            return self._allocations[key]

    kernelapi.FakeCUDAShared.array = array


def _worker(shard: int, shards: int, gpu: bool = False) -> None:
    """Check one shard of the registry; ``gpu``: on a real GPU (``test_cuda_gpu.py``), which adds
    large inputs at the default launch configuration."""
    if not gpu:
        sys.setswitchinterval(5e-4)  # the simulator's block manager polls its threads: switch often
        _make_simulator_shared_arrays_atomic()
    import numba
    from numba import cuda

    import lossforge
    from lossforge import Reduction, registry
    from lossforge.kernels import cuda as kc

    if gpu:
        assert not kc.SIMULATOR and cuda.is_available()
    else:
        assert kc.SIMULATOR and cuda.compile_ptx is None
    defaults = kc.configure()
    lossforge.register_loss("sim_user_pseudo_huber", params={"delta": 1.5},
                            grad=_user_pseudo_huber_grad)(_user_pseudo_huber)
    kc.configure(threads=8, blocks=2)
    failures: list[str] = []
    cases = 0
    launches: dict = {}
    kc.launch_hook = lambda spec, args: launches.setdefault(
        (spec.name, args[2].dtype.name), set()).add(tuple(numba.typeof(a) for a in args))

    for bad in (0, 3, 1024, 2.0, True):
        try:
            kc.configure(threads=bad)
            failures.append(f"configure(threads={bad!r}) was accepted")
        except lossforge.InvalidArgumentError:
            pass

    def host(x):
        return x.copy_to_host() if kc.is_device_array(x) else x

    def compare(name, case, cpu, gpu, rtol=1e-6, on_device=False):
        nonlocal cases
        cases += 1
        for part, c, g in zip(("value", "grad"), cpu, gpu):
            if on_device and np.ndim(c) and not kc.is_device_array(g):
                failures.append(f"{name} [{case}] {part}: a host array from device inputs")
            g = host(g)
            if np.asarray(c).dtype != np.asarray(g).dtype or np.shape(c) != np.shape(g) \
                    or isinstance(c, np.ndarray) != isinstance(g, np.ndarray):
                failures.append(f"{name} [{case}] {part}: cpu {type(c).__name__} "
                                f"{np.asarray(c).dtype} {np.shape(c)} vs gpu {type(g).__name__} "
                                f"{np.asarray(g).dtype} {np.shape(g)}")
            elif not np.allclose(np.asarray(g, np.float64), np.asarray(c, np.float64), rtol=rtol,
                                 atol=_atol(c, rtol), equal_nan=True):
                failures.append(f"{name} [{case}] {part}: cpu {c!r} vs gpu {g!r}")

    def _atol(cpu, rtol):
        # float32 cases (rtol >= 1e-5): the CPU's float32 kernels compute in float32 (the CUDA
        # ones in float64), so an entry that cancels to near 0 is off by float32 rounding of
        # its terms: allow 1e-6 of the largest entry
        if rtol < 1e-5 or not np.size(cpu):
            return 1e-12
        finite = np.abs(np.asarray(cpu, np.float64))
        finite = finite[np.isfinite(finite)]
        return max(1e-12, 1e-6 * float(finite.max())) if finite.size else 1e-12

    def check(spec, case, labels, predictions, weights, reduction, kwargs, grad=True,
              rtol=1e-6, cpu_inputs=None):
        """spec on the CPU (``cpu_inputs``: its host copies) vs on the simulated GPU."""
        cy, cp, cw = cpu_inputs or (labels, predictions, weights)
        try:
            if grad:
                cpu = spec.value_and_grad(cy, cp, cw, reduction, **kwargs)
                gpu = spec.value_and_grad(labels, predictions, weights, reduction, device="cuda",
                                          **kwargs)
            else:
                cpu = (spec(cy, cp, cw, reduction, **kwargs),)
                gpu = (spec(labels, predictions, weights, reduction, device="cuda", **kwargs),)
        except lossforge.InvalidArgumentError as exc:
            on_device = any(kc.is_device_array(a) for a in (labels, predictions, weights))
            if on_device and "Pass host arrays instead" in str(exc):
                nonlocal cases  # documented: a prepare that repacks inputs needs host arrays
                cases += 1
                return
            failures.append(f"{spec.name} [{case}]: {type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # a failure of either path is a finding, not a crash
            failures.append(f"{spec.name} [{case}]: {type(exc).__name__}: {exc}")
            return
        compare(spec.name, case, cpu, gpu, rtol,
                on_device=any(kc.is_device_array(a) for a in (labels, predictions, weights)))

    reductions = [Reduction.NONE, Reduction.SUM, Reduction.MEAN, Reduction.SUM_OVER_BATCH_SIZE,
                  Reduction.SUM_BY_NONZERO_WEIGHTS]
    specs = registry.specs()[shard::shards]
    for index, spec in enumerate(specs):
        rng = np.random.default_rng(index)
        y, p, kw = spec.example_inputs(rng, 70, 5)
        y, p = np.asarray(y), np.asarray(p)
        loss_shape = np.shape(spec(y, p, reduction=Reduction.NONE, **kw))
        per_sample = rng.uniform(0.5, 2.0, loss_shape[:1] + (1,) * (len(loss_shape) - 1))
        per_sample.flat[0] = 0.0
        full = rng.uniform(0.5, 2.0, loss_shape) * (rng.random(loss_shape) > 0.2)
        has_grad = spec.grad is not None
        # The first call of each dtype compiles the formulas (for the CPU: the simulator runs
        # them as compiled CPU code): do it in one simulated thread, not in many at once. It
        # also checks the degenerate launch (one thread walks every element).
        previous = kc.configure(threads=1, blocks=1)
        check(spec, "1 thread, first float64 call", y, p, full, Reduction.MEAN, kw, has_grad)
        as32 = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in (y, p)]
        check(spec, "1 thread, first float32 call", *as32, full, Reduction.MEAN, kw, has_grad,
              rtol=1e-5)
        kc.configure(*previous)
        for reduction in reductions:
            check(spec, f"full weights, {reduction.name}", y, p, full, reduction, kw, has_grad)
        check(spec, "scalar weight", y, p, 0.5, Reduction.SUM_BY_NONZERO_WEIGHTS, kw, has_grad)
        check(spec, "per-sample weights", y, p, per_sample, Reduction.MEAN, kw, has_grad)
        check(spec, "zero weights", y, p, np.zeros(loss_shape), Reduction.SUM_BY_NONZERO_WEIGHTS,
              kw, has_grad)
        check(spec, "values only, NONE", y, p, 0.5, Reduction.NONE, kw, grad=False)
        check(spec, "values only, default", y, p, per_sample, None, kw, grad=False)
        check(spec, "float32", *as32, full, Reduction.MEAN, kw, has_grad, rtol=1e-5)
        device = [cuda.to_device(a) for a in (y, p, full)]
        check(spec, "device arrays", *device, Reduction.NONE, kw, has_grad,
              cpu_inputs=(y, p, full))
        check(spec, "device float32 predictions, host labels", y, cuda.to_device(as32[1]),
              per_sample, Reduction.SUM_OVER_BATCH_SIZE, kw, has_grad, rtol=1e-5,
              cpu_inputs=(y, as32[1], per_sample))
        nan_p = p.astype(np.float64)
        nan_p.flat[0] = np.nan
        check(spec, "NaN prediction", y, nan_p, 1.0, Reduction.SUM, kw, has_grad)
        previous = kc.configure(threads=32, blocks=3)
        check(spec, "3 blocks of 32 threads", y, p, full, Reduction.SUM_BY_NONZERO_WEIGHTS, kw,
              has_grad)
        kc.configure(*previous)
        if gpu:  # many blocks of the default launch, each reducing thousands of elements
            previous = kc.configure(*defaults)
            yb, pb, kwb = spec.example_inputs(rng, 20_000, 50)
            yb, pb = np.asarray(yb), np.asarray(pb)
            big_shape = np.shape(spec(yb, pb, reduction=Reduction.NONE, **kwb))
            wb = rng.uniform(0.5, 2.0, big_shape) * (rng.random(big_shape) > 0.2)
            for reduction in (Reduction.SUM_BY_NONZERO_WEIGHTS, Reduction.NONE):
                check(spec, f"{yb.size} elements, default launch, {reduction.name}", yb, pb, wb,
                      reduction, kwb, has_grad)
            big32 = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in (yb, pb)]
            check(spec, f"{yb.size} float32 elements on the device, default launch",
                  *(cuda.to_device(a) for a in big32), 1.0, Reduction.MEAN, kwb, has_grad,
                  rtol=1e-5, cpu_inputs=(*big32, 1.0))
            kc.configure(*previous)
        for kd in ("float32", "float64"):  # what gpu-check compiles is what every call launched
            launched = launches.get((spec.name, kd))
            compiled = kc.loss_signature(spec, np.dtype(kd))
            if launched != {compiled}:
                failures.append(f"{spec.name} ({kd}): launched with {launched}, gpu-check "
                                f"compiles {compiled}")
    if shard == 0:  # shapes and dtypes that only the wrappers around the kernels handle
        mse = registry.get("mean_squared_error")
        sparse = registry.get("sparse_softmax_cross_entropy")
        rng = np.random.default_rng(99)
        check(mse, "0-d inputs", 1.0, 2.5, 2.0, Reduction.NONE, {})
        check(mse, "0-d inputs", np.float32(1.0), np.float32(2.5), 2.0, Reduction.MEAN, {})
        for reduction in (Reduction.NONE, Reduction.MEAN):
            check(mse, "empty inputs", np.ones((0, 3)), np.ones((0, 3)), 1.0, reduction, {})
        y16, p16 = rng.normal(size=(2, 4, 9)).astype(np.float16)
        check(mse, "float16 (values cast on the device)", y16, p16, 1.0, Reduction.NONE, {},
              rtol=1e-3)
        check(mse, "float16 (grad scaled and cast on the device)", y16, p16, 1.0,
              Reduction.MEAN, {}, rtol=1e-3)
        shape = (2, 3, 2, 3, 2)  # weights alternating full/broadcast dims: 5 runs, materialised
        y5, p5, w5 = rng.normal(size=shape), rng.normal(size=shape), rng.random((2, 1, 2, 1, 2))
        check(mse, "weights of five runs", y5, p5, w5, Reduction.MEAN, {})
        check(mse, "device weights of five runs", y5, p5, cuda.to_device(w5), Reduction.MEAN, {},
              cpu_inputs=(y5, p5, w5))
        labels = rng.integers(0, 5, size=70).astype(np.int32)
        logits, w = 3 * rng.normal(size=(70, 5)), rng.random((70, 1))
        check(sparse, "device int32 labels, (n, 1) weights squeezed", cuda.to_device(labels),
              cuda.to_device(logits), cuda.to_device(w), Reduction.SUM_BY_NONZERO_WEIGHTS, {},
              cpu_inputs=(labels, logits, w))
        check(sparse, "empty rows", np.zeros(0, np.int64), np.zeros((0, 5)), 1.0, Reduction.MEAN,
              {})
        # the TF API's wrapper takes the labels' shape from a device array (no host copy)
        pairwise_api = lossforge.losses.mean_pairwise_squared_error
        yp, pp = rng.normal(size=(2, 6, 4))
        for weight in (2.0, np.full((6, 1), 0.5)):
            got = pairwise_api(cuda.to_device(yp), cuda.to_device(pp), weight, device="cuda")
            want = pairwise_api(yp, pp, weight)
            cases += 1
            if not np.isclose(got, want, rtol=1e-6):
                failures.append(f"losses.mean_pairwise_squared_error on device arrays, weights "
                                f"{np.shape(weight)}: {got!r} != {want!r}")
        # a strided (non-contiguous) device view; not `.T`: a real GPU's 2-D transpose is a
        # contiguous copy made by a kernel (the simulator's is a view)
        strided = cuda.to_device(np.arange(12.0).reshape(3, 4))[:, ::2]
        try:
            mse(strided, np.ones((3, 2)), device="cuda")
            failures.append("a non-contiguous device array was accepted")
        except lossforge.InvalidArgumentError as exc:
            if "non-contiguous" not in str(exc):
                failures.append(f"non-contiguous device array: {exc}")
    print(json.dumps({"losses": [s.name for s in specs], "registered": registry.names(),
                      "failures": failures, "cases": cases}))


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    _worker(int(sys.argv[2]), int(sys.argv[3]), gpu=sys.argv[4:5] == ["gpu"])


def check_objective_on_cuda(env: dict, launch: str) -> None:
    """`objective(batch, device="cuda")` runs every term's CUDA kernel: same components as CPU;
    the TF-API functions take ``device="cuda"`` too. ``launch``: a `configure` call."""
    code = """
        import json, os
        import numpy as np
        import lossforge
        from lossforge.kernels import cuda
        cuda.%s
        objective = lossforge.load_objective(os.path.join(%r, "configs", "scene_depth_pose.yaml"))
        batch, params = objective.example_batch(seed=3, batch_size=4, classes=5)
        cpu = objective(batch, params).as_dict()
        gpu = objective(batch, params, device="cuda").as_dict()
        result, grads = objective.value_and_grad(batch, params, device="cuda")
        _, cpu_grads = objective.value_and_grad(batch, params)
        y, p = batch["depth"], batch["depth_pred"]
        L = lossforge.losses
        w = (y > 2.0) * 1.0
        cpu.update(tf_api=[float(L.huber_loss(y, p)), float(L.mean_pairwise_squared_error(y, p)),
                           float(L.compute_weighted_loss(y, w))])
        gpu.update(tf_api=[float(L.huber_loss(y, p, device="cuda")),
                           float(L.mean_pairwise_squared_error(y, p, device="cuda")),
                           float(L.compute_weighted_loss(y, w, device="cuda"))])
        print(json.dumps({"cpu": cpu, "gpu": gpu,
                          "grad_err": max(float(np.max(np.abs(np.asarray(grads[k]) - cpu_grads[k])))
                                          for k in cpu_grads)}))
    """ % (launch, ROOT)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["cpu"].keys() == got["gpu"].keys()
    for key, value in got["cpu"].items():  # the components, and two TF-API functions
        assert got["gpu"][key] == pytest.approx(value, rel=1e-9), key
    assert got["grad_err"] < 1e-9


@needs_numba_cuda
def test_objective_on_cuda_matches_cpu_under_the_simulator():
    check_objective_on_cuda(subprocess_env(NUMBA_ENABLE_CUDASIM="1"), "configure(8, 2)")
