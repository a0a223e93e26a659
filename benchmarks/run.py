"""lossforge's benchmark suite: ``python -m benchmarks.run`` (or ``lossforge bench``).

Times every built-in loss, reduced, and a composed objective (configs/multitask.yaml) over
float32 inputs of 1e2 .. 1.6e7 elements against every installed peer (NumPy, PyTorch CPU,
JAX jit CPU, TensorFlow CPU; ``pip install -e '.[bench]'``), next to the read-bandwidth floor
measured in the same run; then small-batch latency, cold start in fresh processes, and the
fused value+gradient pass against the value alone. Every peer's value is checked against
lossforge's (float32 tolerance): disagreements are printed, recorded, and make the exit code 1.

Writes a Markdown report to stdout (progress goes to stderr) and to ``OUTPUT/latest.md``,
every figure to ``OUTPUT/latest.json`` and the plot to ``OUTPUT/throughput.png`` (default
OUTPUT: benchmarks/results).

    python -m benchmarks.run                         # the full suite (several minutes)
    python -m benchmarks.run --quick                 # smoke run: small sizes, few repeats
    python -m benchmarks.run --sizes 16M --losses log_loss,softmax_cross_entropy --peers jax
    python -m benchmarks.run --device cuda           # the CUDA path (needs a GPU)

Numbers from a shared or busy machine are noisy: compare ratios from one run (every
contestant is timed in the same interleaved rounds), never absolute times across runs.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000, 16_777_216)
QUICK_SIZES = (1_000, 100_000)
SECTIONS = ("throughput", "grad", "latency", "coldstart")
MAX_SETS = 16


def _log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    """``16777216``, ``1.6e7``, ``16M``, ``64k``, ``2^24`` -> elements."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    match = re.fullmatch(r"(\d+)\^(\d+)", t)
    if match:
        return int(match.group(1)) ** int(match.group(2))
    scale = {"k": 1 << 10, "m": 1 << 20}.get(t[-1:], 1)
    if scale != 1:
        t = t[:-1]
    try:
        value = float(t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1e6, 16M, 2^24)") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole positive number of elements: {text!r}")
    return int(value)


def _sizes(text: str) -> list[int]:
    return sorted({parse_size(s) for s in text.split(",") if s.strip()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0].split(": ", 1)[0] + ": lossforge vs NumPy, PyTorch, "
                    "JAX and TensorFlow, the read-bandwidth floor, latency and cold start.",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--sizes", type=_sizes, metavar="N,N,...",
                        help="elements per input (1e2, 16M, 2^24 ...; default "
                             + ",".join(map(str, DEFAULT_SIZES)) + ")")
    parser.add_argument("--losses", default="all", metavar="NAMES",
                        help="comma-separated loss names and groups: tf (tf.compat.v1.losses), "
                             "extras (the registry's other built-ins), objective, all (default)")
    parser.add_argument("--peers", default="all", metavar="NAMES",
                        help="comma-separated: numpy, torch, jax, tensorflow (tf); 'all' (default: "
                             "every installed one) or 'none'")
    parser.add_argument("--repeat", type=int, metavar="N", help="timed calls per round at least "
                        "(fast calls get more, ~20 ms per round); the round's figure is the median "
                        "call (default 7; --quick 3)")
    parser.add_argument("--rounds", type=int, metavar="R", help="rounds; the best round's median "
                        "is reported (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sizes " + ",".join(map(str, QUICK_SIZES)) + ", few repeats")
    parser.add_argument("--sections", default=",".join(SECTIONS), metavar="NAMES",
                        help="what to run, of " + ", ".join(SECTIONS) + " (default: all)")
    parser.add_argument("--objective", default=None, metavar="CONFIG.yaml",
                        help="objective config for the objective case and the latency figures "
                             "(default configs/multitask.yaml)")
    parser.add_argument("--grad-size", type=parse_size, metavar="N",
                        help="size at which value+gradient is timed (default: the largest size)")
    parser.add_argument("--rotate-mb", type=float, default=384.0, metavar="MB",
                        help="input sets per case: enough copies to cycle through this many MB "
                             "(2 to %d sets; default 384)" % MAX_SETS)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: time the CUDA path (needs a GPU; without one, says so and exits 0)")
    parser.add_argument("--output", type=Path, default=RESULTS, metavar="DIR",
                        help=f"where latest.json and throughput.png go (default {os.path.relpath(RESULTS)})")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "lossforge"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+uncommitted lossforge/ changes" if dirty else "") if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def rtol(elements: int) -> float:
    """Relative tolerance between a peer's float32 result and lossforge's (`peers.RTOL`)."""
    from .peers import RTOL
    return RTOL


