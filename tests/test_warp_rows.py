"""Row formulas shared by a warp of 32 lanes (lossforge.kernels.warp), emulated without a GPU.

The CUDA kernel of a row-wise loss whose formulas loop with ``row_range`` runs a warp per row:
each lane visits every 32nd entry and ``across_lanes_sum``/``across_lanes_max`` combine the
lanes' partial results with ``shfl_xor`` exchanges. The simulator runs the formulas' CPU form
(it has no shuffles), so this test runs the formulas' Python source, and warp.py's own
``lane_range``/``lanes_sum``/``lanes_max`` source, in 32 Python threads whose ``cuda`` is a
stand-in: ``threadIdx.x`` is the thread's lane and ``shfl_xor_sync`` exchanges values through
a barrier, as a warp does. Checked for every built-in row-wise loss (and its options'
formulas): each lane returns the same bits (the kernel keeps lane 0's), and the loss and the
gradient the lanes write together agree with the formulas' one-lane (CPU) form. A missing
reduction or a term added in every lane would be off by up to 32x. Also warp.py's
``row_logsumexp32`` (float32 kernels' log-sum-exp) against the formulas'.

On a GPU, tests/test_cuda_gpu.py checks the compiled kernels against the CPU path.
"""
import threading
import types

import numpy as np
import pytest

from lossforge import formulas, registry

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed (pip install 'lossforge[cuda]')")
from lossforge.kernels import warp  # noqa: E402  (imports numba.cuda)

LANES = warp.LANES


class _Warp:
    """``cuda`` as warp.py's functions see it, for 32 Python threads running one row."""

    def __init__(self):
        self._barrier = threading.Barrier(LANES, timeout=60)
        self._slots = [None] * LANES
        self._local = threading.local()

    def run(self, lane: int, call):
        self._local.lane = lane
        return call()

    @property
    def threadIdx(self):  # noqa: N802 (numba's name)
        return types.SimpleNamespace(x=self._local.lane)

    def shfl_xor_sync(self, mask, value, offset):
        assert mask == 0xFFFFFFFF
        lane = self._local.lane
        self._slots[lane] = value
        self._barrier.wait()
        other = self._slots[lane ^ offset]
        self._barrier.wait()  # every lane has read before the next exchange writes
        return other


def _python(fn, namespace):
    """``fn``'s plain-Python source bound to ``namespace``."""
    fn = getattr(fn, "py_func", fn)
    return types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)


_REPLACED = ("row_range", "across_lanes_sum", "across_lanes_max")


def _warp_formulas(cuda_stand_in):
    """lossforge.formulas with warp.py's row_range/across_lanes_* (their Python source on the
    stand-in ``cuda``): a namespace in which every function is re-bound."""
    warp_namespace = dict(vars(warp), cuda=cuda_stand_in)
    namespace = dict(vars(formulas))
    namespace["row_range"] = _python(warp.lane_range, warp_namespace)
    namespace["across_lanes_sum"] = _python(warp.lanes_sum, warp_namespace)
    namespace["across_lanes_max"] = _python(warp.lanes_max, warp_namespace)
    for name, value in vars(formulas).items():
        if isinstance(value, types.FunctionType) and name not in _REPLACED:
            namespace[name] = _python(value, namespace)
    return namespace


