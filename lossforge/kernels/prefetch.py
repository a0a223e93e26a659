"""Software prefetch of the rows a row-wise kernel reads next (and of the lines an elementwise
kernel reads next: `prefetch_lines`).

A row-wise loss reads a row (a softmax row of 1000 float32 logits: 4000 bytes, about one
4 KiB page) from memory, then computes on it from L1 cache (a log-sum-exp: ~1000 exps). The
hardware's stream prefetchers stop at page boundaries, so while one row's exps are computed
the next row is not on its way: memory and computation take turns. Asking for the row
`AHEAD` rows on, one prefetch per cache line before each row, overlaps them: a standalone
sparse softmax kernel at 16384 x 1000 float32 (2 threads) took 4.0 -> 3.4-3.5 ms, below what
the same rows took from cache (4.3 ms); the built-in kernel 3.5-3.9 -> 3.1-3.4 ms. Which
kernels ask (compute-bound rows, and not softmax's, with its row of labels) is measured and
decided in ``template.py`` (`_prefetch_ahead`).

Those figures are an AMD EPYC's. On an Intel Xeon (a Sapphire Rapids VM, 2 threads) the same
prefetch made the built-in sparse softmax slower: 4.9 -> 6.4 ms for its value, 6.65 -> 7.5 ms
for its value and gradient; asking for the row 1 ahead, into L2 only, or only the first line
of each page of the row was slower too. So rows are asked for only on an AMD CPU
(`PREFETCH_ROWS`). Line hints (`prefetch_lines`) were measured on that Intel VM and help there.

A prefetch is a hint: it never faults and changes no value, so a kernel gives the same bits
with or without it. `prefetch_row` asks only for rows of arrays whose size is a whole number
of rows of at least `_MIN_ROW_BYTES` (row-wise inputs, not the sparse labels' one int per row).
"""
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


def cpu_is_amd(cpuinfo: str, llvm_cpu_name) -> bool:
    """Whether the host CPU is AMD's: from ``/proc/cpuinfo``'s text if it names a vendor, else
    from LLVM's name for the host CPU, ``llvm_cpu_name()`` (AMD's Zen cores are ``znver1``,
    ``znver2``, ...), asked only then."""
    for line in cpuinfo.splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[-1].strip() == "AuthenticAMD"
    return llvm_cpu_name().startswith("znver")


def _host_cpu_is_amd() -> bool:
    import llvmlite.binding as llvm
    try:
        with open("/proc/cpuinfo") as file:
            # the first processor's block names the vendor: the whole file of a many-core
            # machine takes milliseconds to generate, on the first loss call's path
            cpuinfo = file.read(4096)
    except OSError:  # not Linux
        cpuinfo = ""
    return cpu_is_amd(cpuinfo, llvm.get_host_cpu_name)


#: Whether row-wise kernels ask for rows ahead on this host (measured: see above). Compiled
#: in as a constant; the kernels' cache directory is named after it too (`lossforge.kernels`).
PREFETCH_ROWS = _host_cpu_is_amd()

AHEAD = 2  # rows ahead: 1 row gained 11%, 2 and 4 rows 13-14% (sparse softmax, above)
_LINE = 64  # bytes per cache line (x86-64; a different size only spaces the hints otherwise)
_MIN_ROW_BYTES = 4 * _LINE  # a shorter row is on its way with the row before it


@intrinsic
def _prefetch(typingctx, address):
    """``llvm.prefetch`` of the byte at ``address`` for reading, into every cache level."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", fnty=fnty)
        # (address, read = 0, locality = 3: keep in all levels, data cache = 1)
        builder.call(fn, [builder.inttoptr(args[0], byte_ptr), ir.Constant(i32, 0),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(address), codegen


def _rows_contiguous(a):
    """Whether each loss element's inputs are one contiguous run of ``a``."""


@overload(_rows_contiguous, inline="always")
def _rows_contiguous_impl(a):
    if a.ndim == 3:  # cosine's (outer, axis, inner) view: a fibre is strided unless inner == 1
        return lambda a: a.shape[2] == 1
    return lambda a: True


@njit(inline="always")
def prefetch_row(a, j, n):
    """Ask for row ``j`` of ``a``, seen as ``n`` rows of ``a.size // n`` elements (C order),
    if ``j < n`` and the rows are long enough to be worth it."""
    if j >= n or not _rows_contiguous(a):
        return
    per = a.size // n
    row_bytes = per * a.itemsize
    if per * n != a.size or row_bytes < _MIN_ROW_BYTES:
        return
    start = a.ctypes.data + j * row_bytes
    for offset in range(0, row_bytes, _LINE):
        _prefetch(start + offset)


@njit(inline="always")
def prefetch_lines(a, start, stop):
    """Ask for the cache lines of elements ``[start, stop)`` of the contiguous 1-d ``a``
    (clipped to its end): one hint per line's worth of bytes from element ``start`` on.

    A compute-bound elementwise loop (a formula on vmath's polynomials) reads its inputs too
    slowly for the hardware's prefetchers to keep ahead of it: memory and computation take
    turns. Asking, before each few lines' worth of elements, for the lines a fixed distance
    on overlaps them (see ``template_elementwise.py`` for the distance and the figures)."""
    stop = min(stop, a.shape[0])
    if start >= stop:
        return
    base = a.ctypes.data
    for address in range(base + start * a.itemsize, base + stop * a.itemsize, _LINE):
        _prefetch(address)
