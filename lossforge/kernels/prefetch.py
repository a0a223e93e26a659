"""Software prefetch of the rows a row-wise kernel reads next (and of the pages of an
elementwise kernel's next block: `prefetch_pages`).

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
(`PREFETCH_ROWS`). Page hints (`prefetch_pages`) were measured on that Intel VM and help there.

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


_PAGE = 4096  # bytes per page: where the hardware's stream prefetchers stop


@njit(inline="always")
def prefetch_pages(a, start, stop):
    """Ask for one cache line in each page that elements ``[start, stop)`` of the contiguous
    1-d ``a`` span: elements a page's worth apart, from ``start`` rounded up to a multiple of
    a page's worth (each at the array's own offset within its page).

    A compute-bound elementwise loop (a formula on vmath's polynomials) reads its inputs slowly
    enough that the hardware prefetcher, which stops at each page boundary, lets every new page
    start with a miss: memory and computation take turns. One hint per page, a block ahead,
    restarts it (see ``template_elementwise.py``). Hints into L2 for every line of the next
    block, 512 at once, measured slower than no hints at all (why was not investigated)."""
    step = _PAGE // a.itemsize
    base = a.ctypes.data
    first = (start + step - 1) // step * step
    for q in range(first, stop, step):
        _prefetch(base + q * a.itemsize)
