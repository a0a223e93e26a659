"""The `lossforge` command's objective and registry subcommands: run, check, list, describe, plot.

Each ``add_*`` function adds one subcommand to an argparse subparsers object; `lossforge.cli`
assembles them. The commands only use the public API.
"""
from __future__ import annotations

import sys

import numpy as np

__all__ = ["add_subcommands"]


def add_subcommands(subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="evaluate an objective config and print its components",
        description="Evaluate the objective of CONFIG on a .npz file of arrays (or, without "
                    "--data, on synthetic data generated from each loss's input contract) and "
                    "print every component: raw value, weight, weighted value, share of total.")
    run.add_argument("config", help="path to an objective YAML file")
    run.add_argument("--data", metavar="FILE.npz",
                     help="arrays keyed by the config's batch keys (and regularized params); "
                          "split into --batches along the first axis")
    run.add_argument("--batches", type=int, default=1, metavar="N", help="number of batches (default 1)")
    run.add_argument("--chunk-size", type=int, default=None, metavar="ROWS",
                     help="stream --data in chunks of ROWS rows (memory-mapped, bounded memory) "
                          "and print the one exact result over all of it (Objective.evaluate)")
    run.add_argument("--batch-size", type=int, default=32, metavar="B",
                     help="rows per synthetic batch (default 32)")
    run.add_argument("--classes", type=int, default=10, metavar="K",
                     help="classes / features of synthetic inputs (default 10)")
    run.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    run.add_argument("--history", metavar="OUT.csv", help="write one row per batch to this CSV")
    run.set_defaults(handler=_run)

    check = subparsers.add_parser("check", help="validate a config (exit code 1 on problems)",
                                  description="Validate CONFIG and list every problem with its "
                                              "line, column and key.")
    check.add_argument("config")
    check.set_defaults(handler=_check)

    listing = subparsers.add_parser("list", help="list the registered losses",
                                    description="List the registered losses, their aliases, "
                                                "inputs and parameters.")
    listing.add_argument("--markdown", action="store_true", help="print a Markdown table")
    listing.set_defaults(handler=_list)

    describe = subparsers.add_parser("describe", help="show a loss's formula, parameters and reductions")
    describe.add_argument("name", help="a registered loss name or alias")
    describe.set_defaults(handler=_describe)

    plot = subparsers.add_parser("plot", help="plot a --history CSV (needs matplotlib: lossforge[plot])",
                                 description="Plot each component's weighted value (and the total) "
                                             "over steps from a CSV written by `lossforge run --history`.")
    plot.add_argument("history", metavar="HISTORY.csv")
    plot.add_argument("-o", "--output", default="components.png", help="image file (default components.png)")
    plot.set_defaults(handler=_plot)


def _batches(objective, args):
    """Yield ``(batch, params)`` for each of ``args.batches`` batches."""
    if args.data is None:
        for i in range(args.batches):
            yield objective.example_batch(args.seed + i, args.batch_size, args.classes)
        return
    from .errors import InvalidArgumentError
    with np.load(args.data) as data:
        arrays = {k: data[k] for k in data.files}
    param_keys = {k for reg in objective.config.regularizers for k in reg.params}
    params = {k: v for k, v in arrays.items() if k in param_keys}
    batch = {k: v for k, v in arrays.items() if k not in param_keys}
    missing = sorted(set(objective.batch_keys) - set(batch))
    if missing:
        raise InvalidArgumentError(f"{args.data} lacks the batch key(s) {missing} that the config "
                                   f"reads; it has {sorted(arrays)}.")
    for i in range(args.batches):
        yield {k: np.array_split(v, args.batches)[i] if v.ndim else v for k, v in batch.items()}, params


def _stream(objective, args) -> str:
    """Evaluate ``args.data`` chunk by chunk (``--chunk-size``); returns the source's summary."""
    from .errors import InvalidArgumentError
    from .streaming import load_arrays, read_chunks
    if args.data is None:
        raise InvalidArgumentError("--chunk-size streams a --data file; give one (FILE.npz).")
    if args.batches != 1:
        raise InvalidArgumentError("--chunk-size and --batches both split the data: give one.")
    param_keys = sorted({k for reg in objective.config.regularizers for k in reg.params})
    chunks = read_chunks(args.data, args.chunk_size, keys=objective.batch_keys)
    params = load_arrays(args.data, param_keys) if param_keys else None
    objective.evaluate(chunks, params, device=args.device)
    return (f"{args.data} streamed in {len(chunks)} chunk(s) of {args.chunk_size} rows "
            f"({chunks.rows} rows), device {args.device}; one result over all of it")


