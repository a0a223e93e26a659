"""float32 ``log``/``exp``/``log1p``/``tanh``/``sinh``/``pow`` that LLVM can vectorise, and the
`math` stand-in through which float32 kernels see them.

Numba's ``math.log``/``math.exp`` are scalar libm calls (PyPI's llvmlite has no SVML), so a
loop over them runs one element at a time: a float32 log loss was 10-20x slower than the
memory floor. These functions use only ``+ - * /``, fused multiply-adds, compares, selects and
int32 bit manipulation (kept in int32: see `_int32_op`), which LLVM turns into AVX2/AVX-512
lanes. They reduce the argument as Cephes' float32 functions do (by exponent bits), then
evaluate a minimax polynomial a degree lower than Cephes'; over every float32 input they are
within 1.62 ulp of float64 libm, measured by the exhaustive sweep (``tests/test_vmath.py``
sweeps them; ``python -m lossforge.kernels.vmath`` runs the exhaustive sweep over all 2**32
inputs). NaN and +-inf give what libm gives.

``pow(x, y)`` (libm's ``powf`` is scalar too; focal's ``(1 - p_t)**gamma`` needs it) computes
``2**(y log2 |x|)`` in float64 lanes with table-free polynomials and rounds once to float32:
within 0.503 ulp of float64 libm on the grids swept (every x in [0, 1] times focal's gammas,
a stride over all float32 times `POW_EXPONENTS`), with C99's special cases (signed zeros,
+-inf, NaN, negative x with integer and non-integer y) exactly as C's ``pow`` (numba's
``math.pow``; ``np.power`` with an array exponent). A formula gets it by calling ``math.pow``:
its ``**`` operator stays libm's scalar ``powf`` (the float32 variant swaps names, not operators).
``y = 2`` gives ``x * x``: a kernel compiled with a constant 2 (`registry.Param.specialize`)
then keeps no polynomial at all (focal at 16M float32 elements: 28 -> 9-12 ms).

Each function is compiled with strict IEEE semantics (``fastmath=False``): an inlined math
function would otherwise take its caller's fastmath flags, and LLVM then folds rewrites such
as ``x - ((1 + x) - 1)`` to 0. LLVM still inlines them into the calling loop (``pow``, too
big for LLVM's inlining threshold, is marked always-inline: a call would keep the loop scalar).
Called with a float64 argument they are ``math.*`` itself, so a formula that widens to float64
stays exact.

`F32_MATH` is a module that reads like ``math``: a formula's float32 variant (see
`lossforge.registry.float32_formula`) sees it in place of ``math``.
"""
from __future__ import annotations

import math
import os
import sys
from types import ModuleType

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

__all__ = ["log", "log_or_nan", "exp", "log1p", "tanh", "sinh", "pow", "to_float32",
           "reassoc_add", "prefer_512_bit_vectors", "F32_MATH", "F32_MATH_LOG_OR_NAN",
           "F32_LIBM", "REPLACEMENTS", "REPLACEMENTS_LOG_OR_NAN", "sweep", "sweep_pow"]

_STRICT = dict(fastmath=False, error_model="numpy")


# --- bit casts and fused multiply-add (no numba builtin for either) ------------------------

def _bitcast(name: str, source, target, target_ir, doc: str):
    """An intrinsic that reinterprets a ``source`` value's bits as ``target`` (numba has no
    builtin for it)."""
    def cast(typingctx, x):
        if x != source:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], target_ir)
        return target(source), codegen
    cast.__name__ = cast.__qualname__ = name  # numba names (and caches) an intrinsic by it
    cast.__doc__ = doc
    return intrinsic(cast)


_as_int = _bitcast("_as_int", types.float32, types.int32, ir.IntType(32),
                   "The bits of a float32 as an int32.")
_as_float = _bitcast("_as_float", types.int32, types.float32, ir.FloatType(),
                     "The float32 whose bits are an int32.")
_as_int64 = _bitcast("_as_int64", types.float64, types.int64, ir.IntType(64),
                     "The bits of a float64 as an int64.")
