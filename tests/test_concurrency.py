"""Concurrency and state (issue 7): objectives from threads and processes, exact trackers,
collection scopes, registration from threads, broken plugins and formulas, kernel caches.

Covered elsewhere and not repeated: processes compiling one fresh cache directory at once
(test_kernels.test_processes_compiling_one_cache_at_once_get_the_right_numbers), the unwritable
cache directory's single warning (test_kernels.test_unwritable_cache_directory_falls_back_...),
per-thread and per-task collections (test_collection), one LossCollection entered by many
threads (test_fuzz.test_one_loss_collection_entered_from_many_threads).
"""
import asyncio
import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import lossforge
from lossforge import LossCollection, registry
from lossforge.errors import FormulaError
from lossforge.objective import Tracker

L = lossforge.losses
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = {
    "name": "concurrent",
    "terms": {
        "scene": {"loss": "softmax_cross_entropy", "weight": 2.0, "params": {"label_smoothing": 0.1},
                  "inputs": {"onehot_labels": "onehot", "logits": "logits"}},
        "depth": {"loss": "huber_loss", "params": {"delta": 0.5}, "reduction": "weighted_mean",
                  "inputs": {"labels": "depth", "predictions": "depth_pred", "weights": "mask"}},
        "pose": {"loss": "cosine_distance", "params": {"axis": -1},
                 "inputs": {"labels": "pose", "predictions": "pose_pred"}},
        "cls": {"loss": "sparse_softmax_cross_entropy",
                "params": {"ignore_index": -1, "label_smoothing": 0.05},
                "inputs": {"labels": "cls", "logits": "logits"}},
    },
    "regularization": {"l2": {"type": "l2", "scale": 1e-3, "params": ["w"]}},
    "weighting": "uncertainty",
}


def _batch(seed, rows=16):
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 5, size=rows)
    cls[0] = -1
    pose = rng.normal(size=(rows, 3))
    return ({"onehot": np.eye(5)[np.maximum(cls, 0)], "logits": 3 * rng.normal(size=(rows, 5)),
             "depth": rng.uniform(0, 5, size=(rows, 7)),
             "depth_pred": rng.uniform(0, 5, size=(rows, 7)).astype(np.float32),
             "mask": (rng.random((rows, 7)) > 0.2).astype(np.float32),
             "pose": pose / np.linalg.norm(pose, axis=1, keepdims=True),
             "pose_pred": rng.normal(size=(rows, 3)), "cls": cls},
            {"w": rng.normal(size=(8, 4)), "log_var/scene": 0.3 * rng.normal(),
             "log_var/depth": 0.3 * rng.normal()})


def _call(objective, batch, params, with_grad):
    if with_grad:
        result, grads = objective.value_and_grad(batch, params)
        return result, grads
    return objective(batch, params), None


def _same(a, b):
    ra, ga = a
    rb, gb = b
    assert ra.as_dict() == rb.as_dict()
    assert (ga is None) == (gb is None)
    if ga is not None:
        assert ga.keys() == gb.keys()
        for k in ga:
            np.testing.assert_array_equal(ga[k], gb[k])


def test_one_objective_from_eight_threads_matches_serial_calls():
    """8 threads share one Objective: every result (and gradient) is bit-identical to a serial
    call's; the tracker holds each call exactly once, with unique steps, and its pooled means
    equal the serial objective's."""
    calls = [(*_batch(seed), seed % 3 == 0) for seed in range(96)]
    serial_objective = lossforge.load_objective(CONFIG)
    serial = [_call(serial_objective, *c) for c in calls]

    shared = lossforge.load_objective(CONFIG)
    got = [None] * len(calls)
    errors = []
    barrier = threading.Barrier(8)

    def work(worker):
        try:
            barrier.wait()
            for i in range(worker, len(calls), 8):
                got[i] = _call(shared, *calls[i])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for a, b in zip(got, serial):
        _same(a, b)
    records = shared.tracker._select()
    assert len(records) == len(calls) == len(shared.tracker)
    assert sorted(step for step, _, _ in records) == list(range(len(calls)))
    assert {id(r) for _, _, r in records} == {id(r) for r, _ in got}  # each result once
    for name in ("total", "scene", "depth", "pose", "cls", "l2", "scene/log_var"):
        assert shared.tracker.mean(name) == pytest.approx(serial_objective.tracker.mean(name),
                                                          rel=1e-12)


def _process_call(objective, batch, params):
    return objective(batch, params), os.getpid()