def _on_a_warp(name, args, namespace_of=None):
    """``name(*args)`` in 32 threads at once, each a lane of one warp, ``name`` taken from
    ``namespace_of(cuda_stand_in)`` (default: `_warp_formulas`); the 32 results."""
    cuda_stand_in = _Warp()
    lane_fn = (namespace_of or _warp_formulas)(cuda_stand_in)[name]
    results, errors = [None] * LANES, []

    def lane_main(lane):
        try:
            with np.errstate(invalid="ignore"):  # (-inf - -inf is NaN: the formulas carry it)
                results[lane] = cuda_stand_in.run(lane, lambda: lane_fn(*args))
        except BaseException as exc:  # reported below; abort() unblocks the other lanes
            errors.append(exc)
            cuda_stand_in._barrier.abort()

    threads = [threading.Thread(target=lane_main, args=(lane,)) for lane in range(LANES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _same_bits(values) -> bool:
    first = np.float64(values[0])
    return all(np.array_equal(np.float64(v), first, equal_nan=True) and
               np.signbit(np.float64(v)) == np.signbit(first) for v in values)


def _shared_row_specs():
    specs = []
    for spec in registry.specs():
        for candidate in (spec, getattr(spec, "extended", None)):
            if candidate is not None and registry.shares_rows(candidate):
                specs.append(candidate)
    return specs


_SPECS = _shared_row_specs()


def test_the_built_in_row_losses_share_their_rows():
    names = {spec.name for spec in _SPECS}
    assert {"softmax_cross_entropy", "sparse_softmax_cross_entropy", "cosine_distance",
            "mean_pairwise_squared_error"} <= names
    for spec in registry.specs():
        if spec.kind == "elementwise":
            assert not registry.shares_rows(spec)


def test_a_row_formula_with_plain_loops_keeps_one_thread_per_row():
    def row_total(y, p, j):
        s = 0.0
        for k in range(p.shape[1]):
            s += p[j, k] * y[j, k]
        return s

    spec = registry.LossSpec("plain_row_test", row_total, kind="rowwise",
                             prepare=registry.get("cosine_distance").prepare)
    assert not registry.shares_rows(spec)


def _cases(spec, rng, classes):
    labels, predictions, kwargs = spec.example_inputs(rng, 6, classes)
    params = dict(kwargs)
    names = [p.name for p in spec.params]
    yield "example", labels, predictions, params
    if "label_smoothing" in names:
        yield "label smoothing 0.1", labels, predictions, dict(params, label_smoothing=0.1)
    if np.asarray(predictions).ndim == 2 and spec.name != "mean_pairwise_squared_error":
        extreme = np.array(predictions, dtype=np.float64)
        extreme[1, 0] = np.nan
        extreme[2, :] = -np.inf
        extreme[3, 1] = 1e4
        yield "NaN, -inf and large logits", labels, extreme, params


@pytest.mark.parametrize("classes", [5, 70])
@pytest.mark.parametrize("spec", _SPECS, ids=lambda s: f"{s.name}:{s.value.__name__}")
def test_a_warp_computes_a_row_as_one_lane_does(spec, classes):
    rng = np.random.default_rng(classes)
    for case, labels, predictions, kwargs in _cases(spec, rng, classes):
        prepared, params = spec._prepare(labels, predictions, 1.0, dict(kwargs))
        y, p = prepared.y, prepared.p
        rows = int(np.prod(prepared.loss_shape))
        for j in range(rows):
            where = f"{case}, row {j}"
            values = _on_a_warp(spec.value.__name__, (y, p, j, *params))
            assert _same_bits(values), f"{where}: lanes disagree: {set(map(float, values))}"
            one_lane = spec.value(y, p, j, *params)
            np.testing.assert_allclose(values[0], one_lane, rtol=1e-12, atol=1e-12,
                                       err_msg=where)
            for role in ("grad", "fused_grad"):
                fn = getattr(spec, role)
                if fn is None:
                    continue
                expected = np.zeros(p.shape)
                returned = fn(y, p, j, 0.5, expected, *params)
                shared = np.zeros(p.shape)
                results = _on_a_warp(fn.__name__, (y, p, j, 0.5, shared, *params))
                np.testing.assert_allclose(shared, expected, rtol=1e-12, atol=1e-12,
                                           err_msg=f"{where}: {role}")
                if role == "fused_grad":
                    assert _same_bits(results), f"{where}: {role}: lanes disagree"
                    np.testing.assert_allclose(results[0], returned, rtol=1e-12, atol=1e-12,
                                               err_msg=f"{where}: {role}")


def _warp_module(cuda_stand_in):
    """warp.py's namespace with the formulas' row helpers in their warp form."""
    shared = _warp_formulas(cuda_stand_in)
    namespace = dict(vars(warp))
    for name in ("row_range", "across_lanes_sum", "_row_max"):
        namespace[name] = shared[name]
    namespace["row_logsumexp32"] = _python(warp.row_logsumexp32, namespace)
    return namespace


@pytest.mark.parametrize("width", [1, 5, 33, 1000])
def test_the_float32_row_logsumexp_of_a_warp_is_the_formulas(width):
    # row_logsumexp32 replaces formulas._row_logsumexp in float32 CUDA kernels (its exps are
    # float32 on a GPU; here numba's float32() casts and Python's float64 exps)
    rng = np.random.default_rng(width)
    rows = [(3 * rng.normal(size=width)).astype(np.float32),
            np.full(width, -np.inf, np.float32), np.full(width, 7.0, np.float32)]
    if width > 1:
        nan_row = rows[0].copy()
        nan_row[width // 2] = np.nan
        rows.append(nan_row)
    for row in rows:
        results = _on_a_warp("row_logsumexp32", (row,), _warp_module)
        assert _same_bits([m for m, _ in results]) and _same_bits([s for _, s in results])
        m, lse = formulas._row_logsumexp(row)
        np.testing.assert_allclose(results[0], (m, lse), rtol=1e-6, atol=1e-7,
                                   err_msg=str(row[:4]))