def _agreement(reference, value, elements: int) -> dict:
    tol = rtol(elements)
    if value is None or reference is None:
        return {"value": value, "rel_diff": None, "ok": value is None}
    if math.isnan(value) or math.isnan(reference):
        ok = math.isnan(value) and math.isnan(reference)
        return {"value": value, "rel_diff": 0.0 if ok else math.inf, "ok": ok, "rtol": tol}
    rel = abs(value - reference) / max(abs(reference), 1e-30)
    return {"value": value, "rel_diff": rel, "ok": abs(value - reference) <= tol * abs(reference) + 1e-7,
            "rtol": tol}


def throughput(cases, sizes, peers, args, grad_size) -> tuple[list[dict], list[dict]]:
    """One row per (case, size); plus the disagreements."""
    rows, disagreements = [], []
    for case in cases:
        for size in sizes:
            row, bad = measure_case(case, size, peers, args, grad_size)
            rows.append(row)
            disagreements += bad
            gc.collect()  # this case's input sets (and the peers' copies) are gone before the next
    return rows, disagreements


def measure_case(case, size: int, peers, args, grad_size) -> tuple[dict, list[dict]]:
    """Time ``case`` at ``size`` elements: lossforge, the floor, value+grad (at ``grad_size``)
    and every peer, in the same rounds; check each peer's value against lossforge's."""
    from . import floor
    from .cases import rotated
    from .timing import Contestant, measure
    rng = np.random.default_rng([args.seed, size, sum(map(ord, case.name))])
    arrays, shape = case.make(rng, size)
    set_bytes = sum(a.nbytes for a in arrays)
    nsets = max(2, min(MAX_SETS, math.ceil(args.rotate_mb * 1e6 / set_bytes)))
    sets = rotated(arrays, nsets)
    elements = max(a.size for a in arrays)
    _log(f"[{case.name} @ {size:,}: {shape}, {nsets} input sets of {set_bytes / 1e6:.3g} MB]")
    started = time.perf_counter()
    views = [floor.flat_views(s[:case.floor_count]) for s in sets]
    contestants = [
        Contestant("lossforge", lambda i: case.lossforge(*sets[i]), sets=nsets),
        Contestant("floor", lambda i: floor.read_floor(views[i]), sets=nsets),
        Contestant("floor_serial", lambda i: floor.read_floor(views[i], False), sets=nsets),
    ]
    timed_grad = case.value_and_grad is not None and size == grad_size
    if timed_grad:
        first = lambda r: float(r[0] if isinstance(r, tuple) else r)  # noqa: E731
        contestants.append(Contestant("value_and_grad", lambda i: case.value_and_grad(*sets[i]),
                                      value=first, sets=nsets))
        buffer = case.grad_out(arrays)  # the gradient also into arrays reused across calls
        contestants.append(Contestant(
            "value_and_grad_out", lambda i: case.value_and_grad(*sets[i], grad_out=buffer),
            value=first, sets=nsets))
    skipped = {}
    for peer in peers:
        formula, why = case.peer_formula(peer)
        if formula is None:
            skipped[peer.name] = why
            continue
        fn = peer.compile(formula)
        native = [tuple(peer.convert(a) for a in s) for s in sets]
        contestants.append(Contestant(
            peer.name, (lambda fn, native, peer: lambda i: peer.sync(fn(*native[i])))(fn, native, peer),
            value=peer.value, sets=nsets))
    measure(contestants, args.repeat, args.rounds, round_time=0.005 if args.quick else 0.02)
    by = {c.name: c for c in contestants}
    lf = by["lossforge"]
    if lf.error:
        raise RuntimeError(f"lossforge failed on {case.name} at {size}: {lf.error}")
    floor_s = min(by["floor"].best, by["floor_serial"].best)
    peer_times = {p.name: by[p.name].best for p in peers if p.name in by and by[p.name].error is None}
    agreement, disagreements = {}, []
    for name in peer_times:
        agreement[name] = _agreement(lf.warm_value, by[name].warm_value, elements)
        if not agreement[name]["ok"]:
            disagreements.append({"loss": case.name, "size": size, "peer": name,
                                  "peer_value": by[name].warm_value, "lossforge_value": lf.warm_value,
                                  "rel_diff": agreement[name]["rel_diff"], "rtol": agreement[name]["rtol"]})
            _log(f"  !!! DISAGREEMENT: {name} gives {by[name].warm_value!r}, lossforge "
                 f"{lf.warm_value!r} (rel. diff {agreement[name]['rel_diff']:.2e})")
    fastest = min(peer_times, key=peer_times.get) if peer_times else None
    calls = {p: by[p].best_call for p in peer_times}
    fastest_call = min(calls, key=calls.get) if calls else None
    floor_call = min(by["floor"].best_call, by["floor_serial"].best_call)
    row = {
        "loss": case.name, "group": case.group, "size": size, "shape": shape,
        "elements": elements, "bytes": set_bytes, "input_sets": nsets,
        "elementwise": _elementwise(case),
        "lossforge": lf.best, "floor": floor_s,
        "peers": peer_times, "fastest_peer": fastest,
        "speedup": peer_times[fastest] / lf.best if fastest else None,
        "gbps": set_bytes / lf.best / 1e9, "floor_gbps": set_bytes / floor_s / 1e9,
        "pct_floor": 100.0 * floor_s / lf.best,
        "best_call": {"lossforge": lf.best_call, "floor": floor_call, **calls,
                      "fastest_peer": fastest_call,
                      "speedup": calls[fastest_call] / lf.best_call if fastest_call else None,
                      "pct_floor": 100.0 * floor_call / lf.best_call},
        "value": lf.warm_value, "agreement": agreement,
        "peer_errors": {c.name: c.error for c in contestants if c.error},
        "peers_skipped": skipped,
        "rounds_s": {c.name: c.rounds for c in contestants},
        "fastest_call_per_round_s": {c.name: c.fastest for c in contestants},
        "calls_per_round": {c.name: c.calls_per_round for c in contestants},
    }
    if timed_grad and by["value_and_grad"].error is None:
        row["value_and_grad"] = by["value_and_grad"].best
        row["grad_ratio"] = by["value_and_grad"].best / lf.best
        reused = by.get("value_and_grad_out")
        if reused is not None and reused.error is None:
            row["value_and_grad_out"] = reused.best
            row["grad_out_ratio"] = reused.best / lf.best
    _log("  " + ", ".join(f"{c.name} {c.best * 1e3:.3f} ms" if c.best else f"{c.name} {c.error}"
                          for c in contestants) + f"  ({time.perf_counter() - started:.1f} s)")
    return row, disagreements


