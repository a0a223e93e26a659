"""Scaling benchmarks: streaming vs in-memory, stacked vs a loop of calls, Dask vs in-memory.

    python benchmarks/bench_scaling.py                       # all sections, default sizes
    python benchmarks/bench_scaling.py --sections stacked    # one section
    python benchmarks/bench_scaling.py --size 1e7            # a smaller Dask problem
    python benchmarks/bench_scaling.py --sections rss --rss-mb 256 512 1024

Sections (each prints a table; ``--json FILE`` also writes the numbers):

* ``streaming``: an objective (MSE + sparse softmax cross-entropy) over ``--rows`` rows saved
  as ``.npz``: one in-memory call on the loaded arrays vs `Objective.evaluate` over
  `lossforge.streaming.read_chunks` of the file (memory-mapped) for a few chunk sizes, and
  over in-memory slices (the cost of chunking alone). Best of ``--repeat`` runs, file in the
  OS page cache (a warm read).
* ``stacked``: ``configs/multitask.yaml`` on K = 256 small batches (``--batch`` rows each):
  a Python loop of 256 objective calls vs one `Objective.evaluate_stacked` (one kernel launch
  per term). Medians of ``--repeat`` runs. Target: >= 10x.
* ``dask``: MSE over ``--size`` elements (default 1e8: two float64 arrays of 800 MB): one
  in-memory call vs `lossforge.dask.evaluate` on Dask's threaded scheduler (same process)
  and on a ``distributed.LocalCluster`` (2 worker processes x 1 thread, NUMBA_NUM_THREADS=1
  in the workers, data generated and persisted on the workers before timing).
* ``rss``: peak resident memory (VmHWM, Linux) of ``lossforge run CONFIG --data FILE
  --chunk-size 100000`` on ``.npz`` files of ``--rss-mb`` sizes, measured in a fresh process
  after a warm-up run on a tiny file (so compiler memory is excluded) and with the peak reset
  (``/proc/self/clear_refs``); and the same without ``--chunk-size`` (the whole file loaded)
  for contrast.

Every number depends on the machine (and on what else runs on it): compare rows of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lossforge  # noqa: E402
from lossforge.streaming import read_chunks  # noqa: E402

STREAM_CONFIG = {"name": "stream", "terms": {
    "mse": {"loss": "mean_squared_error", "inputs": {"labels": "y", "predictions": "p", "weights": "w"}},
    "ce": {"loss": "sparse_softmax_cross_entropy", "inputs": {"labels": "c", "logits": "x"}}}}


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _print(title: str, rows: list[tuple]) -> None:
    print(f"\n== {title}")
    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"  {r[0]:{width}s}  " + "  ".join(str(x) for x in r[1:]))


# --- streaming -----------------------------------------------------------------------------------

def bench_streaming(args, out: dict) -> None:
    rows, features, classes = args.rows, 8, 10
    rng = np.random.default_rng(0)
    data = {"y": rng.normal(size=(rows, features)), "p": rng.normal(size=(rows, features)),
            "w": (rng.random((rows, 1)) > 0.1) * 1.0, "c": rng.integers(0, classes, rows),
            "x": rng.normal(size=(rows, classes))}
    objective = lossforge.load_objective(STREAM_CONFIG)
    elements = rows * (features + 1)  # loss elements: mse's and ce's
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, **data)
        size_mb = os.path.getsize(path) / 2 ** 20
        whole = objective(data)  # compiles
        results = [("in memory, one call", _best(lambda: objective(data), args.repeat))]
        for chunk in (16_384, 65_536, 262_144):
            chunks = read_chunks(path, chunk)
            streamed = objective.evaluate(chunks, progress=False)  # warm: compiles, page cache
            assert np.isclose(streamed.total, whole.total, rtol=1e-10)
            results.append((f"file, chunks of {chunk} rows",
                            _best(lambda: objective.evaluate(chunks, progress=False), args.repeat)))
        for chunk in (65_536,):
            def sliced():
                return objective.evaluate(({k: v[i:i + chunk] for k, v in data.items()}
                                           for i in range(0, rows, chunk)), progress=False)
            sliced()
            results.append((f"in-memory slices of {chunk} rows", _best(sliced, args.repeat)))
    base = results[0][1]
    table = [("", "seconds", "Melem/s", "vs one call")]
    for name, t in results:
        table.append((name, f"{t:8.4f}", f"{elements / t / 1e6:8.1f}", f"{t / base:5.2f}x"))
    _print(f"streaming: {rows} rows ({elements:.3g} loss elements, file {size_mb:.0f} MB), "
           f"best of {args.repeat}", table)
    out["streaming"] = {"rows": rows, "file_mb": size_mb,
                        "seconds": {name: t for name, t in results}}


# --- stacked -------------------------------------------------------------------------------------

def bench_stacked(args, out: dict) -> None:
    objective = lossforge.load_objective(ROOT / "configs" / "multitask.yaml")
    k, batch_size = 256, args.batch
    rng = np.random.default_rng(1)
    batch = {"click": (rng.random((k, batch_size)) > 0.5) * 1.0,
             "click_prob": rng.uniform(0.05, 0.95, (k, batch_size)),
             "rating": rng.normal(size=(k, batch_size)),
             "rating_pred": rng.normal(size=(k, batch_size))}
    params = {"dense_w": rng.normal(size=(4, 4)), "out_w": rng.normal(size=4)}
    singles = [{key: v[i] for key, v in batch.items()} for i in range(k)]

    def loop():
        return [objective(s, params) for s in singles]

    def stacked():
        return objective.evaluate_stacked(batch, params=params)

    reference, result = loop(), stacked()  # compile both
    assert np.allclose(result.total, [r.total for r in reference], rtol=1e-12, atol=0)
    t_loop, t_stacked = _median(loop, args.repeat), _median(stacked, args.repeat)
    objective.tracker.reset()
    table = [("", "ms", "per batch (us)"),
             (f"loop of {k} calls", f"{t_loop * 1e3:8.2f}", f"{t_loop / k * 1e6:8.1f}"),
             ("evaluate_stacked", f"{t_stacked * 1e3:8.2f}", f"{t_stacked / k * 1e6:8.1f}")]
    _print(f"stacked: K={k} batches of {batch_size} rows, configs/multitask.yaml (2 terms + l2), "
           f"median of {args.repeat}; speed-up {t_loop / t_stacked:.1f}x (target >= 10x)", table)
    out["stacked"] = {"k": k, "batch": batch_size, "loop_s": t_loop, "stacked_s": t_stacked,
                      "speedup": t_loop / t_stacked}


# --- dask ----------------------------------------------------------------------------------------

def bench_dask(args, out: dict) -> None:
    import dask
    import dask.array as da
    import distributed

    import lossforge.dask
    n = int(float(args.size))
    cols = 10
    rows = n // cols
    chunk_rows = max(1, min(rows, args.dask_chunk // cols))
    objective = lossforge.load_objective({"terms": {"mse": {
        "loss": "mean_squared_error", "inputs": {"labels": "y", "predictions": "p"}}}})
    results = {}
    rng = da.random.default_rng(2)
    lazy = {"y": rng.normal(size=(rows, cols), chunks=(chunk_rows, cols)),
            "p": rng.normal(size=(rows, cols), chunks=(chunk_rows, cols))}
    local = {k: v.compute() for k, v in lazy.items()}  # the same numbers, in this process
    expected = objective(local).total
    results["in memory, one call"] = _best(lambda: objective(local), args.repeat)
    threaded = {k: da.from_array(v, chunks=(chunk_rows, cols)) for k, v in local.items()}
    got = lossforge.dask.evaluate(objective, threaded, scheduler="threads")
    assert np.isclose(got.total, expected, rtol=1e-10)
    results["dask threads (this process)"] = _best(
        lambda: lossforge.dask.evaluate(objective, threaded, scheduler="threads"), args.repeat)
    del threaded, local
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       env={"NUMBA_NUM_THREADS": "1"})
    try:
        with distributed.Client(cluster):
            persisted = dict(zip(lazy, dask.persist(*lazy.values())))
            distributed.wait(list(persisted.values()))
            start = time.perf_counter()
            got = lossforge.dask.evaluate(objective, persisted)  # first: workers load kernels
            first = time.perf_counter() - start
            assert np.isclose(got.total, expected, rtol=1e-10)
            results["LocalCluster 2 processes, first call"] = first
            results["LocalCluster 2 processes"] = _best(
                lambda: lossforge.dask.evaluate(objective, persisted), args.repeat)
    finally:
        cluster.close()
    base = results["in memory, one call"]
    table = [("", "seconds", "Melem/s", "vs in memory", "overhead")]
    for name, t in results.items():
        table.append((name, f"{t:8.3f}", f"{n / t / 1e6:8.1f}", f"{t / base:5.2f}x",
                      f"{(t - base) * 1e3:+8.1f} ms"))
    _print(f"dask: mean_squared_error over {n:.3g} elements ({rows} x {cols} float64, chunks of "
           f"{chunk_rows} rows = {-(-rows // chunk_rows)} chunks), best of {args.repeat}", table)
    out["dask"] = {"elements": n, "chunk_rows": chunk_rows, "seconds": results}


# --- peak RSS ------------------------------------------------------------------------------------

RSS_CONFIG = """
name: rss
terms:
  mse: {loss: mean_squared_error, inputs: {labels: y, predictions: p, weights: w}}
  ce: {loss: sparse_softmax_cross_entropy, weight: 0.5, inputs: {labels: c, logits: x}}
