"""Timing: warm-up, then rounds of back-to-back calls over rotated input sets.

Every contestant of one measurement (lossforge, the floor, each peer) is timed in the same
rounds, one after another, so all of them see the same machine load. Per contestant and round:
one untimed call (a parallel call after idle pays thread wake-up), then back-to-back calls
cycling through the input sets, each timed on its own: at least ``repeat`` of them, and more
for fast calls, until the round has lasted ~``round_time`` (a tiny call gets hundreds of
samples). The round's figure is the median call (a call that the OS descheduled does not move
it), less the timer's own cost; the reported time is the best round's figure: on a shared
machine, load only ever adds time. The fastest single call is kept too (`Contestant.best_call`).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

_timer_cost: float | None = None


def timer_cost() -> float:
    """The median cost of one ``perf_counter()`` pair (subtracted from each timed call)."""
    global _timer_cost
    if _timer_cost is None:
        clock = time.perf_counter
        pairs = []
        for _ in range(2000):
            t0 = clock()
            pairs.append(clock() - t0)
        _timer_cost = statistics.median(pairs)
    return _timer_cost


@dataclass
class Contestant:
    """``call(i)`` runs on input set ``i`` and returns a finished result; ``value(result)``
    reads the scalar it computed."""

    name: str
    call: Callable[[int], object]
    value: Callable[[object], float] = float
    sets: int = 1
    warm_value: float | None = None
    error: str | None = None
    calls_per_round: int = 1
    rounds: list[float] = field(default_factory=list)
    fastest: list[float] = field(default_factory=list)   # each round's fastest call

    @property
    def best(self) -> float | None:
        """The best round's median call (the reported time)."""
        return min(self.rounds) if self.rounds else None

    @property
    def best_call(self) -> float | None:
        """The fastest single call of all rounds: what the code costs when nothing else runs
        (on a loaded machine a parallel call often waits a scheduler tick for its threads)."""
        return min(self.fastest) if self.fastest else None


def warm_up(c: Contestant, repeat: int, round_time: float) -> None:
    """Call once per input set (compiles, traces, first touches); set ``warm_value`` (set 0)
    and ``calls_per_round``. A raising contestant gets ``error`` instead."""
    try:
        c.warm_value = c.value(c.call(0))
        times = []
        for i in range(1, c.sets + 1):  # every set once more, ending on set 0
            t0 = time.perf_counter()
            c.call(i % c.sets)
            times.append(time.perf_counter() - t0)
    except Exception as exc:  # a peer that cannot compute this case is reported, not fatal
        text = str(exc).strip().splitlines()
        c.error = f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
        return
    typical = max(statistics.median(times), 1e-7)
    c.calls_per_round = max(repeat, min(5000, int(round_time / typical)))


def measure(contestants: list[Contestant], repeat: int, rounds: int,
            round_time: float = 0.02) -> None:
    """Fill each contestant's ``rounds`` (seconds per call: each round's median call)."""
    for c in contestants:
        warm_up(c, repeat, round_time)
    cost = timer_cost()
    clock = time.perf_counter
    live = [c for c in contestants if c.error is None]
    for r in range(rounds):
        # rotate the order each round, so no contestant always runs right after another
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for c in order:
            call, n = c.call, c.sets
            call(0)  # wake the thread pool; untimed
            samples = []
            for i in range(1, c.calls_per_round + 1):
                t0 = clock()
                call(i % n)
                samples.append(clock() - t0)
            c.rounds.append(max(statistics.median(samples) - cost, 1e-9))
            c.fastest.append(max(min(samples) - cost, 1e-9))
