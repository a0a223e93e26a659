"""Loss collections: TF 1.x's ``GraphKeys.LOSSES`` workflow, scoped so it cannot grow forever.

TF 1.x added every loss to a global graph collection; in an eager library that would leak
inside a training loop. Here losses are collected only inside an explicit
``with LossCollection() as c:`` block, by the innermost such block of the current thread or
asyncio task (``contextvars``). Outside any block nothing is collected.

Example::

    with lossforge.LossCollection() as c:
        lossforge.losses.softmax_cross_entropy(onehot, logits)
        lossforge.losses.mean_squared_error(depth, depth_pred, weights=2.0)
        lossforge.losses.add_loss(1e-4 * l2, loss_collection=lossforge.REGULARIZATION_LOSSES)
        total = lossforge.losses.get_total_loss()   # all three summed
"""
from __future__ import annotations

import contextvars
import re
import threading
from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgumentError, InvalidTypeError
from .inputs import as_array

__all__ = ["LOSSES", "REGULARIZATION_LOSSES", "LossCollection", "CollectedLoss", "add_loss",
           "get_losses", "get_regularization_losses", "get_regularization_loss", "get_total_loss",
           "active_collection"]

#: Name of the collection every loss function adds its result to by default.
LOSSES = "losses"
#: Name of the collection `get_regularization_losses` reads.
REGULARIZATION_LOSSES = "regularization_losses"

_active: contextvars.ContextVar[tuple["LossCollection", ...]] = contextvars.ContextVar(
    "lossforge_loss_collections", default=())

_NO_COLLECTION = ("no loss is collected outside a `with lossforge.LossCollection():` block; "
                  "compute your losses inside one, e.g.\n"
                  "    with lossforge.LossCollection() as collection:\n"
                  "        ...  # loss functions and add_loss() calls\n"
                  "        total = lossforge.losses.get_total_loss()")


@dataclass(frozen=True)
class CollectedLoss:
    """One collected value and the name it was collected under (``"<scope>/value"``)."""

    name: str
    value: object


class LossCollection:
    """A context manager that collects every loss computed inside it.

    Collections nest: losses go to the innermost open one. A collection keeps its contents
    after the block ends, so it can be inspected later (``c.get_losses()``, ``c.total()``).
    """

    def __init__(self) -> None:
        self._items: dict[str, list[CollectedLoss]] = {}
        self._mutex = threading.Lock()

    def __enter__(self) -> "LossCollection":
        _active.set(_active.get() + (self,))
        return self

    def __exit__(self, *exc) -> None:
        # The stack lives in the context of this thread/task only, so one collection may be
        # entered by many threads at once: leaving removes this context's innermost entry of it
        # (no contextvars token, which is only valid in the context that made it).
        stack = _active.get()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is self:
                _active.set(stack[:i] + stack[i + 1:])
                return

    def add(self, value, collection: str = LOSSES, name: str = "loss") -> None:
        """Append ``value`` to the named collection."""
        with self._mutex:
            self._items.setdefault(collection, []).append(CollectedLoss(name, value))

    def items(self, collection: str = LOSSES, scope: str | None = None) -> list[CollectedLoss]:
        """The collected entries whose name matches the regex ``scope`` from its start."""
        with self._mutex:
            entries = list(self._items.get(collection, ()))
        pattern = _scope_pattern(scope)
        if pattern is None:
            return entries
        return [e for e in entries if pattern.match(e.name)]

    def get_losses(self, scope: str | None = None, loss_collection: str = LOSSES) -> list:
        return [e.value for e in self.items(loss_collection, scope)]

    def get_regularization_losses(self, scope: str | None = None) -> list:
        return self.get_losses(scope, REGULARIZATION_LOSSES)

    def total(self, add_regularization_losses: bool = True, scope: str | None = None):
        """The sum of the collected losses (and regularization losses): ``get_total_loss``."""
        values = self.get_losses(scope)
        if add_regularization_losses:
            values += self.get_regularization_losses(scope)
        if not values:
            raise InvalidArgumentError(
                "No losses to sum: the active LossCollection holds no loss"
                + (f" matching scope {scope!r}" if scope else "")
                + ". Compute a loss (or call add_loss) inside the `with LossCollection():` block.")
        return _add_n(values)

    def clear(self) -> None:
        with self._mutex:
            self._items.clear()

    def __len__(self) -> int:
        with self._mutex:
            return sum(len(v) for v in self._items.values())

    def __repr__(self) -> str:
        with self._mutex:
            counts = {k: len(v) for k, v in self._items.items()}
        return f"LossCollection({counts})"


def _scope_pattern(scope):
    """The compiled regex of a ``scope`` argument (None stays None), or an error naming it."""
    if scope is None:
        return None
    if not isinstance(scope, str):
        raise InvalidTypeError(f"`scope` must be a regular expression string or None; got "
                               f"{type(scope).__name__} {scope!r}.")
    try:
        return re.compile(scope)
    except (re.error, OverflowError, RecursionError) as exc:
        raise InvalidArgumentError(f"`scope`={scope!r} is not a valid regular expression: "
                                   f"{exc}.") from None


def _add_n(values: list):
    """``tf.add_n``: elementwise sum of values of one shape; different shapes are an error."""
    # add_loss takes anything (as TF's, which does nothing eagerly); summing needs numbers
    arrays = [as_array(v, "loss") for v in values]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InvalidArgumentError(
            f"Cannot add collected losses of different shapes {sorted(shapes)}: a loss computed "
            f"with reduction=Reduction.NONE is in the collection. Reduce it first, or pass "
            f"loss_collection=None when computing per-element losses.")
    total = arrays[0]
    for a in arrays[1:]:
        total = total + a
    return total[()] if total.ndim == 0 else total


def active_collection() -> LossCollection | None:
    """The innermost open `LossCollection` of this thread or task, or None."""
    stack = _active.get()
    return stack[-1] if stack else None


def add_loss(loss, loss_collection: str | None = LOSSES, name: str = "loss") -> None:
    """Add ``loss`` to ``loss_collection`` of the active collection.

    Does nothing outside a `LossCollection` block or when ``loss_collection`` is falsy,
    as TF's ``add_loss`` does nothing when executing eagerly.
    """
    collection = active_collection()
    if collection is not None and loss_collection:
        collection.add(loss, loss_collection, name)


def get_losses(scope: str | None = None, loss_collection: str = LOSSES) -> list:
    """The losses in ``loss_collection`` whose names match the regex ``scope`` ([] outside a block)."""
    collection = active_collection()
    if collection is None:
        _scope_pattern(scope)  # an invalid scope is an error inside a block or not
        return []
    return collection.get_losses(scope, loss_collection)


def get_regularization_losses(scope: str | None = None) -> list:
    """The values in the ``REGULARIZATION_LOSSES`` collection ([] outside a block)."""
    return get_losses(scope, REGULARIZATION_LOSSES)


def get_regularization_loss(scope: str | None = None, name: str = "total_regularization_loss"):
    """The sum of the regularization losses, or 0.0 if there are none."""
    values = get_regularization_losses(scope)
    return _add_n(values) if values else np.float32(0.0)


def get_total_loss(add_regularization_losses: bool = True, name: str = "total_loss",
                   scope: str | None = None):
    """The sum of the active collection's losses, plus its regularization losses by default.

    Raises:
      InvalidArgumentError: outside a `LossCollection` block, or when nothing was collected.
    """
    collection = active_collection()
    if collection is None:
        raise InvalidArgumentError("get_total_loss: " + _NO_COLLECTION)
    return collection.total(add_regularization_losses, scope)