"""

RSS_SCRIPT = textwrap.dedent("""
    import sys
    from lossforge.cli import main
    warm, args = sys.argv[1], sys.argv[2:]
    assert main(args[:3] + [warm] + args[4:]) == 0   # compile/load the kernels
    with open("/proc/self/clear_refs", "w") as f:    # reset the peak
        f.write("5")
    code = main(args)
    print("PEAK_KB", open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
    sys.exit(code)
""")


def _write_rss_file(path: str, megabytes: int) -> int:
    """An .npz of about ``megabytes`` MB (y, p: 8 float64 columns; x: 10; c: int64), written
    in slices so this process never holds it whole."""
    row_bytes = (8 + 8 + 10 + 1) * 8
    rows = megabytes * 2 ** 20 // row_bytes
    rng = np.random.default_rng(3)
    import zipfile
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, shape, dtype in (("y", (rows, 8), np.float64), ("p", (rows, 8), np.float64),
                                  ("x", (rows, 10), np.float64), ("c", (rows,), np.int64)):
            with archive.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                        "fortran_order": False, "shape": shape})
                for start in range(0, rows, 1 << 20):
                    stop = min(rows, start + (1 << 20))
                    block = (rng.integers(0, 10, stop - start) if dtype == np.int64
                             else rng.normal(size=(stop - start,) + shape[1:]))
                    f.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
        with archive.open("w.npy", "w") as f:
            np.lib.format.write_array(f, np.ones((1, 1)))
    return rows


def bench_rss(args, out: dict) -> None:
    if not os.path.exists("/proc/self/clear_refs"):
        print("\n== rss: skipped (needs Linux /proc/self/clear_refs)")
        return
    results = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        config = os.path.join(tmp, "rss.yaml")
        Path(config).write_text(RSS_CONFIG)
        warm = os.path.join(tmp, "warm.npz")  # 1.5 chunks: the same kernels as the real runs
        _write_rss_file(warm, 32)
        for megabytes in args.rss_mb:
            path = os.path.join(tmp, f"data{megabytes}.npz")
            rows = _write_rss_file(path, megabytes)
            size = os.path.getsize(path) / 2 ** 20
            for mode in ("--chunk-size 100000", "whole file") if args.rss_whole else ("--chunk-size 100000",):
                extra = ["--chunk-size", "100000"] if mode != "whole file" else []
                start = time.perf_counter()
                run = subprocess.run([sys.executable, "-c", RSS_SCRIPT, warm, "run", config,
                                      "--data", path, *extra], capture_output=True, text=True,
                                     env=env, timeout=3600)
                seconds = time.perf_counter() - start
                if run.returncode != 0:
                    raise SystemExit(f"rss run failed:\n{run.stderr[-3000:]}")
                peak = int(run.stdout.split("PEAK_KB")[1].split()[0]) / 1024
                results.append((f"{size:7.0f} MB file ({rows} rows), {mode}", peak, seconds))
            os.unlink(path)
    table = [("", "peak RSS (MiB)", "seconds (2 runs + start-up)")]
    table += [(name, f"{peak:8.1f}", f"{s:6.1f}") for name, peak, s in results]
    _print("rss: peak resident memory of `lossforge run`, after a warm-up run", table)
    out["rss"] = [{"run": name, "peak_mib": peak, "seconds": s} for name, peak, s in results]


SECTIONS = {"streaming": bench_streaming, "stacked": bench_stacked, "dask": bench_dask,
            "rss": bench_rss}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS),
                        default=["streaming", "stacked", "dask", "rss"])
    parser.add_argument("--rows", type=int, default=2_000_000, help="streaming: rows (default 2e6)")
    parser.add_argument("--batch", type=int, default=32, help="stacked: rows per batch (default 32)")
    parser.add_argument("--size", default="1e8", help="dask: elements (default 1e8)")
    parser.add_argument("--dask-chunk", type=int, default=10_000_000,
                        help="dask: elements per chunk (default 1e7)")
    parser.add_argument("--rss-mb", type=int, nargs="+", default=[256, 512, 1024],
                        help="rss: file sizes in MB (default 256 512 1024)")
    parser.add_argument("--rss-whole", action="store_true",
                        help="rss: also run without --chunk-size (loads the whole file)")
    parser.add_argument("--tmp", default=None, help="rss: directory for the data files")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    print(f"lossforge {lossforge.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    out: dict = {}
    for name in args.sections:
        SECTIONS[name](args, out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
