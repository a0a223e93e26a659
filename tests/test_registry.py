"""The registry: user-defined losses, lookup errors, aliases, fingerprints and plugins."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lossforge
import reference as ref
from lossforge import Reduction, registry


@pytest.fixture
def scratch():
    """Names registered inside a test are removed afterwards."""
    before = set(registry.names())
    yield
    for name in set(registry.names()) - before:
        registry.unregister(name)


def _d_log_cosh(y, p):
    return math.tanh(p - y)


def test_user_loss_gets_tf_weights_reductions_and_gradient(scratch):
    @lossforge.register_loss("my_log_cosh", grad=_d_log_cosh, aliases=("my_lc",))
    def my_log_cosh(y, p):
        return math.log(math.cosh(p - y))

    spec = registry.get("my_log_cosh")
    assert registry.get("my_lc") is spec and "my_log_cosh" in registry.names()
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    losses = np.log(np.cosh(p - y))
    for w in (1.0, rng.uniform(size=(4, 1)), rng.uniform(size=(4, 3))):
        for r in Reduction.all():
            np.testing.assert_allclose(spec(y, p, weights=w, reduction=r),
                                       ref.reduce(losses, w, r.value), rtol=1e-12)
    value, grad = spec.value_and_grad(y, p, reduction=Reduction.SUM)
    np.testing.assert_allclose(grad, np.tanh(p - y), rtol=1e-12)
    assert spec(y.astype(np.float32), p.astype(np.float32)).dtype == np.float32


def test_params_are_passed_checked_and_named(scratch):
    @lossforge.register_loss("pseudo_huber", params=[lossforge.Param("delta", 1.0, low=0.0)])
    def pseudo_huber(y, p, delta):
        return delta * delta * (math.sqrt(1.0 + ((p - y) / delta) ** 2) - 1.0)

    spec = registry.get("pseudo_huber")
    y, p = np.zeros(3), np.array([0.5, 1.0, 3.0])
    for delta in (1.0, 2.5):
        want = np.mean(delta**2 * (np.sqrt(1 + (p / delta) ** 2) - 1))
        assert spec(y, p, delta=delta) == pytest.approx(want, rel=1e-12)
    assert spec(y, p) == spec(y, p, delta=1.0)
    with pytest.raises(ValueError, match=r"`delta`=-1.0 is outside its valid range \[0.0, inf\]"):
        spec(y, p, delta=-1.0)
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['gamma'\].*delta"):
        spec(y, p, gamma=2.0)


def test_plain_python_helpers_lambdas_and_closures_work(scratch):
    def helper(d):
        return d * d * 0.5

    scale = 3.0
    lossforge.register_loss("half_square", grad=lambda y, p: p - y)(lambda y, p: helper(p - y))
    lossforge.register_loss("scaled_abs")(lambda y, p: scale * abs(p - y))
    assert registry.get("half_square")([0.0, 0.0], [1.0, 3.0]) == pytest.approx(2.5)
    assert registry.get("scaled_abs")([0.0], [2.0]) == pytest.approx(6.0)


def test_unknown_names_suggest_the_closest():
    with pytest.raises(registry.UnknownLossError, match="Did you mean 'huber_loss'") as info:
        registry.get("hubber_loss")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(KeyError, match="Registered losses: absolute_difference"):
        registry.get("no such thing at all")


def test_taken_names_need_override(scratch):
    lossforge.register_loss("taken")(lambda y, p: p - y)
    with pytest.raises(ValueError, match="already registered.*override=True"):
        lossforge.register_loss("taken")(lambda y, p: y - p)
    with pytest.raises(ValueError, match="'mse' is already registered"):
        lossforge.register_loss("fresh_name", aliases=("mse",))(lambda y, p: p)
    lossforge.register_loss("taken", override=True)(lambda y, p: y - p)
    assert registry.get("taken")([3.0], [1.0]) == 2.0


def test_formula_arity_is_checked():
    with pytest.raises(TypeError, match=r"exactly 3 positional arguments \(y, p, delta\)"):
        lossforge.register_loss("bad_arity", params={"delta": 1.0})(lambda y, p: p)
    with pytest.raises(TypeError, match="grad formula"):
        lossforge.register_loss("bad_grad", grad=lambda y: y)(lambda y, p: p)
    assert "bad_arity" not in registry.names() and "bad_grad" not in registry.names()


def test_fused_grad_is_for_losses_with_a_gradient():
    fused = lambda y, p, j, scale, out: 0.0  # noqa: E731
    with pytest.raises(TypeError, match=r"fused_grad formula.*exactly 2 positional arguments"):
        registry.LossSpec("fused_elementwise", lambda y, p: p, lambda y, p: 1.0, fused_grad=fused)
    with pytest.raises(ValueError, match="`fused_grad` computes the value and the gradient.*"
                                         "grad=None; register the loss with grad="):
        registry.LossSpec("fused_no_grad", lambda y, p, j: 0.0, kind="rowwise", fused_grad=fused)
    with pytest.raises(TypeError, match=r"fused_grad formula.*exactly 6 positional arguments"):
        registry.LossSpec("fused_arity", lambda y, p, j, c: 0.0,
                          lambda y, p, j, scale, out, c: None, params=(("c", 1.0),),
                          kind="rowwise", fused_grad=fused)
    spec = registry.LossSpec("fused_ok", lambda y, p, j: 0.0, lambda y, p, j, scale, out: None,
                             kind="rowwise")
    other = registry.LossSpec("fused_ok", spec.value, spec.grad, kind="rowwise", fused_grad=fused)
    assert spec.fingerprint != other.fingerprint  # a fused formula compiles its own kernels


def test_specialize_takes_distinct_finite_values_in_range():
    assert lossforge.Param("k", 1.0, 0.0, 5.0, specialize=(2, 3.0)).specialize == (2.0, 3.0)
    for bad, why in (((-1.0,), "holds -1.0"), ((math.inf,), "holds inf"), (("2",), "holds '2'"),
                     ((True,), "holds True"), ((6.0,), r"holds 6.0.*\[0.0, 5.0\]"),
                     ((1.0, 1.0), "repeats"), ((0.0, -0.0), "repeats")):
        with pytest.raises(ValueError, match=f"Param 'k': `specialize` {why}"):
            lossforge.Param("k", 1.0, 0.0, 5.0, specialize=bad)


def _fibre_sq(y, p, j, k):
    """``k sum_axis((p - y)**2)`` over fibre ``j`` of ``(outer, axis, inner)`` arrays."""
    inner = y.shape[2]
    o, i = j // inner, j % inner
    s = 0.0
    for d in range(y.shape[1]):
        s += (float(p[o, d, i]) - float(y[o, d, i])) ** 2
    return k * s


def _fibre_sq_grad(y, p, j, scale, out, k):
    inner = y.shape[2]
    o, i = j // inner, j % inner
    for d in range(y.shape[1]):
        out[o, d, i] = scale * 2.0 * k * (float(p[o, d, i]) - float(y[o, d, i]))


def _first_entry_grad(y, p, j, scale, out, k):
    """Writes only the fibre's first entry."""
    inner = y.shape[2]
    out[j // inner, 0, j % inner] = scale * k


def test_a_row_gradient_that_writes_some_entries_gets_zeros_elsewhere(scratch):
    """Without ``grad_fills_rows``, lossforge clears the gradient (fresh or ``grad_out``) before
    a row-wise formula writes it; the built-ins that write every entry skip that pass."""
    spec = registry.register(registry.LossSpec(
        "first_entry", _fibre_sq, _first_entry_grad, params=(("k", 1.0),), kind="rowwise",
        prepare=registry.get("cosine_distance").prepare))
    assert not spec.grad_fills_rows
    y, p = np.zeros((3, 4)), np.ones((3, 4))
    want = np.zeros((3, 4))
    want[:, 0] = 1.0
    for grad_out in (None, np.full((3, 4), np.nan)):
        grad = spec.value_and_grad(y, p, reduction=Reduction.SUM, grad_out=grad_out, axis=1)[1]
        np.testing.assert_array_equal(grad, want)
    assert {s.name for s in registry.specs() if s.grad_fills_rows} == {
        "softmax_cross_entropy", "sparse_softmax_cross_entropy", "cosine_distance",
        "mean_pairwise_squared_error"}


@pytest.mark.parametrize("kind", ["elementwise", "rowwise", "rowwise_float32"])
def test_user_losses_specialize_parameters(scratch, kind):
    """A user's `Param.specialize` compiles kernels with the value as a constant (elementwise,
    row-wise, row-wise with float32 math), giving the general kernel's bits; other values, and
    -0.0 where 0.0 is specialized, take the general kernel."""
    if kind == "elementwise":
        options = dict(value=lambda y, p, k: k * (p - y) ** 2,
                       grad=lambda y, p, k: 2.0 * k * (p - y))
        call = {}
    else:
        options = dict(value=_fibre_sq, grad=_fibre_sq_grad, kind="rowwise",
                       prepare=registry.get("cosine_distance").prepare,
                       float32_math=kind == "rowwise_float32")
        call = {"axis": 1}
    spec = registry.register(registry.LossSpec(
        f"spec_{kind}", params=(lossforge.Param("k", 1.0, specialize=(3.0, 0.0)),), **options))
    general = registry.LossSpec(f"spec_{kind}", params=(lossforge.Param("k", 1.0),), **options)
    rng = np.random.default_rng(2)
    y, p = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    for dtype in (np.float32, np.float64):
        for k in (3.0, 0.0, -0.0, 1.5):
            for reduction in (Reduction.NONE, Reduction.SUM):
                args = (y.astype(dtype), p.astype(dtype), 1.0, reduction)
                fast = spec.value_and_grad(*args, k=k, **call)
                slow = general.value_and_grad(*args, k=k, **call)
                for a, b in zip(fast, slow):  # the bits: -0.0 is not 0.0 here
                    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
                if k != 0:
                    assert np.any(fast[1] != 0)
    assert set(spec.__dict__["_cpu_kernels_by_constants"]) == {((0, 3.0),), ((0, 0.0),), ()}


def test_fingerprint_follows_the_formula_and_its_helpers():
    def make(c):
        return registry.LossSpec("fp", lambda y, p: c * (p - y))

    assert make(1.0).fingerprint == make(1.0).fingerprint
    assert make(1.0).fingerprint != make(2.0).fingerprint  # closure contents count
    a = registry.LossSpec("fp", lambda y, p: abs(p - y))
    b = registry.LossSpec("fp", lambda y, p: abs(y - p))
    assert a.fingerprint != b.fingerprint
    assert registry.get("huber_loss").fingerprint == registry.get("huber_loss").fingerprint


def test_every_registered_loss_works_with_every_reduction():
    rng = np.random.default_rng(0)
    for spec in registry.specs():
        y, p, kw = spec.example_inputs(rng)
        none = spec(y, p, reduction=Reduction.NONE, **kw)
        for r in Reduction.all()[1:]:
            value = spec(y, p, reduction=r, **kw)
            assert np.isfinite(value), (spec.name, r)
        assert spec(y, p, reduction=Reduction.SUM, **kw) == pytest.approx(np.sum(none), rel=1e-12)


def _run(code, env_extra):
    env = dict(os.environ, **env_extra)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_plugins_load_from_entry_points_and_a_broken_one_only_warns(tmp_path):
    """A real installed distribution (a .dist-info on sys.path) with two entry points."""
    (tmp_path / "lf_plugin").mkdir()
    (tmp_path / "lf_plugin" / "__init__.py").write_text(textwrap.dedent("""
        import math
        from lossforge.registry import LossSpec
        cube = LossSpec("plugin_cube", lambda y, p: (p - y) ** 3,
                        grad=lambda y, p: 3.0 * (p - y) ** 2)
    """))
    (tmp_path / "lf_broken.py").write_text("raise ImportError('this plugin is broken')\n")
    info = tmp_path / "lf_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lf-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[lossforge.losses]\ncube = lf_plugin:cube\nbroken = lf_broken:spec\n")
    got, stderr = _run("""
        import json, warnings
        import lossforge
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec = lossforge.registry.get("plugin_cube")
            value = float(spec([0.0, 0.0], [1.0, 2.0], reduction="weighted_sum"))
            mse = float(lossforge.registry.get("mse")([0.0], [2.0]))
        print(json.dumps({"value": value, "mse": mse,
                          "warnings": [str(w.message) for w in caught]}))
    """, {"PYTHONPATH": str(tmp_path)})
    assert got["value"] == 9.0 and got["mse"] == 4.0
    assert len(got["warnings"]) == 1
    assert "'broken'" in got["warnings"][0] and "this plugin is broken" in got["warnings"][0]


