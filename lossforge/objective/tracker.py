"""Tracking an objective's components over steps and epochs, with exact pooled means.

Each call of an `Objective` is recorded with every component's raw value, weight, weighted
value and, for loss terms, the additive `LossState`. `Tracker.mean` of a loss term pools the
states of the selected calls and reduces once -- the number one call on all their data would
give -- rather than averaging per-call means. Regularizers, weights and the total have no
denominators: their mean is the arithmetic mean over calls.
"""
from __future__ import annotations

import csv
import threading

from ..errors import InvalidArgumentError
from ..reduction import LossState, finalize

__all__ = ["Tracker"]


class Tracker:
    """The records of an objective's calls since the last `reset`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list = []  # (step, epoch, ObjectiveResult)
        self._epoch = 0
        self._step = 0

    def __getstate__(self) -> dict:
        """Pickles without its lock (an Objective crosses process pools with its tracker)."""
        with self._lock:
            state = dict(self.__dict__)
            state["_records"] = list(self._records)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def epoch(self) -> int:
        """The current epoch (0-based); `end_epoch` advances it."""
        return self._epoch

    def record(self, result) -> None:
        lock = self._lock  # (acquire/release: cheaper than `with` on every objective call)
        lock.acquire()
        try:
            step = self._step
            self._records.append((step, self._epoch, result))
            self._step = step + 1
        finally:
            lock.release()

    def end_epoch(self) -> int:
        """Close the current epoch; returns the new epoch number."""
        with self._lock:
            self._epoch += 1
            return self._epoch

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._epoch = 0
            self._step = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def _select(self, epoch=None, last=None) -> list:
        with self._lock:
            records = list(self._records)
        if epoch is not None:
            if epoch < 0:
                epoch += self._epoch
            records = [r for r in records if r[1] == epoch]
        if last is not None:
            records = records[-last:] if last > 0 else []
        return records

    def mean(self, name: str = "total", *, epoch: int | None = None, last: int | None = None,
             field: str = "value") -> float:
        """The exact mean of component ``name`` (or ``"total"``) over the selected calls.

        Args:
          name: a component name, or ``"total"``.
          epoch: only calls of this epoch (negative counts back from the current one).
          last: only the last ``last`` calls (after the epoch filter).
          field: ``"value"`` (raw loss), ``"weighted"`` or ``"weight"``.
        """
        records = self._select(epoch, last)
        if not records:
            raise InvalidArgumentError(f"no calls recorded{'' if epoch is None else f' in epoch {epoch}'}"
                                       f" to average {name!r} over.")
        if name == "total":
            return sum(r[2].total for r in records) / len(records)
        components = [r[2].components.get(name) for r in records]
        if any(c is None for c in components):
            known = sorted(records[-1][2].components)
            raise InvalidArgumentError(f"no component named {name!r}; components: {known}.")
        if field == "weight":
            return sum(c.weight for c in components) / len(components)
        if components[0].state is None:  # regularizers: plain mean over calls
            values = [c.value if field == "value" else c.weighted for c in components]
            return sum(values) / len(values)
        state = sum((c.state for c in components), LossState())
        if field == "value":
            return finalize(state, components[0].reduction)
        # weighted: each call's weighted sum scaled by its weight, over the pooled denominator
        scaled = LossState(sum(c.weight * c.state.weighted_sum for c in components),
                           state.weight_sum, state.nonzero_count, state.element_count)
        return finalize(scaled, components[0].reduction)

    def epoch_means(self, name: str, field: str = "value") -> list[float]:
        """The exact mean of ``name`` for each completed epoch, oldest first."""
        return [self.mean(name, epoch=e, field=field) for e in range(self._epoch)
                if self._select(epoch=e)]

    def history(self) -> list[dict]:
        """One dict per call: step, epoch, total and each component's value/weight/weighted."""
        rows = []
        for step, epoch, result in self._select():
            row = {"step": step, "epoch": epoch, "total": result.total}
            for c in result.components.values():
                row[c.name] = c.value
                row[f"{c.name}/weight"] = c.weight
                row[f"{c.name}/weighted"] = c.weighted
            rows.append(row)
        return rows

    def to_csv(self, path) -> None:
        """Write `history` as CSV (one row per call) to ``path``."""
        rows = self.history()
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns or ["step", "epoch", "total"])
            writer.writeheader()
            writer.writerows(rows)
