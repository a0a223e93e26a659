"""Recycled memory for large results (`lossforge.buffers`): a dropped result's memory is
handed out again, a held one (or any view of it) never is, the cap and the switch work, and
recycled results carry the right numbers, from one thread or many."""
import concurrent.futures as cf

import numpy as np
import pytest

import lossforge
from lossforge import buffers
from lossforge.reduction import Reduction

MSE = lossforge.registry.get("mean_squared_error")
N = buffers.MIN_BYTES // 4 + 5  # float32 elements: just past the pooled size


@pytest.fixture(autouse=True)
def _empty_pool():
    buffers.release()
    yield
    buffers.release()


def _inputs(seed):
    rng = np.random.default_rng(seed)
    return rng.random(N, dtype=np.float32), rng.random(N, dtype=np.float32)


def _mse_grad(y, p):
    return 2 * (p.astype(np.float64) - y) / y.size


def _address(a):
    return a.__array_interface__["data"][0]


def test_a_dropped_gradient_is_recycled_and_a_held_one_never_is():
    y, p = _inputs(0)
    y2, p2 = _inputs(1)
    _, g1 = MSE.value_and_grad(y, p)
    kept = g1.copy()
    _, g2 = MSE.value_and_grad(y2, p2)  # g1 is held: other memory, g1 untouched
    assert not np.shares_memory(g1, g2) and np.array_equal(g1, kept)
    first = _address(g1)
    del g1
    value, g3 = MSE.value_and_grad(y2, p2)  # g1 dropped: its memory again, the new numbers
    assert _address(g3) == first
    np.testing.assert_allclose(g3, _mse_grad(y2, p2), rtol=1e-5, atol=1e-15)
    assert value == MSE(y2, p2)
    view = g3[::3]
    del g3
    _, g4 = MSE.value_and_grad(y, p)  # only a view of g3 is left: g3's memory stays taken
    assert _address(g4) != first and not np.shares_memory(g4, view)
    np.testing.assert_allclose(g4, _mse_grad(y, p), rtol=1e-5, atol=1e-15)
    np.testing.assert_allclose(view, _mse_grad(y2, p2)[::3], rtol=1e-5, atol=1e-15)


def test_per_element_losses_are_recycled_too():
    y, p = _inputs(2)
    first = MSE(y, p, reduction=Reduction.NONE)
    address = _address(first)
    del first
    again = MSE(y[::-1].copy(), p, reduction=Reduction.NONE)
    assert _address(again) == address
    np.testing.assert_allclose(again, (p.astype(np.float64) - y[::-1]) ** 2, rtol=1e-6)


def test_small_arrays_and_a_zero_cap_are_not_pooled(monkeypatch):
    small, recycled = buffers.empty((1000,), np.float32)
    assert not recycled and small.base is None  # NumPy's own array
    monkeypatch.setenv("LOSSFORGE_BUFFER_POOL_MB", "0")
    big, _ = buffers.empty((N,), np.float32)
    assert big.base is None
    del big
    again, recycled = buffers.empty((N,), np.float32)
    assert not recycled and again.base is None
    assert buffers.release() == 0


def test_the_pool_keeps_two_buffers_per_size_and_stays_under_its_cap(monkeypatch):
    a, recycled_a = buffers.empty((N,), np.float32)
    b, recycled_b = buffers.empty((N,), np.float32)
    c, _ = buffers.empty((N,), np.float32)  # both pooled buffers are held: NumPy's own
    assert not recycled_a and not recycled_b
    assert a.base is not None and b.base is not None and c.base is None
    del a
    d, recycled = buffers.empty((N,), np.float32)
    assert recycled and d.base is not None
    del b, c, d
    # a cap for one buffer: a new size first drops the free ones of the others
    monkeypatch.setenv("LOSSFORGE_BUFFER_POOL_MB", str(2 * N * 4 / 2 ** 20))
    e, _ = buffers.empty((2 * N,), np.float32)
    assert e.base is not None  # the two free N-sized buffers made room
    f, _ = buffers.empty((N,), np.float32)  # no room while e is held
    assert f.base is None
    del e, f
    assert buffers.release() == 2 * N * 4


def test_a_malformed_cap_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LOSSFORGE_BUFFER_POOL_MB", "lots")
    with pytest.raises(ValueError, match="LOSSFORGE_BUFFER_POOL_MB"):
        buffers.empty((N,), np.float32)


def test_threads_sharing_the_pool_each_get_their_own_numbers():
    def work(seed):
        y, p = _inputs(seed)
        want = _mse_grad(y, p)
        for _ in range(4):
            _, g = MSE.value_and_grad(y, p)
            np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-15)
        return seed

    with cf.ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(work, range(4))) == [0, 1, 2, 3]