def _run(args) -> int:
    from tqdm import tqdm

    import lossforge
    objective = lossforge.load_objective(args.config)
    tracker = objective.tracker
    if args.chunk_size is not None:
        summary = _stream(objective, args)
    else:
        progress = tqdm(_batches(objective, args), total=args.batches, unit="batch",
                        disable=None if args.batches > 1 else True, file=sys.stderr)
        for batch, params in progress:
            objective(batch, params, device=args.device)
        source = args.data or f"synthetic data (seed {args.seed}, batch size {args.batch_size})"
        summary = (f"{source}, {len(tracker)} batch(es), device {args.device}; "
                   f"{'means over batches' if len(tracker) > 1 else 'one batch'}")
    last = tracker.history()[-1]
    names = [k for k in last if k not in ("step", "epoch", "total") and "/" not in k]
    print(f"{objective!r}\non {summary}:\n")
    total = tracker.mean("total")
    print(f"{'component':24s} {'raw':>14s} {'weight':>10s} {'weighted':>14s} {'share':>8s}")
    for name in names:
        raw, weight = tracker.mean(name), tracker.mean(name, field="weight")
        weighted = tracker.mean(name, field="weighted")
        share = weighted / total if total else float("nan")
        print(f"{name:24s} {raw:14.6g} {weight:10.4g} {weighted:14.6g} {share:8.1%}")
    print(f"{'total':24s} {'':14s} {'':10s} {total:14.6g} {'100.0%' if total else '':>8s}")
    if args.history:
        tracker.to_csv(args.history)
        print(f"\nhistory written to {args.history}")
    return 0


def _check(args) -> int:
    import lossforge
    try:
        objective = lossforge.load_objective(args.config)
    except lossforge.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.config}: OK: {objective!r}")
    print(f"batch keys: {', '.join(objective.batch_keys)}")
    return 0


def _list(args) -> int:
    from . import registry
    if args.markdown:
        print(registry.markdown_table())
        return 0
    print(f"{'loss':30s} {'inputs':34s} {'parameters':28s} aliases")
    for spec in registry.specs():
        params = ", ".join(f"{p.name}={p.default:g}" for p in spec.params) or "-"
        print(f"{spec.name:30s} {', '.join(spec.inputs):34s} {params:28s} {', '.join(spec.aliases) or '-'}")
    return 0


def _describe(args) -> int:
    from . import registry
    from .reduction import Reduction
    spec = registry.get(args.name)
    print(f"{spec.name} ({spec.kind}){'  aliases: ' + ', '.join(spec.aliases) if spec.aliases else ''}")
    print(f"\n  {spec.doc.strip()}\n")
    print(f"  inputs: {spec.inputs[0]}, {spec.inputs[1]}"
          + (f"; labels in {list(spec.label_range)}" if spec.label_range else "")
          + (f"; predictions in {list(spec.prediction_range)}" if spec.prediction_range else ""))
    for p in spec.params:
        bounds = f", valid [{p.low if p.low is not None else '-inf'}, {p.high if p.high is not None else 'inf'}]" \
            if p.low is not None or p.high is not None else ""
        print(f"  parameter {p.name} = {p.default:g}{bounds}{': ' + p.doc if p.doc else ''}")
    print(f"  gradient: {'yes (analytic)' if spec.grad is not None else 'no'}")
    print(f"  default reduction: {spec.reduction.name}\n\n  reductions (S = sum(L * W), W = weights "
          f"broadcast to L):")
    for r, formula in [(Reduction.NONE, "L * W"), (Reduction.SUM, "S"), (Reduction.MEAN, "S / sum(W)"),
                       (Reduction.SUM_OVER_BATCH_SIZE, "S / size(L)"),
                       (Reduction.SUM_BY_NONZERO_WEIGHTS, "S / count(W != 0)")]:
        print(f"    {r.name:24s} {r.value:34s} {formula}")
    return 0


def _plot(args) -> int:
    import csv
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("lossforge plot needs matplotlib: pip install 'lossforge[plot]'", file=sys.stderr)
        return 1
    with open(args.history, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print(f"{args.history} has no rows", file=sys.stderr)
        return 1
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for column in [c for c in rows[0] if c.endswith("/weighted")]:
        ax.plot(steps, [float(r[column]) for r in rows], label=column[: -len("/weighted")])
    ax.plot(steps, [float(r["total"]) for r in rows], label="total", color="black", linewidth=2)
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("weighted value")
    ax.set_title(f"components over steps ({args.history})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"plot written to {args.output}")
    return 0
