"""The small-call fast path (`compute.run_small`, used by `LossSpec.__call__`, the TF-v1
functions and `Objective`) gives the general path's results bit for bit, raises its errors,
and keeps no stale plan when dtypes, shapes, weights, reductions or parameters change."""
import concurrent.futures as cf
import pickle
from types import MappingProxyType

import numpy as np
import pytest

import lossforge
from lossforge import Reduction, compute, registry
from lossforge.builtins import WEIGHTED_INPUT
from lossforge.errors import InvalidArgumentError, InvalidTypeError
from lossforge.objective.objective import Component, ObjectiveResult, _component
from lossforge.reduction import LossState, make_state, resolve_reduction

SCALAR = (Reduction.SUM, Reduction.MEAN, Reduction.SUM_OVER_BATCH_SIZE,
          Reduction.SUM_BY_NONZERO_WEIGHTS)
ELEMENTWISE = sorted((s for s in registry.specs() if s.prepare is registry.prepare_elementwise),
                     key=lambda s: s.name) + [WEIGHTED_INPUT]


@pytest.fixture(autouse=True)
def kernels_loaded():
    """The fast path starts once the general path has imported the kernels: make sure it has."""
    registry.get("mean_squared_error")(np.zeros(2), np.ones(2))
    assert compute._kernels_module is not None


def general(spec, labels, predictions, weights=1.0, reduction=None, device="cpu", **params):
    """What `LossSpec.__call__` computed before the fast path: `prepare`, then `run`."""
    reduction = spec.reduction if reduction is None else resolve_reduction(reduction)
    prepared, kernel_params = compute.prepare(spec, labels, predictions, weights, params, device)
    return compute.run(spec, prepared, kernel_params, reduction, device=device)[0]


def same(a, b) -> bool:
    """Same type, dtype, shape and bytes (so -0.0 != 0.0 and NaN payloads count)."""
    return (type(a) is type(b) and np.asarray(a).dtype == np.asarray(b).dtype and
            np.shape(a) == np.shape(b) and np.asarray(a).tobytes() == np.asarray(b).tobytes())


def fast_taken(spec, labels, predictions, weights=1.0, reduction=None) -> bool:
    scalar = compute.SCALAR_REDUCTIONS[spec.reduction if reduction is None else reduction]
    return compute.run_small(spec, labels, predictions, weights, scalar,
                             spec.resolve_call({})[0]) is not None


