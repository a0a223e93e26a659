"""Time every lossforge loss against NumPy (and TensorFlow, if installed) on the same inputs.

    python benchmarks/bench_losses.py [--elements 4194304] [--repeat 7] [--no-tf]

Each figure is the median of ``--repeat`` back-to-back calls after a warm-up call, in one
process, so ratios compare peers measured under the same machine load. Softmax losses use
``elements / 1000`` rows of 1000 classes. The "floor" row is a Numba parallel float64 sum
over one input array: reading the inputs once costs at least that much per input read.
"""
import argparse
import os
import statistics
import time

import numpy as np

import lossforge
from lossforge import losses


def median_seconds(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def numpy_peers(y, p, probs, labels01, onehot, logits, classes):
    def softmax_ce():
        m = logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
        return np.mean(lse - np.sum(onehot * logits, axis=1))

    return {
        "absolute_difference": lambda: np.mean(np.abs(p - y)),
        "mean_squared_error": lambda: np.mean((p - y) ** 2),
        "huber_loss": lambda: np.mean(np.where(np.abs(p - y) <= 1, 0.5 * (p - y) ** 2,
                                               np.abs(p - y) - 0.5)),
        "log_loss": lambda: np.mean(-labels01 * np.log(probs + 1e-7)
                                    - (1 - labels01) * np.log(1 - probs + 1e-7)),
        "hinge_loss": lambda: np.mean(np.maximum(0, 1 - (2 * labels01 - 1) * p)),
        "sigmoid_cross_entropy": lambda: np.mean(np.maximum(p, 0) - p * labels01
                                                 + np.log1p(np.exp(-np.abs(p)))),
        "softmax_cross_entropy": softmax_ce,
        "sparse_softmax_cross_entropy": softmax_ce,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1 << 22)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-tf", action="store_true", help="skip TensorFlow even if installed")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n, classes = args.elements, 1000
    y = rng.normal(size=n).astype(np.float32)
    p = rng.normal(size=n).astype(np.float32)
    probs = rng.uniform(0.01, 0.99, size=n).astype(np.float32)
    labels01 = (rng.random(n) > 0.5).astype(np.float32)
    rows = n // classes
    logits = rng.normal(size=(rows, classes)).astype(np.float32)
    sparse = rng.integers(0, classes, size=rows)
    onehot = np.eye(classes, dtype=np.float32)[sparse]

    ours = {
        "absolute_difference": lambda: losses.absolute_difference(y, p),
        "mean_squared_error": lambda: losses.mean_squared_error(y, p),
        "huber_loss": lambda: losses.huber_loss(y, p),
        "log_loss": lambda: losses.log_loss(labels01, probs),
        "hinge_loss": lambda: losses.hinge_loss(labels01, p),
        "sigmoid_cross_entropy": lambda: losses.sigmoid_cross_entropy(labels01, p),
        "softmax_cross_entropy": lambda: losses.softmax_cross_entropy(onehot, logits),
        "sparse_softmax_cross_entropy": lambda: losses.sparse_softmax_cross_entropy(sparse, logits),
    }
    peers = {"numpy": numpy_peers(y, p, probs, labels01, onehot, logits, classes)}
    if not args.no_tf:
        try:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            import tensorflow as tf
            v1 = tf.compat.v1.losses
            peers["tensorflow"] = {
                "absolute_difference": lambda: v1.absolute_difference(y, p),
                "mean_squared_error": lambda: v1.mean_squared_error(y, p),
                "huber_loss": lambda: v1.huber_loss(y, p),
                "log_loss": lambda: v1.log_loss(labels01, probs),
                "hinge_loss": lambda: v1.hinge_loss(labels01, p),
                "sigmoid_cross_entropy": lambda: v1.sigmoid_cross_entropy(labels01, p),
                "softmax_cross_entropy": lambda: v1.softmax_cross_entropy(onehot, logits),
                "sparse_softmax_cross_entropy": lambda: v1.sparse_softmax_cross_entropy(sparse, logits),
            }
        except ImportError:
            pass

    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def read_floor(a):
        s = 0.0
        for i in prange(a.size):
            s += a[i]
        return s

    floor = median_seconds(lambda: read_floor(y), args.repeat)
    print(f"{n} float32 elements ({rows} x {classes} for softmax); lossforge {lossforge.__version__}; "
          f"median of {args.repeat}; read floor of one input: {floor * 1e3:.2f} ms")
    header = f"{'loss':30s} {'lossforge':>10s}" + "".join(f" {k:>12s}" for k in peers) + "  fastest peer / lossforge"
    print(header)
    for name, fn in ours.items():
        t = median_seconds(fn, args.repeat)
        peer_times = {k: median_seconds(v[name], args.repeat) for k, v in peers.items()}
        cells = "".join(f" {pt * 1e3:10.2f}ms" for pt in peer_times.values())
        print(f"{name:30s} {t * 1e3:8.2f}ms{cells}  {min(peer_times.values()) / t:6.2f}x")


if __name__ == "__main__":
    main()
