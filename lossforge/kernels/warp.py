"""A warp of 32 GPU threads sharing a row: the GPU's ``row_range`` and ``across_lanes_*``.

A row formula (`lossforge.formulas`, "row-wise") loops over ``row_range(n)`` and combines what
it accumulates with ``across_lanes_sum``/``across_lanes_max``. The CUDA kernel of a loss whose
formulas do so (`lossforge.registry.shares_rows`) runs a warp per row (``template_cuda.py``'s
``LANES``), and its formulas are compiled with these in their place
(`lossforge.registry.jitted_formula`'s ``target="cuda"``): lane ``i`` visits ``k = i, i + 32,
...``, so the warp's loads of one step are 32 neighbouring elements (one thread per row read
32 rows apart), and a butterfly of ``shfl_xor`` exchanges gives every lane the same total.
Addition is commutative and the maximum breaks its one tie (zeros' signs), so each lane's
total has the same bits: the lanes take the same branches afterwards and the lane-0 value the
kernel keeps is every lane's.

Device code only: the numba-cuda types of ``cuda.threadIdx`` and ``shfl_xor_sync`` exist in
the CUDA target, which compiles these inline (no GPU needed to compile, as the rest of the
kernel); the simulator runs the formulas' CPU form, one lane doing a whole row.
"""
import math

from numba import cuda, float32, float64, njit

from lossforge import formulas
from lossforge.formulas import _row_max, across_lanes_sum, row_range

LANES = 32  # a warp
_ALL_LANES = 0xFFFFFFFF


@njit(inline="always")
def lane_range(n):
    """This lane's share of ``range(n)``: ``lane, lane + 32, ...``."""
    return range(cuda.threadIdx.x & (LANES - 1), n, LANES)


@njit(inline="always")
def lanes_sum(s):
    """``s`` summed over the warp's lanes, the same bits in every lane."""
    for offset in (16, 8, 4, 2, 1):
        s += cuda.shfl_xor_sync(_ALL_LANES, s, offset)
    return s


@njit(inline="always")
def lanes_max(m):
    """The warp's maximum of ``m``, the same bits in every lane (a NaN ``m`` never wins: the
    formulas keep NaN out of it)."""
    for offset in (16, 8, 4, 2, 1):
        other = cuda.shfl_xor_sync(_ALL_LANES, m, offset)
        if other > m:
            m = other
    return m if m != 0.0 else 0.0  # -0.0 and 0.0 tie: lanes could hold either


def row_logsumexp32(row):
    """``formulas._row_logsumexp`` of a float32 row in a float32 formula variant: the ``exp``s
    in float32 (libdevice's ``expf``: a float64 ``exp`` per entry took a fifth of sparse
    softmax's time on an H100), their sum and its one ``log`` in float64, as the CPU's float32
    kernels take them (`lossforge.kernels.vmath.row_logsumexp`: a float32 ``log`` of a sum
    near 1 would lose a small loss's relative precision). ``m`` is one of the row's values (or
    -inf), exact in float32. Plain Python in the formulas' style: the registry compiles it
    with the lanes' ``row_range`` and ``across_lanes_*``, as it compiles a formula's helpers."""
    m = _row_max(row)
    m32 = float32(m)
    s = 0.0
    for k in row_range(row.shape[0]):
        s += float64(math.exp(row[k] - m32))
    return m, math.log(across_lanes_sum(s))


# what a formula's namespace gets in place of the CPU's names (`lossforge.registry`)
ROW_RANGE_NAME = "row_range"
REPLACEMENTS = {formulas.across_lanes_sum: lanes_sum, formulas.across_lanes_max: lanes_max}
#: and in a float32 variant (plain Python: compiled as a helper of the formula)
FLOAT32_REPLACEMENTS = {formulas._row_logsumexp: row_logsumexp32}