def inputs(spec, shape=(8, 5), seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    y, p, _ = spec.example_inputs(rng, *shape)
    return y.astype(dtype), p.astype(dtype)


# --- bit-identical to the general path --------------------------------------------------------

@pytest.mark.parametrize("spec", ELEMENTWISE, ids=lambda s: s.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_elementwise_loss_and_scalar_reduction_matches_the_general_path(spec, dtype):
    y, p = inputs(spec, dtype=dtype)
    rng = np.random.default_rng(1)
    assert fast_taken(spec, y, p)
    for weights in (1.0, 2.5, 0.0, -0.0, float("nan"), rng.uniform(size=(8, 1)),
                    rng.uniform(size=(8, 5)).astype(dtype), np.float32(3.0), 2):
        for reduction in SCALAR:
            got = spec(y, p, weights, reduction)
            assert same(got, general(spec, y, p, weights, reduction)), (weights, reduction)
            assert got.dtype == dtype


@pytest.mark.parametrize("name", ["mean_squared_error", "log_loss", "hinge_loss"])
def test_dtypes_shapes_and_layouts_match_the_general_path(name):
    spec = registry.get(name)
    base_y, base_p = inputs(spec, shape=(6, 4))
    cases = {
        "float16": (base_y.astype(np.float16), base_p.astype(np.float16)),
        "int32 labels": (base_y.round().astype(np.int32), base_p.astype(np.float32)),
        "bool labels": (base_y > 0.5, base_p.astype(np.float32)),
        "f32 labels, f64 predictions": (base_y.astype(np.float32), base_p),
        "f64 labels, f32 predictions": (base_y, base_p.astype(np.float32)),
        "big-endian": (base_y.astype(">f4"), base_p.astype(">f4")),
        "transposed": (base_y.astype(np.float32).T, base_p.astype(np.float32).T),
        "strided": (base_y.astype(np.float32)[::2], base_p.astype(np.float32)[::2]),
        "fortran": (np.asfortranarray(base_y), np.asfortranarray(base_p)),
        "0-d": (base_y.astype(np.float32)[0, 0], base_p.astype(np.float32)[0, 0]),
        "1-d": (base_y.ravel(), base_p.ravel()),
        "3-d": (base_y.reshape(2, 3, 4), base_p.reshape(2, 3, 4)),
        "read-only": tuple(np.lib.stride_tricks.as_strided(a, writeable=False)
                           for a in (base_y, base_p)),
        "lists": (base_y.tolist(), base_p.tolist()),
    }
    for case, (y, p) in cases.items():
        y, p = (np.asarray(a) if case == "0-d" else a for a in (y, p))
        for reduction in SCALAR + (Reduction.NONE, "weighted_mean", "weighted_sum"):
            for weights in (1.0, 0.5, np.ones(np.shape(y)[:1] + (1,) * (np.ndim(y) - 1))):
                if np.ndim(y) == 0 and np.ndim(weights):
                    continue
                got = spec(y, p, weights, reduction)
                assert same(got, general(spec, y, p, weights, reduction)), (case, reduction)


def test_a_plan_is_not_reused_across_dtypes_shapes_and_weights():
    spec = registry.get("mean_squared_error")
    rng = np.random.default_rng(2)
    y64, p64 = rng.normal(size=(2, 7, 3)), rng.normal(size=(2, 7, 3))
    sequence = [(y64.astype(np.float32), p64.astype(np.float32), 1.0),
                (y64, p64, 1.0),
                (y64.astype(np.float32), p64, 1.0),
                (y64[0], p64[0], 1.0),
                (y64.astype(np.float16), p64.astype(np.float16), 1.0),
                (y64.astype(np.float32), p64.astype(np.float32), 0.25),
                (y64.astype(np.float32), p64.astype(np.float32), np.float64(0.25)),
                (y64, p64, rng.uniform(size=(2, 1, 3))),
                (y64.astype(np.float32), p64.astype(np.float32), -0.0)]
    for _ in range(2):  # the second round meets every cached plan again
        for y, p, w in sequence:
            for reduction in SCALAR:
                assert same(spec(y, p, w, reduction), general(spec, y, p, w, reduction))


def test_nan_and_inf_propagate_as_in_the_general_path():
    spec = registry.get("mean_squared_error")
    y = np.zeros((4, 3), np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        p = np.ones((4, 3), np.float32)
        p[1, 2] = bad
        for reduction in SCALAR:
            for weights in (1.0, 0.0, np.float32([[1.0], [0.0], [1.0], [1.0]])):
                got = spec(y, p, weights, reduction)
                assert same(got, general(spec, y, p, weights, reduction))


def test_zero_weights_give_the_general_paths_zeros():
    spec = registry.get("mean_squared_error")
    y, p = np.zeros((3, 2), np.float32), np.ones((3, 2), np.float32)
    for weights in (0.0, -0.0):
        for reduction in SCALAR:
            got = spec(y, p, weights, reduction)
            assert same(got, general(spec, y, p, weights, reduction))
    assert spec(y, p, -0.0, Reduction.SUM_BY_NONZERO_WEIGHTS) == 0  # div_no_nan


def test_a_weight_that_overflows_the_kernel_dtype_warns_on_every_call_as_before():
    import warnings
    spec = registry.get("mean_squared_error")
    y, p = np.zeros((3, 2), np.float32), np.ones((3, 2), np.float32)
    for weights in (1e300, 1e300, float("inf"), 1e-60):
        with warnings.catch_warnings(record=True) as fast:
            warnings.simplefilter("always")
            got = spec(y, p, weights, Reduction.SUM)
        with warnings.catch_warnings(record=True) as slow:
            warnings.simplefilter("always")
            want = general(spec, y, p, weights, Reduction.SUM)
        assert same(got, want)
        assert [str(w.message) for w in fast] == [str(w.message) for w in slow], weights


def test_parameters_are_cached_by_value_and_type_never_across_them():
    spec = registry.get("huber_loss")
    y, p = inputs(spec, dtype=np.float32)
    p = p * 3
    for delta in (1.0, 0.5, 1.0, 0.0, -0.0, float("nan"), 2, np.float32(0.5), np.float64(0.5),
                  0.5):
        assert same(spec(y, p, delta=delta), general(spec, y, p, delta=delta)), delta
    with pytest.raises(InvalidTypeError, match="got a bool"):
        spec(y, p, delta=True)  # True == 1.0, whose plan is cached: it must still be refused
    spec(y, p, delta=1.0)
    with pytest.raises(InvalidTypeError, match="got a bool"):
        spec(y, p, delta=True)
    with pytest.raises(InvalidTypeError, match="unexpected argument"):
        spec(y, p, delta=1.0, bogus=1.0)
    with pytest.raises(InvalidTypeError, match="not a string"):
        spec(y, p, delta="1.0")


def test_the_tf_functions_take_the_fast_path_and_match():
    y, p = inputs(registry.get("log_loss"), dtype=np.float32)
    for reduction in SCALAR:
        want = general(registry.get("log_loss"), y, p, 1.0, reduction, epsilon=1e-7)
        assert same(lossforge.losses.log_loss(y, p, reduction=reduction), want)
    with lossforge.LossCollection() as collection:  # still collected, under the same name
        value = lossforge.losses.mean_squared_error(y, p, scope="s")
        lossforge.losses.log_loss(y, p)
    assert [(e.name, e.value) for e in collection.items()] == [
        ("s/value", value), ("log_loss/value", lossforge.losses.log_loss(y, p))]


def test_inputs_for_the_parallel_kernels_take_the_general_path(monkeypatch):
    from lossforge import kernels
    spec = registry.get("mean_squared_error")
    y, p = inputs(spec, shape=(50, 40), dtype=np.float32)
    small = spec(y, p)
    monkeypatch.setattr(kernels, "PARALLEL_THRESHOLD", 1000)
    assert not fast_taken(spec, y, p)
    assert spec(y, p) == pytest.approx(small, rel=1e-6)
    assert same(spec(y, p), general(spec, y, p))


def test_custom_losses_and_replaced_params_get_fresh_plans():
    import math

    def cubic(y, p, a):
        return a * (p - y) ** 2 + math.fabs(p - y)
    spec = registry.LossSpec("fast_path_cubic", cubic, params=(registry.Param("a", 1.0),))
    y, p = inputs(registry.get("mean_squared_error"), dtype=np.float32)
    first = spec(y, p)
    assert same(first, general(spec, y, p))
    spec.params = (registry.Param("a", 3.0),)  # a new default: the cached plan must not serve it
    assert same(spec(y, p), general(spec, y, p))
    assert spec(y, p) != first
    huber = registry.get("huber_loss")
    huber(y, p, delta=0.5)
    assert "_params_cache" in huber.__dict__  # a process-local cache: not pickled
    assert "_params_cache" not in pickle.loads(pickle.dumps(huber)).__dict__


# --- errors after good calls -------------------------------------------------------------------

def _error(fn, *args, **kwargs):
    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    return type(info.value), str(info.value)


def test_bad_input_after_a_good_call_raises_the_general_paths_errors():
    spec = registry.get("mean_squared_error")
    y, p = inputs(spec, dtype=np.float32)
    good = spec(y, p)
    bad_calls = [
        ((y, p[:, :2]), {}),
        ((y, p[None]), {}),
        ((y.astype(str), p), {}),
        ((y, p.astype(complex)), {}),
        ((None, p), {}),
        ((y, p), {"weights": np.ones(8)}),
        ((y, p), {"weights": np.ones((8, 2))}),
        ((y, p), {"weights": None}),
        ((y, p), {"weights": "1"}),
        ((y, p), {"reduction": "mean"}),
        ((y, p), {"reduction": None, "device": "tpu"}),
        ((y, p), {"epsilon": 1e-7}),
        ((y, p[:, :2]), {"reduction": "bogus"}),  # the reduction is checked first
        ((y, p), {"weights": np.ones((8, 2)), "bogus": 1.0}),  # then the parameters
    ]
    for args, kwargs in bad_calls:
        got = _error(spec, *args, **kwargs)
        assert got[0] in (InvalidArgumentError, InvalidTypeError), (kwargs, got)
        assert got == _error(general, spec, *args, **kwargs), kwargs
        assert same(spec(y, p), good)  # and the next good call is unaffected


def test_the_callers_arrays_are_left_as_they_were():
    spec = registry.get("mean_squared_error")
    y, p = inputs(spec, dtype=np.float32)
    w = np.full((8, 1), 2.0, np.float32)
    copies = [a.copy() for a in (y, p, w)]
    spec(y, p, w)
    spec(y, p)
    for a, c in zip((y, p, w), copies):
        assert a.flags.writeable and a.flags.c_contiguous
        np.testing.assert_array_equal(a, c)
    y[0, 0] += 1.0  # still writeable, and a later call sees the new value
    assert same(spec(y, p), general(spec, y, p))
    for shape in ((5,), (), (1, 1)):  # (ravel() of these must be a view, never the array itself)
        y, p = np.zeros(shape, np.float32), np.ones(shape, np.float32)
        spec(y, p)
        assert y.flags.writeable and p.flags.writeable


def test_threads_mixing_dtypes_shapes_and_weights_match_serial_calls():
    spec = registry.get("log_loss")
    rng = np.random.default_rng(5)
    jobs = []
    for i in range(48):
        shape = [(64, 10), (7,), (3, 4, 5)][i % 3]
        dtype = [np.float32, np.float64, np.float16][i % 4 % 3]
        size = int(np.prod(shape))
        y, p, _ = spec.example_inputs(rng, size, 1)
        y, p = y.reshape(shape).astype(dtype), p.reshape(shape).astype(dtype)
        weights = [1.0, 0.5, rng.uniform(size=shape[:1] + (1,) * (len(shape) - 1))][i % 3]
        jobs.append((y, p, weights, SCALAR[i % 4], 1e-7 * (1 + i % 2)))
    want = [general(spec, y, p, w, r, epsilon=e) for y, p, w, r, e in jobs]
    for _ in range(3):
        with cf.ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(lambda j: spec(j[0], j[1], j[2], j[3], epsilon=j[4]), jobs * 4))
        assert all(same(g, w) for g, w in zip(got, want * 4))


# --- the objective ------------------------------------------------------------------------------

def _objective():
    return lossforge.load_objective({"name": "fp", "terms": {
        "click": {"loss": "log_loss", "weight": 2.0,
                  "inputs": {"labels": "click", "predictions": "click_prob"}},
        "rating": {"loss": "mean_squared_error", "reduction": "weighted_mean",
                   "inputs": {"labels": "rating", "predictions": "rating_pred", "weights": "w"}},
        "hinge": {"loss": "hinge_loss", "params": {},
                  "inputs": {"labels": "click", "logits": "rating_pred"}},
        "ce": {"loss": "softmax_cross_entropy",
               "inputs": {"onehot_labels": "onehot", "logits": "rating_pred"}}},
        "regularization": {"l2": {"type": "l2", "scale": 1e-4, "params": ["w1"]}}})


def _batch(dtype, seed=0, rows=16):
    rng = np.random.default_rng(seed)
    return {"click": (rng.random((rows, 4)) > 0.5).astype(dtype),
            "click_prob": rng.uniform(0.05, 0.95, (rows, 4)).astype(dtype),
            "rating": rng.normal(size=(rows, 4)).astype(dtype),
            "rating_pred": rng.normal(size=(rows, 4)).astype(dtype),
            "w": rng.uniform(size=(rows, 1)).astype(dtype),
            "onehot": np.eye(4, dtype=dtype)[rng.integers(0, 4, rows)]}


def _same_results(a: ObjectiveResult, b: ObjectiveResult) -> bool:
    return (same(a.total, b.total) and list(a.components) == list(b.components) and
            all(a[k] == b[k] and same(a[k].value, b[k].value) for k in a.components))


def test_objective_fast_path_matches_the_general_path():
    objective = _objective()
    params = {"w1": np.arange(6.0).reshape(2, 3)}
    for dtype in (np.float32, np.float64, np.float32, np.float16):
        for seed, rows in ((0, 16), (1, 3), (0, 16)):
            batch = _batch(dtype, seed, rows)
            fast = objective(batch, params)
            slow = objective(MappingProxyType(batch), params)  # not a dict: the general path
            assert _same_results(fast, slow), dtype
            assert fast["click"].dtype == np.dtype(dtype).name
            assert type(fast["click"].state) is LossState
    plans = objective._fast_plans  # the fast path ran for the elementwise terms, not for ce
    assert all(plans[name] for name in ("click", "rating", "hinge")) and plans["ce"] is False
    assert len(objective.tracker) == 24
    assert objective.tracker.mean("rating") == pytest.approx(
        sum(r["rating"] for r in objective.tracker.history()) / 24, rel=0.2)


def test_objective_errors_after_good_calls():
    objective = _objective()
    params = {"w1": np.ones((2, 3))}
    batch = _batch(np.float32)
    good = objective(batch, params)
    for change, error in (({"w": np.ones(16)}, "can not be broadcast"),
                          ({"rating_pred": np.ones((16, 3), np.float32)}, "incompatible"),
                          ({"click_prob": np.array([["a"] * 4] * 16)}, "real numbers")):
        bad = dict(batch, **change)
        with pytest.raises((InvalidArgumentError, InvalidTypeError), match=error) as fast:
            objective(bad, params)
        with pytest.raises(type(fast.value)) as slow:
            objective(MappingProxyType(bad), params)
        assert str(fast.value) == str(slow.value) and str(fast.value).startswith("objective 'fp'")
    missing = {k: v for k, v in batch.items() if k != "rating"}
    with pytest.raises(InvalidArgumentError, match="no key 'rating'"):
        objective(missing, params)
    assert _same_results(objective(batch, params), good)


def test_fast_constructors_build_equal_objects():
    state = make_state(1.5, 2.0, 3.0, 4)
    assert state == LossState(1.5, 2.0, 3.0, 4) and hash(state) == hash(LossState(1.5, 2.0, 3.0, 4))
    assert pickle.loads(pickle.dumps(state)) == state and repr(state) == repr(LossState(1.5, 2.0, 3.0, 4))
    with pytest.raises(AttributeError):
        state.weight_sum = 1.0  # still frozen
    component = _component("a", 1.0, 2.0, 2.0, "term", state, Reduction.MEAN, "float32")
    assert component == Component("a", 1.0, 2.0, 2.0, "term", state, Reduction.MEAN, "float32")
    assert _component("r", 1.0, 1.0, 1.0, "regularizer") == Component("r", 1.0, 1.0, 1.0, "regularizer")
    result = _objective()(_batch(np.float32), {"w1": np.ones(3)})
    assert result == ObjectiveResult(result.total, result.components)
    assert _same_results(pickle.loads(pickle.dumps(result)), result)


# --- the objective's call plan and the regularizers' fast branch ---------------------------------

def test_objective_call_plan_follows_a_replaced_weighting_config_and_terms():
    import dataclasses

    from lossforge.objective.config import WeightingConfig
    from lossforge.objective.weighting import Static, make_weighting
    objective = _objective()
    params = {"w1": np.arange(6.0).reshape(2, 3), "log_var/click": 0.7, "log_var/rating": -0.3}
    batch = _batch(np.float32)

    def check():
        fast = objective(batch, params)
        assert _same_results(fast, objective(MappingProxyType(batch), params))
        return fast

    first = check()
    assert [first[t.name].weight for t in objective.config.terms] == [2.0, 1.0, 1.0, 1.0]
    objective.weighting = make_weighting(WeightingConfig("uncertainty"), objective.config.terms)
    result = check()  # a new weighting object: not the static plan's weights
    assert result["click"].weight == 2.0 * np.exp(-0.7) and "click/log_var" in result.components
    terms = tuple(dataclasses.replace(t, weight=t.weight * 3) for t in objective.config.terms)
    objective.weighting = Static(terms)
    assert check()["click"].weight == 6.0 and "click/log_var" not in check().components
    objective.weighting.terms = objective.config.terms  # the same Static, its terms replaced
    assert check()["click"].weight == 2.0
    objective.config = dataclasses.replace(objective.config, regularizers=())  # a new config
    assert "l2" not in check().components
    objective.weighting = make_weighting(WeightingConfig("dwa", 2.0), objective.config.terms)
    objective.tracker.reset()
    weights = set()
    for epoch in range(4):  # DWA's weights change with the tracker's epochs
        batch = _batch(np.float32, epoch)
        weights.add(check()["click"].weight)
        objective.tracker.end_epoch()
    assert len(weights) == 3  # 2.0 in epochs 0 and 1, then two others
    restored = pickle.loads(pickle.dumps(objective))  # the plan is not pickled: made again
    assert "_call_plan" not in restored.__dict__
    assert _same_results(restored(batch, params), objective(batch, params))


def _reference_regularizer(config, params) -> float:
    """`regularizer_value` in NumPy (`ndarray.sum`), as it was written before its fast
    branches."""
    total = 0.0
    for key in config.params:
        w = np.asarray(params[key]).astype(np.float64, copy=False)
        if config.scale_l1:
            total += config.scale_l1 * float(np.abs(w).sum())
        if config.scale_l2:
            total += config.scale_l2 * 0.5 * float((w * w).sum())
    return total


def test_regularizers_match_the_sum_and_leave_the_params_as_they_were():
    from lossforge.objective.config import RegularizerConfig
    from lossforge.objective.regularizers import regularizer_value
    rng = np.random.default_rng(7)
    base = rng.normal(scale=3.0, size=(17, 9))
    arrays = [base.astype(dtype) for dtype in (np.float32, np.float64, np.float16, ">f8")]
    arrays += [(base * 40).astype(np.int32), (base * 40).astype(np.int64), base > 0,
               base.astype(np.uint8), np.asfortranarray(base), base.T, base[::2, ::-3],
               base.astype(np.float32)[::-1], base.ravel(), rng.normal(size=(3, 4, 5)),
               rng.normal(size=1000), np.zeros((0, 3)), np.array([-0.0]), np.array(2.5),
               np.float32(1.5), 3, -2.5, [[1.0, 2.0], [3.0, 4.0]],
               np.array([1.0, np.nan]), np.array([np.inf, 1.0]), np.array([1e300, 1e300]),
               np.lib.stride_tricks.as_strided(base, writeable=False)]
    configs = [RegularizerConfig("r", "l2", ("a", "b"), 0.0, 1e-4),
               RegularizerConfig("r", "l1", ("a",), 0.3, 0.0),
               RegularizerConfig("r", "l1_l2", ("a", "b"), 0.01, 0.7)]
    for config in configs:
        for a in arrays:
            for params in ({"a": a, "b": arrays[0]}, MappingProxyType({"a": a, "b": a})):
                copies = {k: np.array(v, copy=True) for k, v in params.items()}
                flags = {k: v.flags.writeable for k, v in params.items()
                         if isinstance(v, np.ndarray)}
                with np.errstate(over="ignore"):
                    got = regularizer_value(config, params)
                    want = _reference_regularizer(config, params)
                # float64 sums either way, in another order (a compiled pass against NumPy's
                # pairwise sums): equal to float64 rounding
                assert type(got) is float, (config.name, a)
                assert got == pytest.approx(want, rel=1e-13, abs=0, nan_ok=True), (config.name, a)
                for k, v in params.items():  # untouched, flags included
                    np.testing.assert_array_equal(np.asarray(v), copies[k])
                    if k in flags:
                        assert v.flags.writeable == flags[k]
    l2 = configs[0]
    w = np.ones((4, 4), np.float32)
    params = {"a": w, "b": w}
    assert regularizer_value(l2, params) == 1e-4 * 16
    w *= 3  # changed in place between calls: no value is kept from the last call
    assert regularizer_value(l2, params) == 1e-4 * 0.5 * 9 * 32
    for bad, error in (({"a": w}, "needs the parameter array 'b'"),
                       (None, "needs the parameter"), ([w, w], "must be a mapping"),
                       ({"a": w, "b": np.array(["x"])}, "real numbers"),
                       ({"a": w, "b": None}, "must not be None")):
        with pytest.raises((InvalidArgumentError, InvalidTypeError), match=error):
            regularizer_value(l2, bad)
