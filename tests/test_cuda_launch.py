"""The CUDA fast path's host-side pieces, without a GPU: argument packing and call layouts.

On a GPU, ``test_cuda_gpu.py::test_the_fast_launch_gives_numba_cudas_launch_bits`` compares
every loss launched this way with numba-cuda's own launch, bit for bit; ``test_cuda_ptx.py``
compares `slot_count` with the parameters of every kernel's PTX. Here: what each scalar
becomes in its 8-byte slot, which signatures the packer refuses, and which inputs and
options the launch plans (`lossforge.kernels.cuda_small`) leave to the general path.
"""
import struct

import numba
import numpy as np
import pytest

from lossforge.kernels import cuda_launch, cuda_small


def _low_bytes(slot: int, size: int) -> bytes:
    return struct.pack("<q", slot)[:size]


def test_scalars_are_packed_into_the_low_bytes_of_their_slot():
    values = (7, -3, 2.5, -0.0, float("nan"), np.float32(1.5), np.int32(-1), np.float16(-2.0),
              np.uint8(200), np.bool_(True), (4, 0.25, (np.float32(3.0), True)))
    slots = cuda_launch.pack(values, [])
    assert len(slots) == 14  # the tuples flattened in order
    assert slots[:2] == [7, -3]
    for slot, value in zip(slots[2:5], values[2:5]):
        assert _low_bytes(slot, 8) == struct.pack("<d", value)  # NaN and -0.0 bit for bit
    for slot, value in zip(slots[5:10], values[5:10]):
        assert _low_bytes(slot, value.itemsize) == value.tobytes()
    assert slots[10] == 4 and _low_bytes(slots[11], 8) == struct.pack("<d", 0.25)
    assert _low_bytes(slots[12], 4) == np.float32(3.0).tobytes() and slots[13] == 1
    assert all(-2 ** 63 <= s < 2 ** 63 for s in slots)  # each fits the int64 slot buffer


def test_slot_count_follows_numbas_flattening_and_refuses_what_pack_cannot_write():
    t = numba.types
    array = lambda ndim: t.Array(t.float32, ndim, "C")  # noqa: E731
    assert cuda_launch.slot_count((array(1), array(3), t.int64, t.float64)) == 7 + 11 + 2
    assert cuda_launch.slot_count((t.UniTuple(t.float64, 3), t.Tuple((t.int64, t.float32)))) == 5
    assert cuda_launch.slot_count((t.float32, t.int32, t.boolean, t.float16)) == 4
    assert cuda_launch.slot_count((t.complex128,)) == -1  # two parameters: not packed
    assert cuda_launch.slot_count((array(1), t.Tuple((t.int64, t.complex64)))) == -1


class _Interface:
    """An object exporting the CUDA Array Interface (version 3), as CuPy and PyTorch do."""

    def __init__(self, **face):
        self.__cuda_array_interface__ = dict(
            {"shape": (4, 3), "typestr": "<f4", "data": (1 << 40, False), "version": 3,
             "strides": None}, **face)


@pytest.mark.parametrize("stream", [None, 1])
def test_an_interface_on_the_legacy_default_stream_is_described_without_a_copy(stream):
    shape, dtype, strides, pointer = cuda_small._describe(_Interface(stream=stream))
    assert (shape, dtype, strides, pointer) == ((4, 3), np.dtype(np.float32), None, 1 << 40)


@pytest.mark.parametrize("face", [{"stream": 2}, {"stream": 0x7F00}, {"mask": object()}])
def test_other_streams_and_masked_arrays_take_the_general_path(face):
    # the general path (numba's as_cuda_array) synchronises with the producer's stream; a
    # replayed launch on the legacy default stream would not
    assert cuda_small._describe(_Interface(**face)) is None


@pytest.mark.parametrize("array", [np.zeros(3), [0.0, 1.0], 1.0])
def test_host_inputs_take_the_general_path(array):
    assert cuda_small._describe(array) is None


def test_parameter_keys_keep_types_apart_and_refuse_non_scalars():
    key = cuda_small._params_key
    assert len({key({"delta": 1.0}), key({"delta": 1}), key({"delta": True})}) == 3
    assert key({"axis": 1, "name": "x"}) == (("axis", int, 1), ("name", str, "x"))
    assert key({"class_weights": np.ones(3)}) is None
    assert key({"delta": np.float32(1.0)}) is None  # a NumPy scalar: the general path
    # an option not given (the TF API's cosine_distance(..., dim=None)) keys as None
    assert key({"axis": 1, "dim": None}) == (("axis", int, 1), ("dim", type(None), None))
    assert key({"dim": None}) != key({"dim": 0})


def _device_array(shape, strides, dtype=np.float32):
    """A numba device array header with no device memory behind it (none is read here)."""
    from numba.cuda.cudadrv.devicearray import DeviceNDArray
    return DeviceNDArray(shape, strides, np.dtype(dtype), gpu_data=object())


@pytest.mark.parametrize("shape, strides", [
    ((3, 4), (16, 4)), ((3, 4), (4, 12)), ((3, 4), (32, 4)), ((3, 1), (4, 4)), ((1,), (4,)),
    ((3, 4), (0, 4)), ((2, 3, 4), (48, 16, 4)), ((2, 3, 4), (48, 4, 12)), ((2, 3, 4), (4, 8, 24))])
def test_the_overload_key_has_numbas_layout(shape, strides):
    # a kernel compiled for 'C' or 'F' arrays has the strides built in: an array of another
    # layout must not reuse its handle
    array = _device_array(shape, strides)
    assert cuda_launch._layout(array) == array._numba_type_.layout
    assert cuda_launch._key((array,)) == ((np.dtype(np.float32), len(shape),
                                          array._numba_type_.layout),)


def test_an_array_is_packed_as_numbas_array_struct():
    array = _device_array((5, 3), (12, 4))
    # meminfo, parent, nitems, itemsize, data (no memory here: 0), shape, strides in bytes
    assert cuda_launch.pack((array, 9), []) == [0, 0, 15, 4, 0, 5, 3, 12, 4, 9]