_as_float64 = _bitcast("_as_float64", types.int64, types.float64, ir.DoubleType(),
                       "The float64 whose bits are an int64.")


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (llvm.fmuladd: fused where the CPU can, never a libm call),
    all three float32 or all three float64."""
    if not (a == b == c and a in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        name = "llvm.fmuladd.f32" if t == ir.FloatType() else "llvm.fmuladd.f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t] * 3), name)
        return builder.call(fn, args)
    return a(a, a, a), codegen


@intrinsic
def _maxnum(typingctx, a, b):
    """IEEE maxNum of two floats of one type (llvm.maxnum: vectorises as a max reduction).
    It ignores a NaN operand: the row helpers below propagate NaN through their sums."""
    if not (a == b and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        name = "llvm.maxnum.f32" if t == ir.FloatType() else "llvm.maxnum.f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t, t]), name)
        return builder.call(fn, args)
    return a(a, a), codegen


@intrinsic
def reassoc_add(typingctx, a, b):
    """``a + b`` of two float64s, an add LLVM may reassociate (``fadd reassoc``, the one
    instruction flagged): a loop of strict formulas that accumulates through it vectorises
    its sum, while the formulas keep strict IEEE semantics (``fastmath={"reassoc"}`` on the
    loop would flag every operation inlined into it). Only the order of the sum changes."""
    if not (a == b == types.float64):
        return None

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1], flags=("reassoc",))
    return types.float64(types.float64, types.float64), codegen


def vector_width() -> str:
    """The lane width in bits that `prefer_512_bit_vectors` asks for: ``512``, or what
    ``$LOSSFORGE_VECTOR_WIDTH`` says (``256`` for a CPU whose clock drops in 512-bit code, as
    early AVX-512 parts' did; ``128``). Read once, at import, as `VECTOR_WIDTH`."""
    width = os.environ.get("LOSSFORGE_VECTOR_WIDTH", "512").strip()
    if width not in ("128", "256", "512"):
        raise ValueError(f"LOSSFORGE_VECTOR_WIDTH must be 128, 256 or 512 (bits of the widest "
                         f"lane the elementwise kernels vectorise in; default 512), not {width!r}")
    return width


#: the width this process compiles for (the kernel cache's fingerprint names it too)
VECTOR_WIDTH = vector_width()
#: LLVM's function attribute that sets the loop vectoriser's widest lane (clang's
#: ``-mprefer-vector-width=512``)
_PREFER_WIDTH = f'"prefer-vector-width"="{VECTOR_WIDTH}"'


@intrinsic
def prefer_512_bit_vectors(typingctx):
    """Let LLVM vectorise the loops of the function that calls this in 512-bit lanes.

    LLVM tunes Intel's AVX-512 cores (Skylake-X to Sapphire Rapids; a VM's CPU may read as
    ``rocketlake``) to vectorise in 256 bits at most (``prefer-256-bit``, against the clock
    drop of early AVX-512 parts), and AMD's Zen 4 to 512. vmath's polynomials are
    compute-bound, so 8 float32 lanes instead of 16 cost them up to half their speed. The
    function attribute lifts the cap for that function alone: numba code outside lossforge
    keeps its codegen and its cache, and where the CPU has no AVX-512 nothing changes.

    The elementwise kernels call it (``template_elementwise.py``): on an Intel Xeon VM (2
    threads, 16M float32 elements) log_cosh ran 1.76x faster with it, sigmoid cross-entropy
    1.61x, focal 1.37x, log_loss 1.18x, MSE 1.20x. The row-wise kernels do not: their rows of
    1000 measured no faster at 16384 rows and 5-8% slower at 1e3-1e5 elements (the wider loop
    leaves a longer remainder per row). Each function with a loop calls it, not only the
    kernel: numba optimises (and vectorises) a function in its own module, under its own
    attributes, before linking it into its callers.

    ``$LOSSFORGE_VECTOR_WIDTH`` (`vector_width`) asks for narrower lanes instead.
    """
    def codegen(context, builder, signature, args):
        attributes = builder.function.attributes
        # llvmlite's FunctionAttributes admits LLVM's keyword attributes only; the set renders
        # each entry as written, and LLVM parses a quoted "key"="value" pair there
        try:
            set.add(attributes, _PREFER_WIDTH)
        except TypeError:  # (an llvmlite whose attributes are no set: LLVM's default width)
            pass
        return context.get_dummy_value()
    return types.none(), codegen


def _int32_op(name: str, build, doc: str):
    """An intrinsic ``build(builder, a, b)`` on two int32s that stays int32: numba widens
    ``int32 - int32`` to int64, and LLVM then has to work a wrapping int32 difference out in
    64-bit lanes (twice the lanes of the float32 it feeds, and conversions both ways)."""
    def op(typingctx, a, b):
        if not (a == b == types.int32):
            return None

        def codegen(context, builder, signature, args):
            return build(builder, *args)
        return types.int32(types.int32, types.int32), codegen
    op.__name__ = op.__qualname__ = name  # numba names (and caches) an intrinsic by it
    op.__doc__ = doc
    return intrinsic(op)


_iadd = _int32_op("_iadd", lambda b, x, y: b.add(x, y), "``x + y`` wrapping in int32.")
_isub = _int32_op("_isub", lambda b, x, y: b.sub(x, y), "``x - y`` wrapping in int32.")
_iand = _int32_op("_iand", lambda b, x, y: b.and_(x, y), "``x & y`` in int32.")
_ishl = _int32_op("_ishl", lambda b, x, y: b.shl(x, y), "``x << y`` in int32.")
_isra = _int32_op("_isra", lambda b, x, y: b.ashr(x, y), "``x >> y`` (arithmetic) in int32.")
_imin = _int32_op("_imin", lambda b, x, y: b.select(b.icmp_signed("<", x, y), x, y),
                  "``min(x, y)`` in int32.")


@intrinsic
def _iult(typingctx, a, b):
    """``a < b`` of two int32s read as unsigned (one comparison for a range test)."""
    if not (a == b == types.int32):
        return None

    def codegen(context, builder, signature, args):
        return builder.icmp_unsigned("<", *args)
    return types.boolean(types.int32, types.int32), codegen


def _like(a, value):
    """``value`` as array ``a``'s float type (float32 stays float32, all else float64)."""


@overload(_like, inline="always")
def _like_impl(a, value):
    if a.dtype == types.float32:
        return lambda a, value: np.float32(value)
    return lambda a, value: np.float64(value)


# --- constants as float32/int32 (a Python float would widen every expression to float64) -----

_f = np.float32
_i = np.int32
_ZERO, _HALF, _ONE, _TWO = _f(0.0), _f(0.5), _f(1.0), _f(2.0)
_INF, _NAN = _f(np.inf), _f(np.nan)
_LN2_HI, _LN2_LO = _f(0.693359375), _f(-2.12194440e-4)  # ln 2 = HI + LO, HI with 9 bits
_LOG2E = _f(1.44269504088896341)
_SQRTHF_BITS = _i(0x3F3504F3)  # bits of sqrt(0.5): mantissas are reduced to [sqrt(.5), sqrt(2))
_EXPONENT_BITS = _i(-0x800000)  # 0xFF800000: sign and exponent fields
_ONE_BITS = _i(0x3F800000)
_HALF_BITS = _i(0x3F000000)
_MIN_NORMAL = _f(1.17549435e-38)
_MIN_NORMAL_BITS = _i(0x00800000)
#: bits(inf) - bits(2**-126): x is a positive normal float32 where bits(x) - bits(2**-126), read
#: as unsigned, is below it
_NORMAL_SPAN = _i(0x7F000000)
_TWO23 = _f(8388608.0)
_ROUNDER32 = _f(12582912.0)  # 1.5 * 2**23: t + it rounds t to an integer held in the low bits
_EXP_MAX = _f(90.0)  # exp overflows to inf above 88.7228... (exp / 2 above 89.4159...)
_EXP_MIN = _f(-104.0)  # ... and underflows to 0 below -103.9720...
_TANH_SMALL = _f(0.625)
_TANH_BIG = _f(9.01)  # tanh rounds to 1 in float32 beyond it
# minimax fits (relative error 2**-27.2 and 2**-27.8 with the coefficients rounded to float32):
# log(1 + f) = f - f**2/2 + f**3 P(f) over f in [sqrt(.5) - 1, sqrt(2) - 1], and
# exp(r) = 1 + r + r**2 Q(r) over |r| <= ln(2)/2 (Cephes' polynomials are a degree higher)
_LOG_P = tuple(_f(c) for c in (-0.07634503, 0.1276158, -0.13160181, 0.14201757, -0.16623357,
                                0.20001227, -0.2500082, 0.3333333))
_EXP_Q = tuple(_f(c) for c in (0.001381446, 0.0083687855, 0.041668396, 0.1666652, 0.49999994))
_TANH_P = tuple(_f(c) for c in (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                                 1.33314422036e-1, -3.33332819422e-1))


@njit(inline="always", **_STRICT)
def _split(bits):
    """``(m, e, e << 23)`` for the positive normal float32 ``2**e m`` whose bits are ``bits``,
    ``m`` in [sqrt(.5), sqrt(2))."""
    t = _isub(bits, _SQRTHF_BITS)
    em = _iand(t, _EXPONENT_BITS)
    return _as_float(_isub(bits, em)), _isra(t, _i(23)), em


@njit(inline="always", **_STRICT)
def _log_reduced(f, fe, c):
    """``fe ln(2) + log(1 + f) + c`` for an exact ``f`` in [sqrt(.5) - 1, sqrt(2) - 1] and a
    small correction ``c``."""
    z = f * f
    p = _LOG_P
    # P in pairs of coefficients, Horner's scheme in z: as many operations as Horner's scheme
    # in f, half its chain of dependent ones (the loops are bound by that chain as much as
    # by the operations' count)
    q = _fma(_fma(_fma(_fma(p[0], f, p[1]), z, _fma(p[2], f, p[3])), z, _fma(p[4], f, p[5])), z,
             _fma(p[6], f, p[7]))
    y = _fma(_fma(q, f, -_HALF), z, _fma(fe, _LN2_LO, c))
    return _fma(fe, _LN2_HI, f + y)


@njit(inline="always", **_STRICT)
def _log32(x):
    tiny = x < _MIN_NORMAL  # subnormals: scale into the normal range first
    xs = x * _TWO23 if tiny else x
    m, e, _ = _split(_as_int(xs))
    fe = np.float32(e) - (_f(23.0) if tiny else _ZERO)
    r = _log_reduced(m - _ONE, fe, _ZERO)  # m - 1 is exact (Sterbenz)
    r = _NAN if x < _ZERO else r
    r = -_INF if x == _ZERO else r
    return x if (x == _INF or x != x) else r


@njit(inline="always", **_STRICT)
def _log32_or_nan(x):
    """`_log32`'s value, bit for bit, where ``x`` is a positive normal float32, and NaN for
    every other ``x`` (zero, subnormals, negatives, inf, NaN): one range test on the bits
    instead of `_log32`'s special cases (23 vector instructions against 30 in a loop)."""
    bits = _as_int(x)
    m, e, _ = _split(bits)
    r = _log_reduced(m - _ONE, np.float32(e), _ZERO)
    # bits - bits(2**-126) wraps around for zero, subnormals and (sign bit) negatives
    return r if _iult(_isub(bits, _MIN_NORMAL_BITS), _NORMAL_SPAN) else _NAN


@njit(inline="always", **_STRICT)
def _exp_reduced(xc):
    """``(t, exp(r) - 1)`` for ``xc = n ln 2 + r``, ``n = round(xc / ln 2)``, ``|r| <= ln 2 / 2``:
    ``t``'s bits are those of 1.5 * 2**23 plus ``n`` (``|xc| <= 104``; NaN passes)."""
    t = _fma(xc, _LOG2E, _ROUNDER32)
    n = t - _ROUNDER32
    r = _fma(n, -_LN2_HI, xc)
    r = _fma(n, -_LN2_LO, r)
    r2 = r * r
    c = _EXP_Q
    q = _fma(_fma(c[0], r2, _fma(c[1], r, c[2])), r2, _fma(c[3], r, c[4]))
    return t, _fma(q, r2, r)


@njit(inline="always", **_STRICT)
def _exp_scaled(x, scale_bits):
    """``exp(x) 2**j`` for ``scale_bits`` the bits of ``2**j``, ``j`` in {0, -1}."""
    # beyond the clamps exp(x) 2**j is inf or 0, and the scaling below rounds to just that
    # (NaN passes)
    xc = _EXP_MIN if x < _EXP_MIN else x
    xc = _EXP_MAX if xc > _EXP_MAX else xc
    t, p = _exp_reduced(xc)
    # 2**n as 2**n1 * 2**(n - n1), n1 = n >> 1: each factor a normal float32 for n in [-150, 130].
    # Shifted left by 23, t's bits give n1 << 23 and n << 23 (its high bits shift out)
    bits = _as_int(t)
    n1 = _ishl(_isra(bits, _i(1)), _i(23))
    s1 = _as_float(_iadd(n1, _ONE_BITS))
    s2 = _as_float(_isub(_iadd(_ishl(bits, _i(23)), scale_bits), n1))
    return _fma(p, s1, s1) * s2  # s1 (1 + p) is exact: s1 >= 2**-75


@njit(inline="always", **_STRICT)
def _exp32(x):
    return _exp_scaled(x, _ONE_BITS)


#: The least float32 whose exp is a normal float32: exp(x) rounds to a subnormal or 0 below it
_EXP_FLUSH_BELOW = _f(-87.33654)
_EXP_IN_SUM_FLOOR = _f(math.exp(-87.33654))  # 1.1755e-38: `_exp_in_sum32` at and below it


@njit(inline="always", **_STRICT)
def _exp_in_sum32(x):
    """``exp(x)`` for ``x <= 0`` (NaN passes) that is a term of a sum of at least 1 (a
    max-shifted log-sum-exp's): `_exp32`'s bits down to `_EXP_FLUSH_BELOW` (-87.34), and its
    exp, 1.1755e-38, below, which such a sum cannot tell from the true ``exp(x) < 2**-126`` in
    float64 (2**31 such terms stay below 1e-28).

    ``2**n`` (n >= -126) is then one normal float32: no upper clamp and one scale factor
    instead of `_exp_scaled`'s two. A sparse softmax's value at 16384 x 1000 float32, 2
    threads: standalone kernel 4.9 -> 4.2 ms (`_exp_at_most_0_32`'s select to 0 cost 6% more
    in that loop: a softmax gradient flushes in `row_softmax_at` instead)."""
    t, p = _exp_reduced(_EXP_FLUSH_BELOW if x < _EXP_FLUSH_BELOW else x)
    s = _as_float(_iadd(_ishl(_as_int(t), _i(23)), _ONE_BITS))  # 2**n from t's low bits
    return _fma(p, s, s)


@njit(inline="always", **_STRICT)
def _exp_at_most_0_32(x):
    """``exp(x)`` for ``x <= 0`` (NaN passes): `_exp32`'s bits down to `_EXP_FLUSH_BELOW`
    (-87.34), and 0 below, where exp rounds to a subnormal float32 or to 0 (TF's CPU kernels
    flush subnormal results to 0 too: its sigmoid cross-entropy is 0 at x = -87.5, z = 0), with
    `_exp_in_sum32`'s one scale factor. 16M float32, 2 threads, alternating runs against the
    full exp: sigmoid cross-entropy 6.96-7.75 -> 6.7-7.0 ms, focal 8.24-8.57 -> 7.7-8.04,
    log_cosh 7.49-7.85 -> 7.13-7.3."""
    return _ZERO if x < _EXP_FLUSH_BELOW else _exp_in_sum32(x)


@njit(inline="always", **_STRICT)
def _log1p32(x):
    u = _ONE + x  # 1 + x = u + (x - d) exactly; u >= 2**-24 unless u <= 0: never subnormal
    d = u - _ONE
    m, e, em = _split(_as_int(u))
    f = m - _ONE
    # log(u) corrected for the rounding of 1 + x (Goldberg): + (x - d) / u, exact where u == 1
    # (gives x). With k = (x - d) 2**-e (|k| <= 2**-24 m), (x - d) / u = k / m = k (1 - f + f**2)
    # to within |k f**3|: no division. (2**-e is built from e << 23, capped where u >= 2**126,
    # where x - d = 0)
    s = _as_float(_isub(_ONE_BITS, _imin(em, _i(126 << 23))))
    k = (x - d) * s
    r = _log_reduced(f, np.float32(e), _fma(k, f * f - f, k))
    r = _NAN if u < _ZERO else r
    r = -_INF if u == _ZERO else r
    return x if (x == _INF or x != x) else r


_SINH_P = tuple(_f(c) for c in (2.03721912945e-4, 8.33028376239e-3, 1.66667160211e-1))


#: ``log1p(x) = x - x**2/2 + x**3 Q(x)`` on [0, 1]: Q of degree 7, fitted (weighted least
#: squares, Lawson's iteration toward minimax) to a relative error of 2**-27.0 with the
#: coefficients rounded to float32
_LOG1P_UNIT_Q = tuple(_f(c) for c in (0.3333224952220917, -0.24975089728832245,
                                      0.19774271547794342, -0.1556936651468277,
                                      0.11024817079305649, -0.06091819331049919,
                                      0.0218735933303833, -0.0036770463921129704))


@njit(inline="always", **_STRICT)
def _log1p_unit32(x):
    """``log1p(x)`` for ``0 <= x <= 1`` (NaN passes): one polynomial, with no range reduction.

    10 vector operations where `_log1p32`'s reduction of ``1 + x`` to [sqrt(.5), sqrt(2)) and
    its polynomial take 23: a sigmoid cross-entropy (``log1p(exp(-|x|))``) at 16M float32
    elements, 2 threads, ran 8.3-8.5 -> 7.2-7.7 ms. Within 1.13 ulp of log1p over every
    float32 of [0, 1] (`_log1p32`: 0.97); the exact ``x - x**2/2`` keeps the relative
    precision near 0, where a confident sigmoid's loss is this term alone."""
    c = _LOG1P_UNIT_Q
    z = x * x
    # Horner's scheme in pairs (see _log_reduced)
    q = _fma(_fma(_fma(_fma(c[7], x, c[6]), z, _fma(c[5], x, c[4])), z, _fma(c[3], x, c[2])), z,
             _fma(c[1], x, c[0]))
    return _fma(z, _fma(x, q, -_HALF), x)


@njit(inline="always", **_STRICT)
def _sinh_small32(x):
    """``sinh(x)`` for ``|x| <= 1``: the polynomial alone."""
    z = x * x
    c = _SINH_P
    return _fma(_fma(_fma(c[0], z, c[1]), z, c[2]) * z, x, x)


#: ``log1p(x) = x + x**2 R(x)`` on [0, 0.29]: R of degree 5, fitted (weighted least squares,
#: Lawson's iteration toward minimax) to 0.05 ulp of log1p there
_LOG1P_SMALL_R = tuple(_f(c) for c in (-0.4999997615814209, 0.3333168029785156,
                                       -0.24960839748382568, 0.19567425549030304,
                                       -0.14165988564491272, 0.06539881229400635))


@njit(inline="always", **_STRICT)
def _log1p_small32(x):
    """``log1p(x)`` for ``0 <= x <= 0.29``: the polynomial alone (NaN passes)."""
    c = _LOG1P_SMALL_R
    z = x * x
    # Horner's scheme in pairs (see _log_reduced)
    r = _fma(_fma(_fma(c[5], x, c[4]), z, _fma(c[3], x, c[2])), z, _fma(c[1], x, c[0]))
    return _fma(z, r, x)


@njit(inline="always", **_STRICT)
def _sinh32(x):
    a = abs(x)
    small = _sinh_small32(x)
    h = _exp_scaled(a, _HALF_BITS)  # exp(a) / 2: finite up to a = 89.4, where exp(a) is not
    big = h - _f(0.25) / h  # (0.5 / exp(a) = 0.25 / h)
    big = -big if x < _ZERO else big
    return small if a <= _ONE else big  # NaN: a <= 1 is False, big is NaN


@njit(inline="always", **_STRICT)
def _tanh_small32(x):
    """``tanh(x)`` for ``|x| < 0.625``: the polynomial alone."""
    z = x * x
    c = _TANH_P
    return _fma(_fma(_fma(_fma(_fma(c[0], z, c[1]), z, c[2]), z, c[3]), z, c[4]), z * x, x)


@njit(inline="always", **_STRICT)
def _tanh32(x):
    a = abs(x)
    small = _tanh_small32(x)
    e = _exp32(a + a)
    big = _ONE - _TWO / (e + _ONE)
    big = _ONE if a > _TANH_BIG else big
    big = -big if x < _ZERO else big
    return small if a < _TANH_SMALL else big  # NaN: a < .625 is False, big is NaN


# --- pow: log2 and exp2 in float64 lanes ------------------------------------------------------
# x**y = 2**(y log2 x). In float32 the product y log2 x would carry an absolute error of up to
# ~2**-17 (|y log2 x| reaches 150 before the result underflows): ~100 ulp in the result. In
# float64 lanes its error stays below ~2**-30, so the float64 result rounded once to float32
# is within 0.51 ulp (correctly rounded but for results within 0.01 ulp of a rounding midpoint).
# Table-free, so it vectorises: log2 m = s P(s**2) with s = (m - 1)/(m + 1) (P of degree 4:
# relative error 2**-37.8 over m in [sqrt(.5), sqrt(2))), 2**r = 1 + r Q(r) (Q of degree 7:
# relative error 2**-38.8 over r in [-1/2, 1/2]); both polynomials are minimax fits (mpmath).

_LOG2_P = (2.88539008179008, 0.9617966733500538, 0.5770835832707184, 0.411672826841764,
           0.3407280089742788)
_EXP2_Q = (0.6931471805568324, 0.24022650695888503, 0.055504109063258665, 0.00961812913523614,
           0.0013333478473685416, 0.00015403475186530786, 1.5303700711365693e-05,
           1.325080551750225e-06)
_SQRTHF_BITS64 = np.int64(0x3FE6A09E667F3BCD)  # bits of sqrt(0.5) in float64
_ROUNDER = 6755399441055744.0  # 1.5 * 2**52: t + it rounds t to an integer held in the low bits
_POW_T_MAX = 300.0  # |y log2 x| beyond it: 2**t is far outside float32's range either way


@njit(inline="always", **_STRICT)
def _log2_wide(d):
    """``log2(d)`` for a float64 ``d > 0`` that is a finite float32 (others give garbage)."""
    bits = _as_int64(d)
    e = (bits - _SQRTHF_BITS64) >> np.int64(52)
    m = _as_float64(bits - (e << np.int64(52)))  # in [sqrt(.5), sqrt(2))
    s = (m - 1.0) / (m + 1.0)  # m - 1 and m + 1 are exact
    z = s * s
    c = _LOG2_P
    return _fma(s, _fma(_fma(_fma(_fma(c[4], z, c[3]), z, c[2]), z, c[1]), z, c[0]), np.float64(e))


@njit(inline="always", **_STRICT)
def _exp2_wide(t):
    """``2**t`` in float64 for ``|t| <= 300``; NaN gives NaN."""
    u = t + _ROUNDER
    n = u - _ROUNDER  # t rounded to an integer (exact: |t| < 2**51)
    r = t - n  # exact, in [-1/2, 1/2]
    c = _EXP2_Q
    q = _fma(_fma(_fma(_fma(_fma(_fma(_fma(c[7], r, c[6]), r, c[5]), r, c[4]), r, c[3]), r, c[2]),
                  r, c[1]), r, c[0])
    # 2**n from the low bits of u (n + 1023 in [723, 1323]: the exponent field of a normal float64)
    return _fma(r, q, 1.0) * _as_float64((_as_int64(u) + np.int64(1023)) << np.int64(52))


@njit(inline="always", **_STRICT)
def _pow32(x, y):
    if y == _TWO:  # x * x, correctly rounded; a constant y of 2 (a kernel specialised on it,
        return x * x  # see registry.Param.specialize) folds the rest away
    # (conditions combine with & and |, not and/or: short-circuit branches vectorise worse)
    a = abs(x)
    d = np.float64(a)
    l2 = _log2_wide(d)
    l2 = -np.inf if a == _ZERO else l2
    l2 = l2 if a < _INF else d  # +inf, NaN
    t = np.float64(y) * l2
    # |x| = 1 gives 2**0 = 1 even for an infinite or NaN y (C99: pow(1, y) = 1 and
    # pow(-1, +-inf) = 1; pow(-1, NaN) is made NaN below); y = 0 gives 1 for every x
    t = 0.0 if ((a == _ONE) | (y == _ZERO)) else t
    t = _POW_T_MAX if t > _POW_T_MAX else t  # (NaN stays NaN)
    t = -_POW_T_MAX if t < -_POW_T_MAX else t
    r = np.float32(_exp2_wide(t))  # rounded once: overflow to inf, underflow to a subnormal or 0
    # y is an integer, odd or not (the float32s >= 2**24 are all even; +-inf is even, NaN neither)
    fy = np.floor(y)
    hy = y * _HALF
    integer = fy == y
    odd = integer & (np.floor(hy) != hy)
    # an odd y takes the sign of x (-0 and -inf too): flip the sign bit
    sign = _i(-2 ** 31) if odd else _i(0)
    r = _as_float(np.int32(_as_int(r) ^ np.int32(_as_int(x) & sign)))
    # a finite x < 0 and a y that is not an integer (NaN included): NaN
    return _NAN if ((x < _ZERO) & (a < _INF) & (not integer)) else r


# --- public functions: float32 polynomials, math.* for everything else ------------------------

def _dispatching(name, float32_impl, fallback):
    """A function that runs ``float32_impl`` on float32 and ``fallback`` (math.*) otherwise."""
    def function(x):
        return fallback(x)
    function.__name__ = function.__qualname__ = name

    @overload(function, jit_options=_STRICT)
    def _typed(x):
        if x == types.float32:
            return lambda x: float32_impl(x)
        if isinstance(x, (types.Float, types.Integer)):
            return lambda x: fallback(x)
        return None
    return function


log = _dispatching("log", _log32, math.log)
#: ``log`` in a loss that opts into `LossSpec.fast_logs`: in float32, `log`'s value for a
#: positive normal argument and NaN for any other (float64: ``math.log``).
log_or_nan = _dispatching("log_or_nan", _log32_or_nan, math.log)
exp = _dispatching("exp", _exp32, math.exp)
#: ``exp`` of an argument ``<= 0`` (or NaN), a formula's ``_exp_at_most_0``: in float32,
#: `_exp32`'s value where it is a normal float32, and 0 for a subnormal (as TF's CPU
#: kernels), see `_exp_at_most_0_32`.
exp_at_most_0 = _dispatching("exp_at_most_0", _exp_at_most_0_32, math.exp)
#: ``exp`` of an argument ``<= 0`` (or NaN) added to a sum of at least 1 (a max-shifted
#: log-sum-exp's terms): in float32, `_exp_at_most_0` with 1.1755e-38 for its 0s, see
#: `_exp_in_sum32`.
exp_in_sum = _dispatching("exp_in_sum", _exp_in_sum32, math.exp)
log1p = _dispatching("log1p", _log1p32, math.log1p)
tanh = _dispatching("tanh", _tanh32, math.tanh)
sinh = _dispatching("sinh", _sinh32, math.sinh)
#: ``sinh`` of an argument known to be within [-1, 1] (a formula's ``_sinh_below_1``): in
#: float32, sinh's polynomial without the exp its other branch needs.
sinh_below_1 = _dispatching("sinh_below_1", _sinh_small32, math.sinh)
#: ``tanh`` of an argument known to be within (-0.625, 0.625) (a formula's
#: ``_tanh_below_0_625``): in float32, tanh's polynomial without the exp its other branch needs.
tanh_below_0_625 = _dispatching("tanh_below_0_625", _tanh_small32, math.tanh)
#: ``log1p`` of an argument known to be within [0, 0.29] (a formula's ``_log1p_below_0_29``):
#: in float32, a polynomial with none of log1p's range reduction.
log1p_below_0_29 = _dispatching("log1p_below_0_29", _log1p_small32, math.log1p)
#: ``log1p`` of an argument known to be within [0, 1] (a formula's ``_log1p_at_most_1``, such
#: as the ``log1p(exp(-|x|))`` of a sigmoid cross-entropy): in float32, one polynomial with
#: none of log1p's range reduction.
log1p_at_most_1 = _dispatching("log1p_at_most_1", _log1p_unit32, math.log1p)


def pow(x, y):  # noqa: A001 (math.pow's stand-in, as F32_MATH.pow)
    """``math.pow``: in float64 lanes (see `_pow32`) where both arguments are float32."""
    return math.pow(x, y)


@overload(pow, jit_options=dict(_STRICT, forceinline=True))  # LLVM alwaysinline: it is too
def _typed_pow(x, y):  # big for LLVM's inliner's threshold, and a call keeps loops scalar
    if x == types.float32 and y == types.float32:
        return lambda x, y: _pow32(x, y)
    if isinstance(x, (types.Float, types.Integer)) and isinstance(y, (types.Float, types.Integer)):
        return lambda x, y: math.pow(x, y)
    return None


@njit(inline="always", **_STRICT)
def to_float32(x):
    """``float(x)`` in a float32 formula variant: a float32 cast."""
    return np.float32(x)


# --- row reductions of the built-in row-wise formulas, vectorised -----------------------------
# Each computes what its namesake in lossforge.formulas computes (tests/test_vmath.py checks
# them against each other); a float32 formula variant calls these instead. Their sums may be
# reassociated (the one flag LLVM needs to vectorise them); the math they call is strict.

_ROWS = dict(error_model="numpy", fastmath={"reassoc"})


_SUM_BLOCK = 512  # terms summed in the row's dtype before the float64 sum (see row_logsumexp)


@njit(inline="always", **_ROWS)
def _logsumexp_blocks(row, out, keep):
    """`row_logsumexp`, writing ``exp(row - m)`` to ``out`` if ``keep`` (a constant)."""
    m = _like(row, -np.inf)
    n = row.shape[0]
    for k in range(n):
        m = _maxnum(m, row[k])
    s = 0.0
    if not (m > -np.inf and m < np.inf):  # row - m is NaN somewhere (or nothing but NaN)
        for k in range(n):
            e = exp(row[k] - m)
            if keep:
                out[k] = e
            s += np.float64(e)
        return np.float64(m), math.log(s)
    zero, one = _like(row, 0.0), _like(row, 1.0)
    for b in range(0, n, _SUM_BLOCK):
        block = row[b:min(b + _SUM_BLOCK, n)]  # a view indexed from 0: no gathers
        kept = out[b:min(b + _SUM_BLOCK, n)] if keep else out
        terms = zero
        maxima = zero
        for k in range(block.shape[0]):
            v = block[k]
            e = exp_in_sum(v - m)
            if keep:
                kept[k] = e
            terms += e if v != m else zero  # NaN: v != m, and the NaN is summed
            maxima += one if v == m else zero
        s += np.float64(terms) + np.float64(maxima)
    return np.float64(m), math.log(s)


@njit(**_ROWS)
def row_logsumexp(row):
    """``(m, log(sum(exp(row - m))))``, ``m = max(row)``, both float64: ``exp`` runs in the
    row's dtype, the sum and its one ``log`` in float64 (a float32 log of a sum near 1 would
    lose the relative precision of a small loss).

    The terms are summed in the row's dtype over blocks of `_SUM_BLOCK`, the block sums in
    float64: widening every float32 term halved the vector lanes (0.69 -> 0.44 ns per logit).
    The terms are positive, so a block sum keeps a small relative error, and the exact 1s of
    the maxima are counted apart, so a sum ``1 + tiny`` of a confident row keeps its ``tiny``.
    """
    return _logsumexp_blocks(row, row, False)


@njit(**_ROWS)
def row_logsumexp_keeping_exps(row, out):
    """`row_logsumexp`, leaving ``exp(row - m)`` in ``out`` (the row's gradient, written next)
    for `row_softmax_at`: a softmax's gradient then takes no second ``exp`` of each logit
    (16384 x 1000 float32, 2 threads, one process, interleaved: sparse softmax's value and
    gradient into ``grad_out`` 12.1-12.7 -> 9.4-10.1 ms)."""
    return _logsumexp_blocks(row, out, True)


@njit(inline="always", **_STRICT)
def row_softmax_at(row, exps, k, m, lse):
    """``softmax(row)_k`` as ``exp(row_k - m) exp(-lse')``, the first factor left in ``exps`` by
    `row_logsumexp_keeping_exps`; LLVM hoists ``exp(-lse')`` out of the row's loop. Closer to
    the float64 softmax than ``exp((row_k - m) - lse')``, whose float32 argument rounds by up
    to an ulp of ``|row_k - m|`` (sparse softmax's gradient, 16384 x 1000 logits of s.d. 3:
    largest error 20 float32 ulps, against 34; mean 2.5 against 3.8).

    0 where ``row_k - m <= -87.34`` (`exp_in_sum` left its floor there): TF's CPU softmax
    flushes its subnormal results to 0, and a softmax there is at most 2**-126."""
    e = exps[k]
    return (e * _ZERO if e <= _EXP_IN_SUM_FLOOR else e) * exp(-lse)  # (NaN: e)


@njit(**_ROWS)
def row_sum(row):
    """``sum(row)`` in float64."""
    s = 0.0
    for k in range(row.shape[0]):
        s += np.float64(row[k])
    return s


@njit(**_ROWS)
def row_sum_and_shifted_dot(z, x, m):
    """``(sum_k z_k, sum_k z_k (m - x_k))`` in float64, in one loop: a softmax's value at
    16384 x 1000 float32 (2 threads, standalone kernel) took 7.6 ms with one loop per sum,
    6.75 ms so (the label row read once from cache instead of twice, and converted once)."""
    total = 0.0
    s = 0.0
    for k in range(x.shape[0]):
        zk = np.float64(z[k])
        total += zk
        s += zk * np.float64(m - x[k])
    return total, s


@njit(**_ROWS)
def row_shifted_sum(x, m):
    """``sum_k (m - x_k)`` in float64."""
    s = 0.0
    for k in range(x.shape[0]):
        s += np.float64(m - x[k])
    return s


@njit(**_ROWS)
def fibre_dot(y, p, j):
    """``sum_axis(y * p)`` along fibre ``j`` of ``(outer, axis, inner)`` arrays, in float64
    (products of float32s are exact in it)."""
    inner = y.shape[2]
    o = j // inner
    s = 0.0
    if inner == 1:  # the common case (the axis is the last one): a contiguous row
        yr = y[o].reshape(y.shape[1])
        pr = p[o].reshape(p.shape[1])
        for d in range(yr.shape[0]):
            s += np.float64(yr[d]) * np.float64(pr[d])
        return s
    i = j - o * inner
    for d in range(y.shape[1]):
        s += np.float64(y[o, d, i]) * np.float64(p[o, d, i])
    return s


@njit(**_ROWS)
def row_diff_sums(y, p):
    """``(S, SS, n)`` of a sample row: ``d = p - y`` over ``p``'s elements (in float64, exact
    for float32 inputs), ``S = sum d``, ``SS = sum d**2``, ``n = y[-1]`` if ``y`` is longer
    than ``p`` (packed), else ``p``'s size."""
    ss = 0.0
    s = 0.0
    for e in range(p.shape[0]):
        d = np.float64(p[e]) - np.float64(y[e])
        ss += d * d
        s += d
    n = y.shape[0]
    return s, ss, np.float64(y[p.shape[0]]) if n > p.shape[0] else np.float64(n)


def _f32_math(name: str, functions=()) -> ModuleType:
    """``math`` with float32 constants (``inf``, ``nan``, ``pi``...) and ``functions``."""
    module = ModuleType(f"lossforge.kernels.vmath.{name}", "math, as float32 kernels see it")
    for attr in dir(math):
        if not attr.startswith("_"):
            setattr(module, attr, getattr(math, attr))
    for attr in ("inf", "nan", "pi", "e", "tau"):
        setattr(module, attr, np.float32(getattr(math, attr)))
    for function in functions:
        setattr(module, function.__name__, function)
    sys.modules[module.__name__] = module  # numba resolves module globals through sys.modules
    return module


#: ``math`` in the float32 variants of the CPU kernels: the polynomials above.
F32_MATH = _f32_math("F32_MATH", (log, exp, log1p, tanh, sinh, pow))
#: ``F32_MATH`` with `log_or_nan` as its ``log`` (`LossSpec.fast_logs`).
F32_MATH_LOG_OR_NAN = _f32_math("F32_MATH_LOG_OR_NAN", (exp, log1p, tanh, sinh, pow))
F32_MATH_LOG_OR_NAN.log = log_or_nan
#: ``math`` in the float32 variants of the CUDA kernels: its own functions, which numba-cuda
#: compiles to libdevice's float32 ``logf``, ``expf``... (CUDA documents 1-4 ulp for them).
F32_LIBM = _f32_math("F32_LIBM")

def _replacements() -> dict:
    from lossforge import formulas
    return {math.log: log, math.exp: exp, math.log1p: log1p, math.tanh: tanh, math.sinh: sinh,
            math.pow: pow,
            formulas._row_logsumexp: row_logsumexp, formulas._row_sum: row_sum,
            formulas._row_logsumexp_keeping_exps: row_logsumexp_keeping_exps,
            formulas._row_softmax_at: row_softmax_at,
            formulas._row_sum_and_shifted_dot: row_sum_and_shifted_dot,
            formulas._row_shifted_sum: row_shifted_sum, formulas._fibre_dot: fibre_dot,
            formulas._row_diff_sums: row_diff_sums, formulas._sinh_below_1: sinh_below_1,
            formulas._tanh_below_0_625: tanh_below_0_625,
            formulas._log1p_below_0_29: log1p_below_0_29,
            formulas._log1p_at_most_1: log1p_at_most_1,
            formulas._exp_at_most_0: exp_at_most_0}


#: What a float32 formula variant calls instead of a global: ``math`` functions imported by
#: name, and the row helpers of the built-in formulas.
REPLACEMENTS = _replacements()
#: ``REPLACEMENTS`` with `log_or_nan` for ``math.log`` (`LossSpec.fast_logs`).
REPLACEMENTS_LOG_OR_NAN = {**REPLACEMENTS, math.log: log_or_nan}


# --- accuracy sweep ---------------------------------------------------------------------------

@njit(nogil=True, **_STRICT)
def _sweep_block(which, start, stop, step):
    """(max ulp error, NaN/inf mismatches) of function ``which`` over int32 bit patterns."""
    worst = 0.0
    bad = 0
    for b in range(start, stop, step):
        x = _as_float(np.int32(b))
        xd = np.float64(x)
        if which == 0:
            got = _log32(x)
            want = math.log(xd) if xd > 0 else (-np.inf if xd == 0 else np.nan)
        elif which == 1:
            got = _exp32(x)
            want = math.exp(xd) if xd < 709.0 else np.inf
        elif which == 2:
            got = _log1p32(x)
            want = math.log1p(xd) if xd > -1.0 else (-np.inf if xd == -1.0 else np.nan)
        elif which == 3:
            got = _tanh32(x)
            want = math.tanh(xd)
        else:
            got = _sinh32(x)
            want = math.sinh(xd) if abs(xd) < 710.0 else math.copysign(np.inf, xd)
        if xd != xd:
            want = np.nan
        w32 = np.float32(want)
        if w32 != w32 or got != got:
            bad += 0 if (w32 != w32 and got != got) else 1
            continue
        if math.isinf(w32) or math.isinf(got):
            bad += 0 if w32 == got else 1
            continue
        # one float32 ulp at the true value (the subnormal spacing below the normal range)
        a = abs(want)
        ulp = 2.0 ** (math.floor(math.log2(a)) - 23) if a >= 1.1754943508222875e-38 else 2.0 ** -149
        err = abs(np.float64(got) - want) / ulp
        if err > worst:
            worst = err
    return worst, bad


FUNCTIONS = ("log", "exp", "log1p", "tanh", "sinh")


def sweep(step: int = 1, threads: int | None = None) -> dict:
    """``{name: (max ulp error, NaN/inf mismatches)}`` over every ``step``-th float32 bit pattern."""
    import os
    from concurrent.futures import ThreadPoolExecutor
    threads = threads or os.cpu_count() or 1
    pieces = 64
    size = 2 ** 32 // pieces
    results = {}
    for which, name in enumerate(FUNCTIONS):
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(
                lambda i: _sweep_block(which, -2 ** 31 + i * size, -2 ** 31 + (i + 1) * size, step),
                range(pieces)))
        results[name] = (max(w for w, _ in parts), sum(n for _, n in parts))
    return results