def test_user_losses_defined_in_main_are_cached_across_processes(tmp_path):
    code = """
        import json, math, numpy as np, lossforge
        from lossforge import kernels
        @lossforge.register_loss("main_loss")
        def main_loss(y, p):
            return math.sqrt(1.0 + (p - y) ** 2)
        spec = lossforge.registry.get("main_loss")
        v = float(spec(np.zeros(4), np.arange(4.0)))
        k = kernels.loss_kernels(spec)
        print(json.dumps({"v": v, "hits": sum(k.serial_reduce._cache_hits.values())}))
    """
    env = {"LOSSFORGE_CACHE_DIR": str(tmp_path)}
    first, _ = _run(code, env)
    second, _ = _run(code, env)
    assert first["v"] == second["v"] == pytest.approx(np.mean(np.sqrt(1 + np.arange(4.0) ** 2)))
    assert (first["hits"], second["hits"]) == (0, 1)


def test_a_used_spec_pickles_without_its_compiled_kernels():
    import pickle
    spec = lossforge.registry.get("mean_squared_error")
    assert spec([0.0, 1.0], [1.0, 1.0]) == 0.5  # compiles and caches the kernels on the spec
    clone = pickle.loads(pickle.dumps(spec))
    assert "_cpu_kernels" not in vars(clone) and "_cpu_kernels" in vars(spec)
    assert clone([0.0, 1.0], [1.0, 3.0]) == pytest.approx(2.5)
