"""Kernel generation and caching: lazy numba, on-disk cache, fingerprinted directories."""
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lossforge
import reference as ref


def _run(code: str, cache_dir, **env) -> dict:
    """Run ``code`` in a fresh interpreter and return the JSON it prints last."""
    full_env = dict(os.environ, LOSSFORGE_CACHE_DIR=str(cache_dir), **env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_does_not_load_numba(tmp_path):
    got = _run("""
        import json, sys, lossforge
        print(json.dumps({"numba": "numba" in sys.modules}))
    """, tmp_path)
    assert got == {"numba": False}


CALL = """
    import json, numpy as np, lossforge
    from lossforge import kernels
    v = lossforge.losses.huber_loss(np.arange(6.0).reshape(2, 3), np.ones((2, 3)), weights=[[1.0], [0.5]])
    k = kernels.loss_kernels(lossforge.registry.get("huber_loss"))
    print(json.dumps({"value": float(v), "dir": str(kernels.cache_directory()),
                      "file": k.__file__,
                      "hits": sum(k.serial_reduce._cache_hits.values()),
                      "misses": sum(k.serial_reduce._cache_misses.values())}))
"""


def test_kernels_compile_once_then_load_from_the_cache(tmp_path):
    first = _run(CALL, tmp_path)
    second = _run(CALL, tmp_path)
    assert first["value"] == second["value"] == pytest.approx(
        (0.5 + 0 + 0.5 + 0.5 * (1.5 + 2.5 + 3.5)) / 6)
    assert (first["hits"], first["misses"]) == (0, 1)
    assert (second["hits"], second["misses"]) == (1, 0)
    cache = os.listdir(first["dir"])
    assert os.path.basename(first["file"]) in cache and "__pycache__" in cache
    assert os.path.basename(first["file"]).startswith("huber_loss_")
    assert os.path.basename(first["dir"]).startswith("kernels-")


def test_fingerprint_changes_with_versions_and_sources(monkeypatch):
    from lossforge import kernels
    base = kernels._fingerprint()
    monkeypatch.setattr(kernels.numba, "__version__", "0.0.0-other")
    assert kernels._fingerprint() != base
    monkeypatch.undo()
    assert kernels._fingerprint() == base
    from lossforge.kernels import vmath
    monkeypatch.setattr(vmath, "VECTOR_WIDTH", "256")  # kernels compiled for other lanes
    assert kernels._fingerprint() != base


def test_vector_width_setting_narrows_the_elementwise_lanes(tmp_path):
    """``LOSSFORGE_VECTOR_WIDTH=256`` compiles the elementwise kernels for LLVM's 256-bit lanes
    (no zmm register on an AVX-512 CPU), with the same numbers, into a cache of its own; a
    malformed value is an error naming the variable."""
    code = """
        import json, numpy as np, lossforge
        from numba import njit, types
        from lossforge import kernels
        y = np.linspace(0, 1, 5000, dtype=np.float32)
        p = np.linspace(0.01, 0.99, 5000, dtype=np.float32)
        value = float(lossforge.losses.log_loss(y, p))
        module = kernels.loss_kernels(lossforge.registry.get("log_loss"))
        a = types.Array(types.float32, 1, "C", readonly=True)
        out = types.Array(types.float32, 1, "C")
        sig = (a, a, a, types.UniTuple(types.float64, 1), types.int64, types.int64, out, out,
               types.int64)
        fresh = njit(error_model="numpy")(module._range_reduce.py_func)
        fresh.compile(sig)
        print(json.dumps({"value": value, "zmm": "%zmm" in fresh.inspect_asm(sig),
                          "dir": str(kernels.cache_directory())}))
    """
    wide = _run(code, tmp_path)
    narrow = _run(code, tmp_path, LOSSFORGE_VECTOR_WIDTH="256")
    from numba.core.codegen import get_host_cpu_features
    assert narrow["dir"] != wide["dir"]
    assert not narrow["zmm"]
    assert wide["zmm"] == ("+avx512f" in get_host_cpu_features().split(","))
    assert narrow["value"] == pytest.approx(wide["value"], rel=1e-6)
    bad = subprocess.run([sys.executable, "-c", "import numpy as np, lossforge; "
                          "lossforge.losses.log_loss(np.ones(3), np.ones(3) / 2)"],
                         env=dict(os.environ, LOSSFORGE_CACHE_DIR=str(tmp_path),
                                  LOSSFORGE_VECTOR_WIDTH="wide"),
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "LOSSFORGE_VECTOR_WIDTH must be 128, 256 or 512" in bad.stderr


def test_unwritable_cache_directory_falls_back_with_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    got = _run("""
        import json, warnings, numpy as np, lossforge
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            v = lossforge.losses.mean_squared_error([0.0, 1.0], [1.0, 1.0])
        print(json.dumps({"value": float(v), "warnings": [str(w.message) for w in caught]}))
    """, blocker / "sub")
    assert got["value"] == 0.5
    assert len(got["warnings"]) == 1 and "not writable" in got["warnings"][0]


def test_generated_module_holds_the_loss_formula():
    from lossforge import kernels
    spec = lossforge.registry.get("log_loss")
    source = open(kernels.loss_kernels(spec).__file__).read()
    assert f"_VALUE64 = _jitted({spec.fingerprint!r}, 'value')" in source
    assert f"_VALUE32 = _jitted({spec.fingerprint!r}, 'value', float32=True)" in source
    assert "_VALUE32(y, p, float32(params[0]))" in source
    # NaN checks must survive (see numba-cuda.md): no fastmath flag on any kernel; only the
    # sums' adds may be reassociated, through vmath.reassoc_add
    flags = [line for line in re.findall(r"^@njit\(.*\)$", source, re.M) if "fastmath" in line]
    assert flags == []
    assert "s = reassoc_add(s, float64(v))" in source


def test_row_wise_losses_use_the_general_template():
    from lossforge import kernels
    sparse = lossforge.registry.get("sparse_softmax_cross_entropy")  # float32_math=True
    source = open(kernels.loss_kernels(sparse).__file__).read()
    assert "def LOSS_AT(y, p, j, params):" in source
    assert f"_VALUE32 = _jitted({sparse.fingerprint!r}, 'value', float32=True)" in source
    # a row-wise loss that does not opt in (every built-in one does) runs its formula as written
    builtin = lossforge.registry.get("cosine_distance")
    plain = lossforge.registry.LossSpec("plain_rowwise_cosine", builtin.value, builtin.grad,
                                        kind="rowwise", prepare=builtin.prepare)
    assert not plain.float32_math
    lossforge.registry.register(plain)
    try:
        source = open(kernels.loss_kernels(plain).__file__).read()
        assert f"_VALUE = _jitted({plain.fingerprint!r}, 'value')" in source
        assert "float32=True" not in source
        y = np.eye(3, dtype=np.float32)
        assert plain(y, y, axis=1) == builtin(y, y, axis=1) == 0.0
    finally:
        lossforge.registry.unregister("plain_rowwise_cosine")


def test_serial_and_parallel_kernels_give_the_same_state():
    from lossforge import kernels
    from lossforge.inputs import weights_view
    rng = np.random.default_rng(0)
    n = 100_003
    y, p = rng.random(n).astype(np.float32), rng.random(n).astype(np.float32)
    w = weights_view(rng.random(n).astype(np.float32), (n,), np.dtype(np.float32))
    k = kernels.loss_kernels(lossforge.registry.get("log_loss"))
    a, b = np.empty(n, np.float32), np.empty(n, np.float32)
    ga, gb = np.empty(n, np.float32), np.empty(n, np.float32)
    serial = kernels.call(k.SERIAL[3], y, p, w, (1e-7,), n, a, ga, 3)
    parallel = kernels.call(k.PARALLEL[3], y, p, w, (1e-7,), n, b, gb, 3)
    np.testing.assert_allclose(serial, parallel, rtol=1e-12)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ga, gb)


def test_processes_compiling_one_cache_at_once_get_the_right_numbers(tmp_path):
    """numba's cache index has no lock; lossforge's file lock keeps concurrent cold compiles apart."""
    code = textwrap.dedent("""
        import json, numpy as np, lossforge
        y = np.linspace(0, 1, 12).reshape(3, 4); p = y[::-1] * 0.5 + 0.25
        L = lossforge.losses
        print(json.dumps([float(L.mean_squared_error(y, p)), float(L.absolute_difference(y, p)),
                          float(L.log_loss(y.round(), p)), float(L.hinge_loss(y.round(), p))]))
    """)
    env = dict(os.environ, LOSSFORGE_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outputs]
    y = np.linspace(0, 1, 12).reshape(3, 4)
    p = y[::-1] * 0.5 + 0.25
    want = [np.mean((p - y) ** 2), np.mean(np.abs(p - y)),
            np.mean(-y.round() * np.log(p + 1e-7) - (1 - y.round()) * np.log(1 - p + 1e-7)),
            np.mean(np.maximum(0, 1 - (2 * y.round() - 1) * p))]
    for out, _ in outputs:
        np.testing.assert_allclose(json.loads(out.strip().splitlines()[-1]), want, rtol=1e-12)


def test_compute_bound_rowwise_kernels_prefetch_rows_and_keep_their_numbers():
    """A row-wise loss whose value calls ``math`` asks for the predictions' rows ahead
    (`lossforge.kernels.prefetch`) on an AMD CPU, a memory-bound one does not; a prefetch is a
    hint, so the sparse softmax of a multi-threaded size still matches float64 NumPy, and
    asking past the last row or for short rows does nothing."""
    from numba import njit

    from lossforge.kernels import loss_kernels
    from lossforge.kernels.prefetch import prefetch_row
    assert loss_kernels(lossforge.registry.get("sparse_softmax_cross_entropy")).PREFETCH
    assert not loss_kernels(lossforge.registry.get("cosine_distance")).PREFETCH

    @njit
    def ask(a, j, n):
        prefetch_row(a, j, n)
        return a.sum()

    rows = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    assert ask(rows, 5, 3) == ask(rows, 0, 3) == 66.0  # short rows, and past the last one
    # rows are asked for on AMD CPUs only (measured slower on an Intel Xeon)
    from lossforge.kernels.prefetch import cpu_is_amd
    assert cpu_is_amd("processor\t: 0\nvendor_id\t: AuthenticAMD\n", lambda: "generic")
    assert not cpu_is_amd("vendor_id\t: GenuineIntel\nmodel name\t: Xeon\n", lambda: "znver3")
    assert cpu_is_amd("", lambda: "znver4") and not cpu_is_amd("", lambda: "sapphirerapids")
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(700, 100)).astype(np.float32) * 5
    labels = rng.integers(0, 100, 700)
    want = ref.sparse_softmax_cross_entropy(labels, logits).mean()
    got = lossforge.losses.sparse_softmax_cross_entropy(labels, logits)
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_llvm_parses_the_long_block_names_a_long_process_reaches():
    """numba's block labels can double with each kernel a process compiles; past 1024
    characters LLVM's IR parser refuses a name unless lossforge.kernels raised its limit
    (a test session compiling every loss in several modes failed so: "name is too long")."""
    import llvmlite.binding as llvm

    import lossforge.kernels  # noqa: F401 (sets the limit)
    label = "B" + "1234567890" * 300
    llvm.parse_assembly(f"""define void @f(i1 %c) {{
entry:
  br i1 %c, label %"{label}", label %"{label}"
"{label}":
  ret void
}}""").verify()


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_stream_copy_writes_exactly_its_destination(dtype):
    """`stream.stream_copy` copies any length to any element offset (whole aligned lines by
    non-temporal stores, the head and tail by plain ones) and writes nothing outside ``dst``;
    a destination whose address is not a multiple of its itemsize gets plain stores."""
    from numba import njit

    from lossforge.kernels.stream import store_fence, stream_copy

    @njit
    def copy(dst, src):
        stream_copy(dst, src)
        store_fence()

    size = np.dtype(dtype).itemsize
    rng = np.random.default_rng(5)
    for n in (0, 1, 15, 16, 17, 63, 100, 4096, 4099):
        src = (rng.normal(size=n) * 1000).astype(dtype)
        for offset in range(64 // size + 1):
            guarded = np.full(n + 2 * 64, -7.0, dtype=dtype)
            dst = guarded[64 + offset - 32:][:n]
            copy(dst, src)
            assert np.array_equal(dst, src)
            start = 64 + offset - 32
            assert (guarded[:start] == -7).all() and (guarded[start + n:] == -7).all()
        raw = np.zeros(n * size + 1, dtype=np.uint8)
        odd = np.frombuffer(raw.data, dtype=dtype, count=n, offset=1)  # address not a multiple
        copy(odd, src)
        assert np.array_equal(odd, src)
    if os.uname().machine in ("x86_64", "AMD64"):
        asm = "".join(copy.inspect_asm().values())
        assert re.search(r"\bv?movnt", asm), "no non-temporal store in the compiled copy"


def test_large_memory_bound_gradients_stream_into_grad_out_with_the_same_bits():
    """A memory-bound loss's gradient of at least `STREAM_MIN_BYTES`, written into the caller's
    ``grad_out`` (by non-temporal stores, template_elementwise.py), has the bits of the
    gradient written into a fresh array (plain stores), at an aligned and a misaligned
    ``grad_out``, with scalar, per-sample and per-element weights."""
    from lossforge.kernels.stream import STREAM_MIN_BYTES

    rows, cols = 4099, STREAM_MIN_BYTES // 4 // 4096 + 1
    rng = np.random.default_rng(6)
    y = rng.random((rows, cols), dtype=np.float32)
    p = rng.random((rows, cols), dtype=np.float32)
    assert p.nbytes >= STREAM_MIN_BYTES
    per_sample = rng.random((rows, 1)).astype(np.float32)
    per_element = rng.random((rows, cols), dtype=np.float32)
    storage = np.empty(p.size + 1, dtype=np.float32)
    for name in ("mean_squared_error", "absolute_difference", "huber_loss"):
        spec = lossforge.registry.get(name)
        for weights in (2.0, per_sample, per_element):
            value, fresh = spec.value_and_grad(y, p, weights)
            for grad_out in (storage[:-1].reshape(rows, cols), storage[1:].reshape(rows, cols)):
                grad_out[...] = np.nan
                got_value, got = spec.value_and_grad(y, p, weights, grad_out=grad_out)
                assert got is grad_out and got_value == value
                assert np.array_equal(got, fresh), (name, np.shape(weights))
    d = p.astype(np.float64) - y  # huber's gradient, over TF's default count of nonzero weights
    np.testing.assert_allclose(fresh, np.where(np.abs(d) <= 1, d, np.sign(d)) * per_element
                               / per_element.size, rtol=1e-5, atol=1e-14)


@pytest.mark.parametrize("n", [1, 127, 128, 129, 895, 4095, 4097, 4096 + 129, 3 * 65536 + 131])
def test_compute_bound_sub_loops_cover_every_element(n):
    """A formula calling ``math`` runs each block in sub-loops of `SUB_BLOCK` elements, each
    asking for the lines `PREFETCH_DISTANCE` elements on (clipped to the inputs' end) in inputs
    of `PREFETCH_MIN` elements or more: every element's loss and gradient is there, at lengths
    around the sub-loop, block and chunk sizes (the last one multi-threaded and hinted), with
    scalar and per-element weights, and the value-only and value-and-gradient passes agree."""
    from lossforge.kernels import template_elementwise as t
    assert 0 < t.SUB_BLOCK <= t.BLOCK and t.BLOCK % t.SUB_BLOCK == 0
    assert t.PREFETCH_MIN <= 3 * 65536 + 131
    spec = lossforge.registry.get("poisson")
    rng = np.random.default_rng(n)
    y = rng.poisson(3.0, n).astype(np.float32)
    p = rng.uniform(0.1, 5.0, n).astype(np.float32)
    w = rng.uniform(0.0, 2.0, n).astype(np.float32)
    y64, p64, w64 = (a.astype(np.float64) for a in (y, p, w))
    loss = np.where(y64 == 0, p64, p64 - y64 * np.log(p64 + 1e-7))
    dloss = np.where(y64 == 0, 1.0, 1.0 - y64 / (p64 + 1e-7))
    for weights, w_ref in ((1.5, 1.5), (w, w64)):
        values = spec(y, p, weights=weights, reduction="none")
        np.testing.assert_allclose(values, loss * w_ref, rtol=2e-6, atol=1e-6)
        total = spec(y, p, weights=weights, reduction="weighted_sum")
        np.testing.assert_allclose(total, np.sum(loss * w_ref), rtol=1e-5)
        value, grad = spec.value_and_grad(y, p, weights=weights, reduction="weighted_sum")
        assert value == total
        np.testing.assert_allclose(grad, dloss * w_ref, rtol=2e-6, atol=1e-6)
