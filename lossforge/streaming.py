"""Reading ``.npy``/``.npz`` files in chunks of rows, with memory bounded by one chunk.

`read_chunks` turns a file (or a mapping of arrays / ``.npy`` paths) into an iterable of
batch mappings for `Objective.evaluate`: chunk ``i`` holds rows ``[i*chunk_size,
(i+1)*chunk_size)`` of every array whose first axis is the data's length N; arrays of rank 0
or with a first axis of 1 (broadcast weights such as ``(1, D)``) are passed whole with every
chunk.

How each source is read:

* ``.npy``: ``np.load(mmap_mode="r")``; chunks are views of the memory map (no copy).
* ``.npz`` written by ``np.savez`` (stored, uncompressed members): each member is memory-mapped
  at its offset inside the zip file, so chunks are views too.
* ``.npz`` written by ``np.savez_compressed``: each member is decompressed sequentially, one
  chunk at a time, into a fresh array.

Memory-mapped pages already consumed are released (``madvise(MADV_DONTNEED)``, where the
platform has it) before the next chunk is read, so the resident memory stays about one chunk
whatever the file's size; arrays you kept from earlier chunks stay valid (their pages are read
back from the file when touched).

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "data.npz")
    >>> np.savez(path, y=np.arange(10.0), p=np.zeros(10), w=np.ones((1,)))
    >>> chunks = read_chunks(path, chunk_size=4)
    >>> len(chunks), [c["y"].tolist() for c in chunks]
    (3, [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0]])
"""
from __future__ import annotations

import mmap
import os
import struct
import zipfile
from collections.abc import Mapping

import numpy as np

from .errors import InvalidArgumentError, InvalidTypeError

__all__ = ["read_chunks", "Chunks", "load_arrays"]


def _check_chunk_size(chunk_size) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise InvalidTypeError(f"`chunk_size` must be an int (rows per chunk); got "
                               f"{type(chunk_size).__name__} {chunk_size!r}.")
    if chunk_size < 1:
        raise InvalidArgumentError(f"`chunk_size` must be >= 1 (rows per chunk); got {chunk_size}.")
    return int(chunk_size)


def read_chunks(source, chunk_size: int, keys=None) -> "Chunks":
    """An iterable of batch mappings (chunks of ``chunk_size`` rows) over ``source``.

    Args:
      source: a ``.npz`` path, a ``.npy`` path (its key is the file's stem), or a mapping of
        key -> array or ``.npy`` path.
      chunk_size: rows per chunk (the last may be shorter).
      keys: read only these keys (default: all); a missing one is an error.

    The result has ``len()`` (the number of chunks) and can be iterated more than once, each
    time reading the files afresh.
    """
    return Chunks(source, _check_chunk_size(chunk_size), keys)


