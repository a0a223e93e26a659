"""Non-temporal ("streaming") stores for kernel outputs too large to stay in cache.

An ordinary store to a line that is not in cache first reads the line from memory (a
read-for-ownership), so writing a gradient the size of the predictions costs as much memory
traffic as reading the labels and predictions together: a memory-bound loss's value+gradient
pass moved 16 bytes per float32 element where its value pass moved 8. A non-temporal store
writes whole lines without reading them (12 bytes per element). Measured on a standalone MSE
value+gradient kernel (float32, 2 threads, Intel Xeon VM with AVX-512), streaming the gradient
over plain stores took:

=============  ====================  =================================
elements       gradient bytes        time, streamed / plain stores
=============  ====================  =================================
4,194,304      16 MiB                1.05-1.13 (slower)
8,388,608      32 MiB                0.91
16,777,216     64 MiB                0.82-0.84
33,554,432     128 MiB               0.83
=============  ====================  =================================

Below a few tens of MiB the lines a plain store leaves in cache are worth more (to the
pass's own read-for-ownership and to whoever reads the gradient next), so a kernel streams
only an output of at least `STREAM_MIN_BYTES` (`streams`).

A kernel writes a block of output to an L1 buffer as usual and copies it out with
`stream_copy` (aligned 64-byte non-temporal stores; plain ones for an unaligned head and
tail). Non-temporal stores are weakly ordered, so a kernel that made any ends with
`store_fence` before another thread may read what it wrote.
"""
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from lossforge.kernels.prefetch import _LINE  # bytes per cache line: per non-temporal store

STREAM_MIN_BYTES = 32 << 20  # outputs at least this large are streamed (table above)


@intrinsic
def _stream_line(typingctx, dst, src):
    """Copy the 64 bytes at address ``src`` (any alignment) to the 64-byte-aligned address
    ``dst`` with a non-temporal store."""
    if not (isinstance(dst, types.Integer) and isinstance(src, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        line = ir.VectorType(ir.IntType(64), _LINE // 8).as_pointer()
        value = builder.load(builder.inttoptr(args[1], line), align=1)
        store = builder.store(value, builder.inttoptr(args[0], line), align=_LINE)
        store.set_metadata("nontemporal",
                           builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()
    return types.void(dst, src), codegen


@intrinsic
def store_fence(typingctx):
    """A sequentially consistent fence (``mfence`` on x86-64), which also orders the
    non-temporal stores before it: the stores a thread made before it are visible to a
    thread that synchronises with it afterwards."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.void(), codegen


@njit(inline="always")
def streams(out):
    """Whether a kernel should write ``out`` with non-temporal stores: it is large enough."""
    return out.size * out.itemsize >= STREAM_MIN_BYTES


@njit
def stream_copy(dst, src):
    """``dst[:] = src`` for contiguous 1-d arrays of one dtype, whole 64-byte lines of ``dst``
    with non-temporal stores (the caller ends with `store_fence`).

    A function of its own, called once per block: inlined into every kernel that may stream,
    it added a third to a memory-bound loss's first value+gradient compile (MSE, 1.55 ->
    2.07 s; 1.9 s so). Not cached by numba itself, as no function outside the generated
    kernel modules is (numba would write beside the package's sources): a kernel loaded from
    lossforge's cache holds the code it links in."""
    n = src.shape[0]
    size = dst.itemsize
    d = dst.ctypes.data
    s = src.ctypes.data
    per_line = _LINE // size
    head = (_LINE - d % _LINE) % _LINE // size
    if d % size != 0 or per_line * size != _LINE:  # lines never align: plain stores
        head = n
    head = min(head, n)
    for i in range(head):
        dst[i] = src[i]
    i = head
    while i + per_line <= n:
        _stream_line(d + i * size, s + i * size)
        i += per_line
    for k in range(i, n):
        dst[k] = src[k]