@njit(nogil=True, **_STRICT)
def _pow_sweep_block(ys, start, stop, step):
    """(max ulp error, NaN/inf/signed-zero mismatches, where the max is as (x, y)) of `pow`
    over the int32 bit patterns ``range(start, stop, step)`` of x times every y in ``ys``,
    against float64 libm ``pow``."""
    worst = 0.0
    bad = 0
    wx = wy = np.float32(0.0)
    for j in range(ys.shape[0]):
        y = ys[j]
        yd = np.float64(y)
        for b in range(start, stop, step):
            x = _as_float(np.int32(b))
            got = _pow32(x, y)
            want = math.pow(np.float64(x), yd)
            w32 = np.float32(want)
            if w32 != w32 or got != got:
                bad += 0 if (w32 != w32 and got != got) else 1
                continue
            if math.isinf(w32) or math.isinf(got):
                bad += 0 if w32 == got else 1
                continue
            if w32 == 0.0 and got == 0.0:  # zeros: the sign must match
                bad += 0 if math.copysign(1.0, w32) == math.copysign(1.0, got) else 1
                continue
            a = abs(want)
            ulp = 2.0 ** (math.floor(math.log2(a)) - 23) if a >= 1.1754943508222875e-38 \
                else 2.0 ** -149
            err = abs(np.float64(got) - want) / ulp
            if err > worst:
                worst, wx, wy = err, x, y
    return worst, bad, wx, wy