class Chunks:
    """The chunks of `read_chunks`: iterable (repeatedly), with a length."""

    def __init__(self, source, chunk_size: int, keys=None) -> None:
        self.source = source
        self.chunk_size = chunk_size
        self.keys = None if keys is None else list(keys)
        with _open(source, self.keys) as arrays:
            self.rows = _rows(arrays)

    def __len__(self) -> int:
        return -(-self.rows // self.chunk_size) if self.rows else 0

    def __iter__(self):
        with _open(self.source, self.keys) as arrays:
            if _rows(arrays) != self.rows:
                raise InvalidArgumentError(f"{_name(self.source)} changed since it was opened: "
                                           f"{self.rows} rows then, {_rows(arrays)} now.")
            for start in range(0, self.rows, self.chunk_size):
                stop = min(start + self.chunk_size, self.rows)
                yield {k: a.read(start, stop) if a.split else a.whole() for k, a in arrays.items()}
                for a in arrays.values():
                    a.release(stop)  # the consumer has moved on: drop what it has read

    def __repr__(self) -> str:
        return f"Chunks({self.source!r}, chunk_size={self.chunk_size}, rows={self.rows}, chunks={len(self)})"


def load_arrays(source, keys) -> dict:
    """The arrays ``keys`` of ``source`` (as `read_chunks` takes it) loaded whole."""
    with _open(source, list(keys)) as arrays:
        return {k: np.array(a.whole()) for k, a in arrays.items()}


def _rows(arrays: dict) -> int:
    lengths = {k: a.shape[0] for k, a in arrays.items() if a.shape and a.shape[0] != 1}
    if len(set(lengths.values())) > 1:
        raise InvalidArgumentError(
            f"the arrays to read in chunks must share their first axis (or have a first axis of 1, "
            f"or rank 0, to be passed whole); first axes: {lengths}.")
    rows = next(iter(lengths.values()), None)
    if rows is None:  # every array is broadcast: one row
        rows = 1
    for a in arrays.values():
        a.split = bool(a.shape) and a.shape[0] == rows
    return rows


# --- sources -------------------------------------------------------------------------------------

class _open:
    """Context manager: ``{key: reader}`` of a source, files closed on exit."""

    def __init__(self, source, keys) -> None:
        self.source, self.keys, self.closers = source, keys, []

    def __enter__(self) -> dict:
        source = self.source
        if isinstance(source, Mapping):
            arrays = {}
            for key, value in source.items():
                if self.keys is not None and key not in self.keys:
                    continue
                if isinstance(value, (str, os.PathLike)):
                    arrays[key] = _MemoryMapped(np.load(value, mmap_mode="r"), key, str(value))
                else:
                    arrays[key] = _InMemory(np.asarray(value), key)
        elif isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not os.path.exists(path):
                raise InvalidArgumentError(f"`source`: no such file {path!r}.")
            if path.endswith(".npy"):
                key = os.path.splitext(os.path.basename(path))[0]
                arrays = {key: _MemoryMapped(np.load(path, mmap_mode="r"), key, path)}
            elif zipfile.is_zipfile(path):
                archive = zipfile.ZipFile(path)
                self.closers.append(archive.close)
                arrays = _npz_members(archive, path, self.keys, self.closers)
            else:
                raise InvalidArgumentError(f"`source` {path!r} is neither a .npy file nor a .npz "
                                           f"archive.")
        else:
            raise InvalidTypeError(f"`source` must be a .npy/.npz path or a mapping of key -> array "
                                   f"or .npy path; got {type(source).__name__}.")
        if self.keys is not None:
            missing = [k for k in self.keys if k not in arrays]
            if missing:
                raise InvalidArgumentError(f"`source` {_name(source)} lacks the key(s) {missing}; "
                                           f"it has {sorted(_all_keys(source))}.")
        for key, a in arrays.items():
            if a.dtype.hasobject:
                raise InvalidTypeError(f"array {key!r} of {_name(source)} holds Python objects "
                                       f"(dtype {a.dtype}); only numeric arrays can be read.")
        return arrays

    def __exit__(self, *exc) -> None:
        for close in reversed(self.closers):
            close()


def _name(source) -> str:
    return repr(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else "the mapping"


def _all_keys(source) -> list:
    if isinstance(source, Mapping):
        return list(source)
    path = os.fspath(source)
    if path.endswith(".npy"):
        return [os.path.splitext(os.path.basename(path))[0]]
    with zipfile.ZipFile(path) as archive:
        return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]


class _InMemory:
    split = False

    def __init__(self, array: np.ndarray, key: str) -> None:
        self.array, self.key, self.shape, self.dtype = array, key, array.shape, array.dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop].view(np.ndarray)

    def whole(self) -> np.ndarray:
        return self.array.view(np.ndarray)

    def release(self, stop: int) -> None:
        pass


