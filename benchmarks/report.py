"""The suite's outputs: Markdown tables (stdout), the JSON record, the PNG plot."""
from __future__ import annotations

import json
import math
from pathlib import Path

from .peers import LABELS, ORDER

#: Issue 5's targets (ratios measured in one run; never asserted by tests).
TARGETS = {"speedup": 1.5, "pct_floor": 50.0, "grad_ratio": 1.5, "latency_loss_us": 3.0,
           "latency_objective_us": 15.0, "import_s": 0.3, "first_call_s": 0.5, "run_s": 2.0}
#: The throughput and gradient targets are defined at this size (2**24 float32 elements).
TARGET_SIZE = 1 << 24


def fmt_time(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def _peer_names(results) -> list[str]:
    return [n for n in ORDER if n in results["meta"]["peers"]]


def throughput_tables(results) -> str:
    rows = results["throughput"]
    peers = _peer_names(results)
    lines = []
    for size in sorted({r["size"] for r in rows}):
        lines += [f"#### {size:,} elements", "",
                  "| loss | shape | lossforge | floor | " + " | ".join(LABELS[p] for p in peers)
                  + " | vs fastest peer | GB/s | % of floor | best calls: vs fastest, % of floor |",
                  "|---|---|---|---|" + "---|" * len(peers) + "---|---|---|---|"]
        for r in [r for r in rows if r["size"] == size]:
            cells = []
            for p in peers:
                t = r["peers"].get(p)
                agreement = r["agreement"].get(p)
                text = fmt_time(t) if t is not None else ("error" if p in r["peer_errors"] else "-")
                if agreement is not None and not agreement["ok"]:
                    text = f"**{text} WRONG** (rel. diff {agreement['rel_diff']:.1e})"
                cells.append(text)
            speedup = "-" if r["speedup"] is None else \
                f"{r['speedup']:.2f}x ({LABELS[r['fastest_peer']]})"
            lines.append(f"| {r['loss']} | {r['shape']} | {fmt_time(r['lossforge'])} | "
                         f"{fmt_time(r['floor'])} | " + " | ".join(cells) + f" | {speedup} | "
                         f"{r['gbps']:.1f} | {r['pct_floor']:.0f}% | {_best_calls(r)} |")
        lines.append("")
    return "\n".join(lines)


def _best_calls(r) -> str:
    b = r.get("best_call") or {}
    if b.get("speedup") is None:
        return "-" if not b else f"{b['pct_floor']:.0f}%"
    return f"{b['speedup']:.2f}x ({LABELS[b['fastest_peer']]}), {b['pct_floor']:.0f}%"


def grad_table(results) -> str:
    rows = results.get("grad") or []
    if not rows:
        return ""
    lines = ["| loss | elements | value | value + gradient | ratio | into a reused `grad_out` "
             "| ratio |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        reused = (f"{fmt_time(r['grad_out_s'])} | {r['grad_out_ratio']:.2f}x"
                  if r.get("grad_out_s") is not None else "- | -")
        lines.append(f"| {r['loss']} | {r['elements']:,} | {fmt_time(r['value_s'])} | "
                     f"{fmt_time(r['value_and_grad_s'])} | {r['ratio']:.2f}x | {reused} |")
    return "\n".join(lines)


def latency_table(results) -> str:
    rows = results.get("latency") or []
    if not rows:
        return ""
    shape = "x".join(map(str, rows[0]["shape"]))
    lines = [f"| library | call ({shape} float32) | per call | agrees |", "|---|---|---|---|"]
    for r in rows:
        agrees = "-" if r["value"] is None else ("yes" if r["agrees"] else f"**NO** ({r['rel_diff']:.1e})")
        us = "error" if r["us"] is None else f"{r['us']:.2f} us"
        lines.append(f"| {LABELS.get(r['library'], r['library'])} | {r['what']} | {us} | {agrees} |")
    return "\n".join(lines)


def coldstart_table(results) -> str:
    cold = results.get("coldstart")
    if not cold:
        return ""
    lines = ["| cold start (fresh process) | median | best |", "|---|---|---|"]
    for key in ("python", "import", "numba", "first_call", "run"):
        c = cold[key]
        lines.append(f"| {c['what']} | {c['median_s']:.3f} s | {c['min_s']:.3f} s |")
    lines.append(f"\n`import lossforge` imports numba: {'yes' if cold['numba_imported_by_import'] else 'no'}")
    return "\n".join(lines)


def target_summary(results) -> list[str]:
    """One line per missed target of issue 5: throughput and gradient at >= `TARGET_SIZE`
    elements (not checked in runs without that size), latency, cold start."""
    missed = []
    rows = [r for r in results["throughput"] if r["size"] >= TARGET_SIZE]
    if rows:
        top = max(r["size"] for r in rows)
        for r in [r for r in rows if r["size"] == top]:
            if r["speedup"] is not None and r["speedup"] < TARGETS["speedup"]:
                missed.append(f"{r['loss']}: {r['speedup']:.2f}x the fastest peer "
                              f"({LABELS[r['fastest_peer']]}) at {top:,} (target 1.5x)")
            if r["elementwise"] and r["pct_floor"] < TARGETS["pct_floor"]:
                missed.append(f"{r['loss']}: {r['pct_floor']:.0f}% of the read floor at {top:,} "
                              f"(target 50%)")
    for r in results.get("grad") or []:
        if r["elements"] >= TARGET_SIZE // 2 and r["ratio"] > TARGETS["grad_ratio"]:
            missed.append(f"{r['loss']}: value+gradient {r['ratio']:.2f}x value-only at "
                          f"{r['elements']:,} (target 1.5x)")
    for r in results.get("latency") or []:
        if r["library"] != "lossforge" or r["us"] is None:
            continue
        limit = TARGETS["latency_objective_us" if r["kind"] == "objective" else "latency_loss_us"]
        if r["us"] > limit:
            missed.append(f"latency {r['what']}: {r['us']:.2f} us (target {limit:g} us)")
    cold = results.get("coldstart")
    if cold:
        for key, target in (("import", "import_s"), ("first_call", "first_call_s"), ("run", "run_s")):
            if cold[key]["median_s"] > TARGETS[target]:
                missed.append(f"{cold[key]['what']}: {cold[key]['median_s']:.3f} s "
                              f"(target {TARGETS[target]:g} s)")
    return missed


def markdown(results) -> str:
    meta = results["meta"]
    parts = [f"## lossforge {meta['lossforge']} benchmark ({meta['date']}, commit {meta['commit']})", "",
             f"{meta['cpu']}, {meta['cores']} cores, {meta['threads']} numba threads; load average "
             f"{meta['load_before']} before, {meta['load_after']} after. Times per call: the best of "
             f"{meta['rounds']} rounds' median call (>= {meta['repeat']} back-to-back calls per round, "
             f"more for fast calls), {meta['sets_note']}. Floor: a "
             "Numba prange float32 block sum reading the same inputs once. GB/s: the inputs' bytes "
             "read once / lossforge's time. Best calls: the same ratios from each contestant's fastest "
             "single call (a loaded machine delays parallel calls by scheduler ticks; the medians "
             "are what a user sees under that load).", ""]
    for name, why in meta["skipped_peers"].items():
        parts.append(f"* peer {name} skipped: {why}")
    if meta["skipped_peers"]:
        parts.append("")
    if results["throughput"]:
        parts += ["### Throughput", "", throughput_tables(results)]
    grad = grad_table(results)
    if grad:
        parts += ["### Value + gradient (one fused pass) vs value only", "", grad, ""]
    latency = latency_table(results)
    if latency:
        parts += ["### Small-batch latency", "", latency, ""]
    cold = coldstart_table(results)
    if cold:
        parts += ["### Cold start", "", cold, ""]
    bad = results["disagreements"]
    parts += ["### Agreement", ""]
    if bad:
        parts.append(f"**{len(bad)} DISAGREEMENT(S)** (peer value vs lossforge's, beyond float32 tolerance):")
        parts += [f"* {d['loss']} at {d['size']:,}: {d['peer']} = {d['peer_value']!r}, lossforge = "
                  f"{d['lossforge_value']!r} (rel. diff {d['rel_diff']:.2e} > {d['rtol']:.1e})" for d in bad]
    else:
        parts.append("Every peer's value agrees with lossforge's within float32 tolerance.")
    missed = target_summary(results)
    parts += ["", "### Issue 5 targets missed", ""]
    parts += [f"* {m}" for m in missed] if missed else ["none"]
    return "\n".join(parts) + "\n"


def write_json(results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")


def _jsonable(obj):
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def plot(results, path: Path) -> str | None:
    """Throughput (GB/s of inputs read) vs elements, one panel per loss; None if it cannot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    rows = results["throughput"]
    losses = list(dict.fromkeys(r["loss"] for r in rows))
    if not losses:
        return "nothing to plot"
    cols = min(4, len(losses))
    nrows = math.ceil(len(losses) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), dpi=72, squeeze=False)
    styles = {"lossforge": dict(color="black", linewidth=2.2), "floor": dict(color="gray", linestyle="--")}
    names = {"floor": "read floor (numba sum)"}
    colors = {"numpy": "tab:blue", "torch": "tab:orange", "jax": "tab:green", "tensorflow": "tab:red"}
    for ax, loss in zip(axes.flat, losses):
        mine = sorted((r for r in rows if r["loss"] == loss), key=lambda r: r["size"])
        x = [r["elements"] for r in mine]
        series = {"lossforge": [r["lossforge"] for r in mine], "floor": [r["floor"] for r in mine]}
        for p in _peer_names(results):
            series[p] = [r["peers"].get(p) for r in mine]
        for name, times in series.items():
            pts = [(xi, r["bytes"] / t / 1e9) for xi, r, t in zip(x, mine, times) if t]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=names.get(name, LABELS.get(name, name)),
                        **styles.get(name, dict(color=colors.get(name))))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(loss, fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xlabel("elements")
        ax.set_ylabel("GB/s (inputs read once)")
    for ax in list(axes.flat)[len(losses):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(f"lossforge {results['meta']['lossforge']} vs peers: float32 throughput "
                 f"({results['meta']['cpu']}, {results['meta']['date'][:10]})", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 / nrows, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, -0.01))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return None


def readme_block(results, size: int = TARGET_SIZE) -> str:
    """The README's Performance table (throughput and value+gradient at ``size``) and its
    latency and cold-start lines, from a results JSON."""
    meta = results["meta"]
    peers = _peer_names(results)
    grad = {g["loss"]: g for g in results.get("grad") or []}
    rows = [r for r in results["throughput"] if r["size"] == size]
    lines = [f"`{meta['command'].strip()}` on {meta['cpu']} ({meta['cores']} cores, shared: load "
             f"{meta['load_before']} before, {meta['load_after']} after), lossforge commit "
             f"{meta['commit']}, {meta['date'][:10]}; peers "
             + ", ".join(f"{LABELS[p]} {meta['peers'][p]}" for p in peers) + ". "
             f"{size:,} float32 elements (row-wise losses: "
             f"{next((r['shape'] for r in rows if 'x1000' in r['shape']), '-')}), best of "
             f"{meta['rounds']} rounds' median call:", "",
             "| loss | lossforge | " + " | ".join(LABELS[p] for p in peers)
             + " | vs fastest peer | GB/s | % of floor | best calls: vs fastest, % of floor "
             "| value+grad / value |",
             "|---|---|" + "---|" * len(peers) + "---|---|---|---|---|"]
    for r in rows:
        cells = [fmt_time(r["peers"].get(p)) for p in peers]
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x ({LABELS[r['fastest_peer']]})"
        g = grad.get(r["loss"])
        lines.append(f"| {r['loss']} | {fmt_time(r['lossforge'])} | " + " | ".join(cells)
                     + f" | {speedup} | {r['gbps']:.1f} | {r['pct_floor']:.0f}% | {_best_calls(r)} | "
                     + (f"{g['ratio']:.2f}x" if g and g["elements"] == r["elements"] else "-") + " |")
    floor = [r["floor_gbps"] for r in rows]
    if floor:
        lines += ["", f"Read floor in that run: {min(floor):.1f}-{max(floor):.1f} GB/s."]
    latency = results.get("latency") or []
    if latency:
        shape = "x".join(map(str, latency[0]["shape"]))
        text = "; ".join(f"{LABELS.get(r['library'], r['library'])} {r['what']} {r['us']:.1f} us"
                         for r in latency if r["us"] is not None)
        lines += ["", f"Small batches ({shape} float32, per call): {text}."]
    cold = results.get("coldstart")
    if cold:
        lines += ["", "Cold start (fresh processes, warm kernel cache, median): "
                  + "; ".join(f"{cold[k]['what']} {cold[k]['median_s']:.2f} s"
                              for k in ("import", "numba", "first_call", "run")) + "."]
    if results.get("disagreements"):
        lines += ["", f"**{len(results['disagreements'])} peer disagreement(s)**: see latest.md."]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m benchmarks.report [results.json]: the README block
    import sys
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json"
    print(readme_block(json.loads(source.read_text())))