#: Exponents the pow sweeps run: focal's gammas, then negative, tiny, large and odd/even ones
#: (2**24 - 1 is the largest odd float32, 2**24 + 2 an even one) and the special values.
POW_EXPONENTS = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0,
                          -0.0, -0.5, -1.0, -2.5, -3.0, 1e-3, 0.1, 1.0 / 3.0, 7.0, 10.0, 33.3,
                          100.0, -100.0, 1234.5, 16777215.0, 16777218.0, 1e30, -1e-30,
                          np.inf, -np.inf, np.nan], dtype=np.float32)


def sweep_pow(exponents=POW_EXPONENTS, start: int = -2 ** 31, stop: int = 2 ** 31, step: int = 1,
              threads: int | None = None) -> tuple:
    """``(max ulp error, NaN/inf/signed-zero mismatches, x, y)`` of `pow` against float64 libm
    over the float32 ``x`` whose int32 bit patterns are ``range(start, stop, step)`` (all 2**32
    by default; ``0 .. 0x3F800001`` is [0, 1]) times each of ``exponents``; ``(x, y)`` is where
    the max error is."""
    import os
    from concurrent.futures import ThreadPoolExecutor
    threads = threads or os.cpu_count() or 1
    ys = np.asarray(exponents, dtype=np.float32)
    pieces = max(1, min(64, (stop - start) // max(step, 1) // 65536))
    size = -(-(stop - start) // pieces)
    size += -size % step  # every block starts on the grid start + k * step
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda i: _pow_sweep_block(ys, start + i * size,
                                                         min(stop, start + (i + 1) * size), step),
                              range(pieces)))
    worst = max(parts, key=lambda part: part[0])
    return worst[0], sum(part[1] for part in parts), float(worst[2]), float(worst[3])


if __name__ == "__main__":  # python -m lossforge.kernels.vmath: the exhaustive sweep (minutes)
    for name, (worst, bad) in sweep().items():
        print(f"{name:6s} max error {worst:.3f} ulp, NaN/inf mismatches: {bad}")
    # pow has two arguments: every x in [0, 1] (focal's 1 - p_t) times focal's gammas (~10
    # minutes on 2 cores), then every 61st float32 times all of POW_EXPONENTS
    focal = POW_EXPONENTS[:8]
    worst, bad, x, y = sweep_pow(focal, 0, 0x3F800001)
    print(f"pow    max error {worst:.3f} ulp (at {x!r}**{y!r}), NaN/inf/zero mismatches: {bad}; "
          f"every x in [0, 1], y in {focal.tolist()}")
    worst, bad, x, y = sweep_pow(step=61)
    print(f"pow    max error {worst:.3f} ulp (at {x!r}**{y!r}), NaN/inf/zero mismatches: {bad}; "
          f"every 61st float32 x, y in {POW_EXPONENTS.tolist()}")
