"""The ``lossforge`` command (console script; also ``python -m lossforge.cli``).

One argparse subparser per subcommand. Each subcommand is added by an ``add_*(subparsers)``
function that sets ``handler=`` (a function ``(args) -> exit code``) with
``set_defaults``; `main` dispatches to it. A `lossforge.LossforgeError` raised by a handler is
printed as ``lossforge COMMAND: error: ...`` with exit code 1.

Subcommands:

* ``gpu-check``: compile every registered loss's CUDA kernels to PTX, no GPU needed.
* ``bench``: the benchmark suite of a source checkout (``benchmarks/``); its arguments are
  passed through to ``python -m benchmarks.run``.
* those of `lossforge.commands` (``run``, ``check``, ``list``, ``describe``, ``plot``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="lossforge", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="TensorFlow-exact losses and weighted multi-task objectives on Numba kernels.",
        epilog="examples:\n"
               "  lossforge run configs/multitask.yaml                 # synthetic data, one batch\n"
               "  lossforge run cfg.yaml --data val.npz --batches 10 --history h.csv\n"
               "  lossforge plot h.csv -o components.png\n"
               "  lossforge check cfg.yaml                             # every problem, with its line\n"
               "  lossforge describe huber_loss\n\n"
               "`lossforge COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"lossforge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_gpu_check(subparsers)
    add_bench(subparsers)
    from .commands import add_subcommands
    add_subcommands(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the ``lossforge`` command with ``argv`` (default ``sys.argv[1:]``); the exit code."""
    from .errors import LossforgeError
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # every argument (--help included) belongs to the suite
        return _bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except LossforgeError as exc:
        print(f"lossforge {args.command}: error: {exc}", file=sys.stderr)
        return 1


# --- bench ---------------------------------------------------------------------------------------

def add_bench(subparsers) -> None:
    # listed in `lossforge --help`; `main` hands `lossforge bench ...` to `_bench` unparsed
    subparsers.add_parser(
        "bench", add_help=False,
        help="the benchmark suite vs NumPy/PyTorch/JAX/TF (source checkout; `lossforge bench --help`)")


def _bench(argv) -> int:
    """``python -m benchmarks.run ARGV`` from the checkout this lossforge was imported from."""
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "run.py").is_file():
        print(f"lossforge bench: error: the benchmark suite lives in the source repository "
              f"(benchmarks/), not in an installed package; this lossforge is at {root}. From a "
              f"clone: pip install -e '.[bench]' && lossforge bench", file=sys.stderr)
        return 1
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.run import main as bench_main
    return bench_main(argv)


# --- gpu-check -----------------------------------------------------------------------------------

def _cc(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(?:sm_?)?(\d+)\.(\d)|sm_?(\d+)(\d)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a compute capability: {text!r} (use e.g. 9.0)")
    major, minor = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
    return int(major), int(minor)


def add_gpu_check(subparsers) -> None:
    check = subparsers.add_parser(
        "gpu-check", help="compile every loss's CUDA kernels to PTX (no GPU needed)",
        description="Compile the CUDA kernels of every registered loss (float32 and float64 "
                    "inputs) and the shared support kernels to PTX with numba.cuda.compile_ptx, "
                    "for each compute capability, and link them with nvJitLink (when available) "
                    "to report registers and spills. No GPU is needed; numba-cuda is "
                    "(pip install 'lossforge[cuda]'). Exit code 1 if any kernel fails.")
    check.add_argument("--cc", action="append", type=_cc, metavar="X.Y",
                       help="compute capability to compile for; repeatable (default: 8.0 and 9.0)")
    check.add_argument("--loss", action="append", metavar="NAME",
                       help="check only this loss (name or alias); repeatable (default: all)")
    check.add_argument("--dtype", action="append", choices=("float32", "float64"),
                       help="input dtype; repeatable (default: both)")
    check.add_argument("--no-support", action="store_true",
                       help="skip the loss-independent kernels (reduction, cast, scale, fill)")
    check.add_argument("--no-resources", action="store_true",
                       help="do not link with nvJitLink (no register/spill report)")
    check.add_argument("--json", metavar="FILE",
                       help="also write every result (PTX version, target, registers, errors) "
                            "as JSON to FILE")
    check.set_defaults(handler=_gpu_check)


def _cell(result: dict) -> str:
    if result.get("skipped"):
        return "skip"
    if not result["ok"]:
        return "FAIL"
    if result["registers"] is None:
        return "OK"
    text = f"OK {result['registers']} regs"
    if result["spill_stores"] or result["spill_loads"]:
        text += f", spill {result['spill_stores']}/{result['spill_loads']} B"
    return text


def _gpu_check(args) -> int:
    import numpy as np

    from . import registry
    from .kernels import cuda as cuda_kernels  # InvalidArgumentError if numba-cuda is missing
    ccs = list(dict.fromkeys(args.cc or [(8, 0), (9, 0)]))
    specs = None
    if args.loss:  # names or aliases, each loss once
        specs = list({id(s): s for s in map(registry.get, args.loss)}.values())
    dtypes = [np.dtype(d) for d in dict.fromkeys(args.dtype or ["float32", "float64"])]
    linker = None if args.no_resources else cuda_kernels._linker()
    columns = [f"sm_{major}{minor}" for major, minor in ccs]
    print(f"{'kernel':32s} {'variant':18s} " + " ".join(f"{c:22s}" for c in columns))
    row: list[dict] = []

    def on_result(result: dict) -> None:
        row.append(result)
        if len(row) == len(ccs):
            print(f"{row[0]['kernel']:32s} {row[0]['variant']:18s} "
                  + " ".join(f"{_cell(r):22s}" for r in row), flush=True)
            row.clear()

    start = time.perf_counter()
    results = cuda_kernels.check_ptx(ccs, specs, dtypes, support=not args.no_support,
                                     resources=linker is not None, on_result=on_result)
    elapsed = time.perf_counter() - start
    failed = [r for r in results if r["ok"] is False]
    skipped = [r for r in results if r.get("skipped")]
    for r in failed:
        error = "\n    ".join(str(r["error"]).strip().splitlines()[:20])
        print(f"\nFAILED {r['kernel']} ({r['variant']}) for cc {r['cc']}:\n    {error}")
    for r in skipped[::len(ccs)]:
        print(f"\nskipped {r['kernel']} ({r['variant']}): {r['skipped']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ccs": [f"{a}.{b}" for a, b in ccs], "results": results}, f, indent=1)
    kernels = len(results) // max(1, len(ccs))
    note = "" if linker is not None else " (registers not reported: nvJitLink unavailable or off)"
    print(f"\n{kernels} kernel(s) x {len(ccs)} compute capabilit{'y' if len(ccs) == 1 else 'ies'} "
          f"in {elapsed:.1f} s: "
          + (f"{len(failed)} FAILED" if failed else "all compiled") + note)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