class _MemoryMapped(_InMemory):
    """Chunks are views of a memory map; `release` drops the pages of rows already read."""

    def __init__(self, array: np.ndarray, key: str, path: str) -> None:
        super().__init__(array, key)
        self.path = path
        self.map = getattr(array, "_mmap", None)
        self.released = 0  # bytes of the map released so far
        self.base = None
        if self.map is not None and hasattr(self.map, "madvise") and array.size and \
                array.flags.c_contiguous:
            self.base = np.frombuffer(self.map, dtype=np.uint8).ctypes.data

    def release(self, stop: int) -> None:
        if self.base is None or not self.split:
            return
        end = self.array[stop:].ctypes.data - self.base if stop < self.shape[0] else len(self.map)
        end -= end % mmap.PAGESIZE
        if end > self.released:
            try:
                self.map.madvise(mmap.MADV_DONTNEED, self.released, end - self.released)
            except (OSError, ValueError, AttributeError):  # not supported here: keep the pages
                self.base = None
                return
            self.released = end


class _Streamed(_InMemory):
    """A compressed ``.npz`` member, decompressed sequentially one chunk at a time."""

    def __init__(self, archive, member: str, key: str, shape, dtype) -> None:
        self.archive, self.member, self.key = archive, member, key
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64)) if self.shape else 1
        self.file = None
        self.position = 0

    def _skip_header(self):
        f = self.archive.open(self.member)
        version = np.lib.format.read_magic(f)
        _read_header(f, version)
        return f

    def read(self, start: int, stop: int) -> np.ndarray:
        if self.file is None or start != self.position:
            if self.file is not None:
                self.file.close()
            self.file = self._skip_header()
            self.position = 0
            _skip(self.file, start * self.row_items * self.dtype.itemsize)
            self.position = start
        out = np.empty((stop - start,) + self.shape[1:], dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else None
        if view is not None:
            done = 0
            while done < len(view):
                got = self.file.readinto(view[done:])
                if not got:
                    raise InvalidArgumentError(f"member {self.member!r} ended early: the archive is "
                                               f"truncated.")
                done += got
        self.position = stop
        return out

    def whole(self) -> np.ndarray:
        with self.archive.open(self.member) as f:
            version = np.lib.format.read_magic(f)
            _read_header(f, version)
            count = int(np.prod(self.shape, dtype=np.int64))
            data = np.frombuffer(f.read(count * self.dtype.itemsize), dtype=self.dtype)
        return data.reshape(self.shape).copy()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _skip(f, count: int) -> None:
    while count > 0:
        data = f.read(min(count, 1 << 24))
        if not data:
            break
        count -= len(data)


def _read_header(f, version):
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    return np.lib.format._read_array_header(f, version)  # (3, 0): utf-8 field names


def _npz_members(archive: zipfile.ZipFile, path: str, keys, closers) -> dict:
    arrays = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        key = info.filename[:-4]
        if keys is not None and key not in keys:
            continue
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = _read_header(f, version)
            header_size = f.tell()
        if dtype.hasobject:
            raise InvalidTypeError(f"array {key!r} of {path!r} holds Python objects (dtype "
                                   f"{dtype}); only numeric arrays can be read.")
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
            offset = _data_offset(path, info) + header_size
            if int(np.prod(shape, dtype=np.int64)) == 0:
                array = np.zeros(shape, dtype=dtype)
                arrays[key] = _InMemory(array, key)
            else:
                array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape),
                                  order="F" if fortran else "C")
                arrays[key] = _MemoryMapped(array, key, path)
        else:
            if fortran and len(shape) > 1:
                raise InvalidArgumentError(
                    f"array {key!r} of {path!r} is compressed and in Fortran order, so its rows "
                    f"cannot be read one chunk at a time; save it in C order (np.ascontiguousarray) "
                    f"or uncompressed (np.savez).")
            reader = _Streamed(archive, info.filename, key, shape, dtype)
            closers.append(reader.close)
            arrays[key] = reader
    return arrays


def _data_offset(path: str, info: zipfile.ZipInfo) -> int:
    """The offset in the file of a stored member's data (after its local file header)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    signature, *_ = struct.unpack("<4s", header[:4])
    if signature != b"PK\x03\x04":
        raise InvalidArgumentError(f"{path!r}: member {info.filename!r} has a corrupt local header.")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length
