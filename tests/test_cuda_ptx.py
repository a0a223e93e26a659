"""CUDA kernels compiled to real PTX, without a GPU: ``lossforge gpu-check``.

The simulator (``test_cuda_sim.py``) accepts code that CUDA rejects (NumPy scalar ufuncs,
lists, exceptions, ...), so every registered loss's kernels are also compiled with
``numba.cuda.compile_ptx`` for compute capabilities 8.0 and 9.0 (float32 and float64 inputs,
the signatures that ``device="cuda"`` launches) and linked with nvJitLink for registers and
spills (for 9.0). Runs in subprocesses with the simulator switched off (it replaces
``compile_ptx`` with None), one per compute capability, in parallel.
"""
import json
import subprocess
import sys
import textwrap

from cuda_support import skip_without_numba_cuda, subprocess_env


pytestmark = skip_without_numba_cuda("compile")

TIMEOUT = 600
CCS = ("8.0", "9.0")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lossforge.cli", *args]


#: Per compute capability, the gpu-check options besides --cc: the two runs go in parallel, so
#: the loss-independent support kernels (compiled for 8.0) balance the nvJitLink register
#: report (for 9.0).
OPTIONS = {"8.0": ("--no-resources",), "9.0": ("--no-support",)}


def test_every_registered_loss_compiles_to_ptx_for_cc_80_and_90(tmp_path):
    reports = {cc: tmp_path / f"gpu-check-{cc}.json" for cc in CCS}
    runs = {cc: subprocess.Popen(_cli("gpu-check", "--cc", cc, *OPTIONS[cc], "--json", str(path)),
                                 env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            for cc, path in reports.items()}
    registered = subprocess.run(
        [sys.executable, "-c",
         "import json, lossforge; print(json.dumps(lossforge.registry.names()))"],
        env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT)
    outputs = {cc: run.communicate(timeout=TIMEOUT) for cc, run in runs.items()}
    assert registered.returncode == 0, registered.stderr
    names = json.loads(registered.stdout)
    for cc, (out, err) in outputs.items():
        assert runs[cc].returncode == 0, \
            f"gpu-check --cc {cc} failed:\n{out[-6000:]}\n{err[-3000:]}"
        results = json.loads(reports[cc].read_text())["results"]
        sm = "sm_" + cc.replace(".", "")
        by_loss = {(r["kernel"], r["variant"]): r for r in results}
        for name in names:
            for variant in ("float32", "float64"):
                r = by_loss.get((name, variant))
                assert r is not None, f"{name} ({variant}) was not compiled for {cc}"
                assert r["ok"] is True and r["cc"] == cc, r
                assert r["target"] == sm and r["ptx_version"], r  # .target sm_XX / .version X.Y
        assert all(r["ok"] is True and r["target"] == sm for r in results)
        # the fast launch (kernels/cuda_launch.py) packs as many parameters as each kernel takes
        assert all(r["ptx_params"] == r["launch_slots"] > 0 for r in results), \
            [(r["kernel"], r["variant"], r["ptx_params"], r["launch_slots"]) for r in results
             if r["ptx_params"] != r["launch_slots"]]
        # y, p: 7 each; w (3-d): 11; middle, inner, n, mode, grad_scale: 1 each; values,
        # grad: 7 each; partials (2-d): 9; done, totals: 7 each
        assert by_loss[("mean_squared_error", "float32")]["ptx_params"] == 67
        support = {r["kernel"] for r in results} - set(names)
        table = out.splitlines()
        assert table[0].split() == ["kernel", "variant", sm] and "all compiled" in table[-1]
        if "--no-support" in OPTIONS[cc]:
            assert not support
        else:
            assert support == {"_cast", "_scale", "_fill"}
        if "--no-resources" in OPTIONS[cc]:
            assert all(r["registers"] is None for r in results)
            assert "registers not reported" in table[-1]
            continue
        # nvJitLink ships with numba-cuda[cu13]: registers are reported, and nothing spills
        assert all(isinstance(r["registers"], int) and 0 < r["registers"] <= 255 for r in results)
        assert all(r["spill_stores"] == 0 and r["spill_loads"] == 0 for r in results), \
            [r for r in results if r["spill_stores"] or r["spill_loads"]]
        registers = by_loss[("mean_squared_error", "float32")]["registers"]
        assert ["mean_squared_error", "float32", "OK", str(registers), "regs"] in \
            [line.split() for line in table]


def test_gpu_check_fails_with_exit_code_1_on_a_kernel_cuda_rejects():
    # np.exp is fine on the CPU (and under the simulator) but not in CUDA kernels
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import lossforge
        from lossforge.cli import main

        @lossforge.register_loss("uses_numpy_exp")
        def uses_numpy_exp(y, p):
            return np.exp(p - y)

        assert float(lossforge.registry.get("uses_numpy_exp")([0.0], [0.0])) == 1.0
        sys.exit(main(["gpu-check", "--cc", "9.0", "--loss", "uses_numpy_exp", "--loss", "mse",
                       "--dtype", "float64", "--no-support", "--no-resources"]))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert ["uses_numpy_exp", "float64", "FAIL"] in [line.split() for line in lines]
    assert ["mean_squared_error", "float64", "OK"] in [line.split() for line in lines]
    assert any(line.startswith("FAILED uses_numpy_exp (float64) for cc 9.0:") for line in lines)
    assert "1 FAILED" in lines[-1] and "registers not reported" in lines[-1]


def test_gpu_check_usage_errors():
    out = subprocess.run(_cli("gpu-check", "--cc", "nine"), env=subprocess_env(), capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 2 and "not a compute capability: 'nine'" in out.stderr
    out = subprocess.run(_cli("gpu-check", "--loss", "no_such_loss"), env=subprocess_env(),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 1 and "No loss named 'no_such_loss'" in out.stderr
    out = subprocess.run(_cli("gpu-check", "--cc", "9.0", "--loss", "mse"),
                         env=subprocess_env(NUMBA_ENABLE_CUDASIM="1"), capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 1 and "simulator is enabled" in out.stderr


def test_kernels_compile_under_a_numpy_without_row_stack():
    """NumPy 2.5 removed ``np.row_stack``, whose overload numba-cuda 0.30 registers during the
    first compile: on an H100 with NumPy 2.5.2 every kernel failed with an AttributeError.
    The alias is removed here as NumPy 2.5 does, and a kernel must still compile."""
    code = textwrap.dedent("""
        import json
        import numpy as np
        if hasattr(np, "row_stack"):
            del np.row_stack  # as in NumPy >= 2.5
        from lossforge import registry
        from lossforge.kernels import cuda
        results = cuda.check_ptx(ccs=((9, 0),), specs=[registry.get("mean_squared_error")],
                                 dtypes=(np.float32,), support=False, resources=False)
        print(json.dumps([[r["kernel"], r["ok"]] for r in results]))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results and all(ok is True for _, ok in results), results
