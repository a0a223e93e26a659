"""LossCollection: TF 1.x's loss collections, scoped and context-local."""
import asyncio
import threading

import numpy as np
import pytest

import lossforge
from lossforge import LossCollection

L = lossforge.losses


def test_losses_computed_inside_are_collected_and_summed():
    y, p = np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)
    with LossCollection() as c:
        a = L.mean_squared_error(y, p)
        b = L.absolute_difference(y, p, weights=2.0, scope="depth")
        L.add_loss(np.float32(0.25), loss_collection=lossforge.REGULARIZATION_LOSSES)
        assert L.get_losses() == [a, b]
        assert L.get_regularization_losses() == [np.float32(0.25)]
        assert L.get_regularization_loss() == pytest.approx(0.25)
        assert L.get_total_loss() == pytest.approx(a + b + 0.25)
        assert L.get_total_loss(add_regularization_losses=False) == pytest.approx(a + b)
        assert L.get_losses(scope="depth") == [b]
        assert L.get_total_loss(scope="mean_squared") == pytest.approx(a)
    assert len(c) == 3 and c.total() == pytest.approx(a + b + 0.25)  # kept after the block


def test_nothing_is_collected_outside_a_block():
    L.mean_squared_error([1.0], [2.0])
    assert L.get_losses() == [] and L.get_regularization_loss() == 0.0
    with pytest.raises(ValueError, match="with lossforge.LossCollection"):
        L.get_total_loss()


def test_loss_collection_argument_and_none():
    with LossCollection() as c:
        L.mean_squared_error([1.0], [2.0], loss_collection=None)
        L.mean_squared_error([1.0], [2.0], loss_collection="aux")
        assert L.get_losses() == [] and L.get_losses(loss_collection="aux") == [1.0]
        with pytest.raises(ValueError, match="No losses to sum"):
            L.get_total_loss()
    assert len(c) == 1


def test_nested_collections_use_the_innermost():
    with LossCollection() as outer:
        L.mean_squared_error([1.0], [2.0])
        with LossCollection() as inner:
            L.mean_squared_error([1.0], [3.0])
            assert L.get_total_loss() == pytest.approx(4.0)
        assert L.get_total_loss() == pytest.approx(1.0)
    assert len(outer) == 1 and len(inner) == 1


def test_none_reduced_losses_cannot_be_summed():
    with LossCollection():
        L.mean_squared_error([1.0, 2.0], [2.0, 2.0], reduction=lossforge.Reduction.NONE)
        L.mean_squared_error([1.0], [2.0])
        with pytest.raises(ValueError, match="different shapes"):
            L.get_total_loss()


def test_collections_are_private_to_each_thread():
    results, barrier = {}, threading.Barrier(4)

    def work(k):
        with LossCollection():
            barrier.wait()
            for _ in range(50):
                L.absolute_difference([0.0], [float(k)])
            results[k] = (len(L.get_losses()), float(L.get_total_loss()))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: (50, 50.0 * k) for k in range(4)}


def test_collections_are_private_to_each_asyncio_task():
    async def task(k):
        with LossCollection():
            L.absolute_difference([0.0], [float(k)])
            await asyncio.sleep(0)
            L.absolute_difference([0.0], [float(k)])
            await asyncio.sleep(0)
            return float(L.get_total_loss())

    async def main():
        return await asyncio.gather(*(task(k) for k in range(5)))

    assert asyncio.run(main()) == [2.0 * k for k in range(5)]