def test_objective_from_process_pool_matches_serial_calls():
    """An Objective and its results pickle (by config; losses looked up again by name), so a
    concurrent.futures process pool gives the serial numbers."""
    objective = lossforge.load_objective(CONFIG)
    calls = [_batch(seed) for seed in range(6)]
    serial = [objective(*c) for c in calls]
    context = multiprocessing.get_context("spawn")  # no fork of a process with numba threads
    with cf.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        futures = [pool.submit(_process_call, objective, *c) for c in calls]
        results = [f.result(timeout=600) for f in futures]
    assert {pid for _, pid in results} - {os.getpid()}
    for (got, _), want in zip(results, serial):
        assert got.as_dict() == want.as_dict()
        assert got["depth"].state == want["depth"].state
    copy = pickle.loads(pickle.dumps(objective))
    assert len(copy.tracker) == len(objective.tracker) == len(calls)
    assert copy(*calls[0]).as_dict() == serial[0].as_dict() and len(copy.tracker) == 7


def test_tracker_under_concurrent_records_and_reads():
    """Writers and readers at once: no record lost or doubled, steps unique, reads consistent."""
    tracker = Tracker()
    objective = lossforge.load_objective({"terms": {"a": {"loss": "mse", "inputs": {
        "labels": "y", "predictions": "p"}}}})
    results = [objective({"y": np.zeros(3), "p": np.full(3, float(i))}) for i in range(50)]
    stop = threading.Event()
    errors = []

    def write(k):
        for r in results:
            tracker.record(r)

    def read():
        try:
            while not stop.is_set():
                n = len(tracker)
                if n:
                    assert math.isfinite(tracker.mean("a"))
                    assert len(tracker.history()) >= n
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
    steps = [s for s, _, _ in tracker._select()]
    assert sorted(steps) == list(range(400))
    assert tracker.mean("a") == pytest.approx(np.mean([i * i for i in range(50)]), rel=1e-12)


# --- LossCollection scopes --------------------------------------------------------------------

def test_threads_started_inside_a_scope_do_not_collect_into_it():
    seen = {}
    with LossCollection() as outer:
        def work():
            L.mean_squared_error([0.0], [1.0])  # no block of its own: nothing collected
            seen["active"] = lossforge.collection.active_collection()
            with LossCollection() as inner:
                L.absolute_difference([0.0], [2.0])
            seen["inner"] = len(inner)
        t = threading.Thread(target=work)
        t.start()
        t.join()
        L.absolute_difference([0.0], [3.0])
    assert seen == {"active": None, "inner": 1}
    assert outer.get_losses() == [3.0]


def test_pool_threads_keep_no_scope_between_tasks():
    def task(k):
        before = lossforge.collection.active_collection()
        if k % 2:
            with LossCollection() as c:
                L.absolute_difference([0.0], [float(k)])
            return before, len(c)
        try:
            with LossCollection():
                raise RuntimeError("fails inside the block")
        except RuntimeError:
            pass
        return before, 0

    with cf.ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(task, range(60)))
    assert all(before is None for before, _ in results)
    assert [n for _, n in results] == [k % 2 for k in range(60)]


def test_asyncio_tasks_interleaving_nested_scopes():
    """Tasks enter and leave nested scopes across awaits in interleaved order; each sees only its
    own; a task created inside a scope collects into it (its context is a copy), siblings never."""
    async def task(k):
        with LossCollection() as outer:
            L.absolute_difference([0.0], [float(k)])
            await asyncio.sleep(0)
            with LossCollection() as inner:
                await asyncio.sleep(0)
                L.absolute_difference([0.0], [10.0 * k])
                await asyncio.sleep(0)
            L.absolute_difference([0.0], [float(k)])
            await asyncio.sleep(0)
            assert lossforge.collection.active_collection() is outer
        assert lossforge.collection.active_collection() is None
        return outer.get_losses(), inner.get_losses()

    async def child():
        L.absolute_difference([0.0], [7.0])

    async def main():
        results = await asyncio.gather(*(task(k) for k in range(6)))
        with LossCollection() as parent:
            await asyncio.create_task(child())
        return results, parent.get_losses()

    results, parent = asyncio.run(main())
    assert results == [([float(k), float(k)], [10.0 * k]) for k in range(6)]
    assert parent == [7.0]


# --- registry from threads --------------------------------------------------------------------

@pytest.fixture
def scratch():
    before = set(registry.names())
    yield
    for name in set(registry.names()) - before:
        registry.unregister(name)