def _elementwise(case) -> bool:
    if case.group == "objective":
        return True
    if case.name == "compute_weighted_loss":
        return True
    from lossforge import registry
    return registry.get(case.name).kind == "elementwise"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or list(QUICK_SIZES)
        args.repeat = args.repeat or 3
        args.rounds = args.rounds or 1
    args.sizes = args.sizes or list(DEFAULT_SIZES)
    args.repeat = args.repeat or 7
    args.rounds = args.rounds or 3
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        build_parser().error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")

    from . import cases as case_module
    from . import peers as peer_module
    objective = Path(args.objective) if args.objective else case_module.DEFAULT_OBJECTIVE
    if args.device == "cuda":
        from . import cuda
        return cuda.main(args, objective)

    wanted = [] if args.peers.strip() == "none" else (
        list(peer_module.ORDER) if args.peers.strip() == "all"
        else [peer_module.canonical(p) for p in args.peers.split(",") if p.strip()])
    started = time.perf_counter()
    load_before = _load()
    commit = _git_commit()  # what is measured: the tree at the start (others may commit meanwhile)
    import lossforge
    import numba
    peers, skipped = peer_module.load(wanted if sections - {"coldstart"} else [])
    for name, why in skipped.items():
        _log(f"note: peer {name} skipped: {why}")
    selected = case_module.select(args.losses, objective) if "throughput" in sections or "grad" in sections else []
    grad_size = args.grad_size or max(args.sizes)
    sizes = sorted(set(args.sizes) | ({grad_size} if "grad" in sections else set()))
    if "throughput" not in sections:
        sizes = [grad_size]

    rows, disagreements = throughput(selected, sizes, peers, args,
                                     grad_size if "grad" in sections else None) if selected else ([], [])
    latency_rows = None
    if "latency" in sections:
        from . import latency
        _log("[small-batch latency]")
        latency_rows = latency.run(peers, repeat=max(5, 2 * args.repeat), rounds=args.rounds,
                                   objective_path=objective, seed=args.seed)
        for r in latency_rows:
            if r["value"] is not None and not r["agrees"]:
                disagreements.append({"loss": f"latency {r['kind']}", "size": 640, "peer": r["library"],
                                      "peer_value": r["value"], "lossforge_value": r["reference_value"],
                                      "rel_diff": r["rel_diff"], "rtol": rtol(640)})
    cold = None
    if "coldstart" in sections:
        from . import coldstart
        _log("[cold start: fresh subprocesses]")
        cold = coldstart.run(repeat=1 if args.quick else 5, config=objective)

    results = {
        "meta": {
            "lossforge": lossforge.__version__, "commit": commit,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "cpu": _cpu(), "cores": os.cpu_count(), "threads": numba.config.NUMBA_NUM_THREADS,
            "peers": {p.name: p.version for p in peers},
            "peer_notes": {p.name: p.notes for p in peers},
            "skipped_peers": skipped, "sizes": sizes, "repeat": args.repeat, "rounds": args.rounds,
            "sets_note": f"inputs rotated over 2-{MAX_SETS} copies (~{args.rotate_mb:g} MB)",
            "load_before": load_before, "load_after": _load(),
            "seconds": round(time.perf_counter() - started, 1), "targets": None,
        },
        "throughput": rows if "throughput" in sections else [],
        "grad": [{"loss": r["loss"], "elements": r["elements"], "value_s": r["lossforge"],
                  "value_and_grad_s": r["value_and_grad"], "ratio": r["grad_ratio"],
                  "grad_out_s": r.get("value_and_grad_out"),
                  "grad_out_ratio": r.get("grad_out_ratio")}
                 for r in rows if r.get("value_and_grad") is not None],
        "latency": latency_rows, "coldstart": cold, "disagreements": disagreements,
    }
    from . import report
    results["meta"]["targets"] = report.TARGETS
    results["targets_missed"] = report.target_summary(results)
    text = report.markdown(results)
    print(text)
    report.write_json(results, args.output / "latest.json")
    (args.output / "latest.md").write_text(text)
    _log(f"wrote {args.output / 'latest.json'} and latest.md")
    if not args.no_plot and results["throughput"]:
        problem = report.plot(results, args.output / "throughput.png")
        _log(problem or f"wrote {args.output / 'throughput.png'}")
    if disagreements:
        _log(f"!!! {len(disagreements)} disagreement(s) between peers and lossforge: see the report")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