def _scaled(scale):
    return lambda y, p: scale * abs(p - y)


def _constant(value):
    return lambda y, p: value + 0.0 * (p - y)


def test_registering_from_many_threads(scratch):
    """8 threads register 25 losses each while others look losses up; then 8 threads race for one
    name: exactly one wins, the others get 'already registered'."""
    errors, barrier = [], threading.Barrier(10)

    def register(t):
        try:
            barrier.wait()
            for i in range(25):
                scale = float(t * 100 + i)
                lossforge.register_loss(f"thread_{t}_{i}", aliases=(f"thread_alias_{t}_{i}",))(
                    _scaled(scale))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    def look_up():
        try:
            barrier.wait()
            for _ in range(200):
                names = registry.names(include_aliases=True)
                assert len(names) == len(set(names))
                registry.get("mse")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(t,)) for t in range(8)]
    threads += [threading.Thread(target=look_up) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for t in range(8):
        for i in range(25):
            assert registry.get(f"thread_alias_{t}_{i}") is registry.get(f"thread_{t}_{i}")

    outcomes = []
    barrier = threading.Barrier(8)

    def race(t):
        barrier.wait()
        try:
            lossforge.register_loss("contended")(_constant(float(t)))
            outcomes.append(("won", t))
        except lossforge.InvalidArgumentError as exc:
            outcomes.append(("lost", "already registered" in str(exc)))

    threads = [threading.Thread(target=race, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [t for kind, t in outcomes if kind == "won"]
    assert len(winners) == 1 and all(ok for kind, ok in outcomes if kind == "lost")
    assert registry.get("contended")([0.0], [0.0]) == float(winners[0])


def test_first_use_of_a_new_loss_from_eight_threads(scratch):
    """Its kernel module is generated and compiled once; every thread gets the right numbers."""
    @lossforge.register_loss("first_use_race", grad=lambda y, p: 3.0 * (p - y) ** 2)
    def first_use_race(y, p):
        return (p - y) ** 3

    spec = registry.get("first_use_race")
    y = np.zeros((4, 3))
    p = np.arange(12.0).reshape(4, 3)
    want = np.sum(p ** 3) / 12
    results, barrier = [], threading.Barrier(8)

    def work(k):
        barrier.wait()
        if k % 2:
            results.append(float(spec(y, p)))
        else:
            value, grad = spec.value_and_grad(y, p)
            np.testing.assert_allclose(grad, 3 * p ** 2 / 12)
            results.append(float(value))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [pytest.approx(want, rel=1e-12)] * 8


def test_parallel_kernels_from_threads_under_the_workqueue_layer(tmp_path):
    """numba's workqueue layer (its fallback without OpenMP/TBB) aborts the process when two
    threads launch parallel kernels at once; lossforge serialises those launches."""
    code = textwrap.dedent("""
        import json, threading, numpy as np, lossforge, numba
        y = np.random.default_rng(0).normal(size=(300, 200)); p = y + 1
        want = float(lossforge.losses.mean_squared_error(y, p))
        out = []
        def work():
            for _ in range(10):
                out.append(float(lossforge.losses.mean_squared_error(y, p)) == want)
                out.append(float(lossforge.registry.get("log_cosh")(y, p)) > 0)
        ts = [threading.Thread(target=work) for _ in range(6)]
        [t.start() for t in ts]; [t.join() for t in ts]
        print(json.dumps({"layer": numba.threading_layer(), "ok": all(out), "n": len(out)}))
    """)
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"layer": "workqueue", "ok": True,
                                                                "n": 120}


# --- broken plugins and formulas ------------------------------------------------------------------

def test_a_formula_numba_cannot_compile_is_named_at_first_use(scratch):
    @lossforge.register_loss("uncompilable")
    def uncompilable(y, p):
        return np.linalg.svd(p)  # not on scalars

    @lossforge.register_loss("unknown_math")
    def unknown_math(y, p):
        return math.nosuch(p - y)  # noqa -- numba raises a raw AttributeError here

    # (without scipy, numba refuses np.linalg with "scipy ... is required" before typing svd)
    for name, detail in (("uncompilable", "(svd|scipy)"), ("unknown_math", "nosuch")):
        for _ in range(2):  # the same clear error every time, not once
            with pytest.raises(FormulaError, match=f"loss '{name}': Numba cannot compile its "
                                                   f"formula(.|\\n)*{detail}") as info:
                registry.get(name)([0.0, 1.0], [1.0, 2.0])
            assert isinstance(info.value, TypeError) and isinstance(info.value, lossforge.LossforgeError)
    assert L.mean_squared_error([0.0], [2.0]) == 4.0  # every other loss keeps working
    assert registry.get("log_cosh")([0.0], [0.0]) == 0.0


def test_plugins_that_fail_are_named_at_first_use_and_others_work(tmp_path):
    """A plugin raising at import is named (with its error) by the lookup of a missing loss; a
    plugin registering a formula numba cannot compile gets a FormulaError naming that loss at
    its first use; the working plugin and the built-ins are unaffected."""
    (tmp_path / "lf_good.py").write_text(textwrap.dedent("""
        from lossforge.registry import LossSpec
        cube = LossSpec("plugin_cube", lambda y, p: (p - y) ** 3)
    """))
    (tmp_path / "lf_raises.py").write_text("raise RuntimeError('plugin import exploded')\n")
    (tmp_path / "lf_bad_formula.py").write_text(textwrap.dedent("""
        from lossforge.registry import LossSpec
        bad = LossSpec("plugin_bad_formula", lambda y, p: {"not": p})
    """))
    info = tmp_path / "lf_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lf-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[lossforge.losses]\ngood = lf_good:cube\nexploding = lf_raises:spec\n"
        "bad_formula = lf_bad_formula:bad\n")
    code = textwrap.dedent("""
        import json, warnings, lossforge
        out = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                lossforge.registry.get("plugin_from_exploding")
            except lossforge.registry.UnknownLossError as exc:
                out["missing"] = str(exc)
            try:
                lossforge.registry.get("plugin_bad_formula")([0.0], [1.0])
            except lossforge.errors.FormulaError as exc:
                out["formula"] = str(exc)
            out["cube"] = float(lossforge.registry.get("plugin_cube")([0.0], [2.0]))
            out["mse"] = float(lossforge.losses.mean_squared_error([0.0], [2.0]))
        out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        print(json.dumps(out))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "Loss plugins that failed to load" in got["missing"]
    assert "'exploding' (lf_raises:spec): RuntimeError: plugin import exploded" in got["missing"]
    assert got["formula"].startswith("loss 'plugin_bad_formula': Numba cannot compile its formula")
    assert got["cube"] == 8.0 and got["mse"] == 4.0
    assert len(got["warnings"]) == 1 and "'exploding'" in got["warnings"][0]


# --- kernel caches ------------------------------------------------------------------------------

def test_another_versions_cache_directory_is_never_used(monkeypatch):
    from lossforge import kernels
    base = kernels._fingerprint()
    monkeypatch.setattr(lossforge, "__version__", "0.0.0-another-version")
    assert kernels._fingerprint() != base


CACHED_CALL = """
    import json, numpy as np, lossforge
    y = np.linspace(0, 1, 12).reshape(3, 4); p = y[::-1] * 0.5 + 0.25
    print(json.dumps([float(lossforge.losses.huber_loss(y, p, delta=0.3)),
                      float(lossforge.losses.log_loss(y.round(), p))]))
"""


def _cached_call(cache_dir):
    env = dict(os.environ, LOSSFORGE_CACHE_DIR=str(cache_dir))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CACHED_CALL)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_poisoned_or_corrupted_cache_files_are_never_trusted(tmp_path):
    """A generated kernel module replaced by other code (another version, a bad write) is
    regenerated; truncated or garbage numba cache files are recompiled: the numbers stay right."""
    want, _ = _cached_call(tmp_path)
    kernel_dir = next(tmp_path.glob("kernels-*"))
    modules = [m for m in kernel_dir.glob("*.py") if m.name.startswith(("huber", "log_loss"))]
    assert modules
    for module in modules:
        text = module.read_text()
        module.write_text(text.replace("def ", "def _poisoned_", 1) + "\nraise SystemExit(3)\n")
    for cached in kernel_dir.glob("__pycache__/*"):
        if cached.suffix in (".nbi", ".nbc"):
            data = cached.read_bytes()
            cached.write_bytes(data[: len(data) // 2] if cached.suffix == ".nbi" else b"garbage")
    got, stderr = _cached_call(tmp_path)
    assert got == want
    assert "SystemExit" not in "".join(m.read_text() for m in modules)
    assert "could not be read" in stderr and "recompiled" in stderr  # said, not hidden
    again, stderr = _cached_call(tmp_path)  # the rewritten caches are good again
    assert again == want and "could not be read" not in stderr
