"""The forward renderer's inner kernel: one Gaussian over a strip of 8 columns, row by row, in LLVM IR.

A strip is 8 adjacent pixel columns (one SIMD vector of float32 lanes) and a
run of rows. Per row the kernel computes each lane's ``d2`` exactly as the
reference does (float32, ``z2 = (dy - l21 * z1) / l22``, no FMA contraction),
so the ``d2 <= CUTOFF_SQ`` mask is exact, and adds ``colour * weight`` to the
three channel vectors of that row. The weight is computed in one of two ways:

* ``exact``: ``exp(-d2 / 2)`` by the vector polynomial of
  :func:`exp_neg_half` in every row;
* ``recurrence``: along a column ``d2`` is a quadratic in the row, so the
  weight of the next row is this row's times a ratio that itself changes by a
  constant factor: ``w(i + 1) = w(i) * rho(i)``, ``rho(i + 1) = rho(i) * K``
  with ``K = exp(-1 / l22^2)``. Rows are stepped in pairs, as two independent
  chains (``w(i + 2) = w(i) * rho2(i)``, ``rho2(i + 2) = rho2(i) * K^4``), and
  restarted from the polynomial every :data:`RESTART` rows, which bounds the
  drift to about 1e-5 relative. Only Gaussians with ``|l22| >=``
  :data:`MIN_RECURRENCE_L22` pixels take this path: then a lane that meets its
  ellipse within a restart block starts the block at ``d2 <= 9 + (3 + 15 /
  |l22|)^2 < 119``, above the polynomial's clamp (``2^-100``), so no weight that
  counts was clamped. Weights and ratios are floored at ``2^-100`` and
  ``2^-20`` (a lane moving away from its ellipse never comes back within the
  block), which keeps every product a normal float: denormals would cost
  hundreds of cycles each.

  The decoder's variants (``*_recurrence_ftz``) step each vector as one chain
  (``w(i + 1) = w(i) rho(i)``, ``rho(i + 2) = rho(i) K^2``: 4 vectors of state
  instead of 8 for two strips, fewer spills) without the floors, under the
  processor's flush-to-zero mode, which the caller sets (:func:`swap_mxcsr`):
  a lane moving away from its ellipse then reaches 0 instead of a denormal.
  Within the mask the weights are never near either floor, so only the
  rounding of the chain differs (about 1e-5 relative, as before). The
  training forward keeps the two-chain kernels.

The ``strip2_*`` kernels draw two strips (adjacent column blocks, ``bstride``
floats apart) over the same rows in one loop: half the calls and loop exits,
and two independent vectors per step.

The scratch layout is fixed at compile time: row ``r`` of the strip starts
``ROW_STRIDE * r`` floats after the first, channel ``c`` ``CHANNEL_STRIDE * c``
floats after its row. numba's auto-vectorizer cannot keep per-lane state in
registers across rows (it vectorizes only the innermost loop, along a row),
hence the hand-written IR. Rows are processed in pairs, so a strip with an odd
number of rows also writes the row after its last (zero weight where the exact
mask says so): the scratch must have that row.

numba caches the compiled renderer by :mod:`.forward`'s source file: after
editing only this module, clear the ``__pycache__`` folder (or touch
``forward.py``) so the kernels are recompiled.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

from ..limits import CUTOFF_SQ
from .cache import key_caches_on_sources
from .footprint import f32_from_bits

LANES = 8
ROW_STRIDE = 3 * LANES
CHANNEL_STRIDE = LANES
RESTART = 16
MIN_RECURRENCE_L22 = 2.0

_F32_ROUND = np.float32(12582912.0)  # 1.5 * 2^23: adding and subtracting it rounds to an integer
_EXP_SCALE = np.float32(-0.72134752044448170)  # -log2(e) / 2
_EXP_FLOOR = np.float32(-100.0)  # weights clamp at 2^-100
EXP_POLY = (1.0, 0.69314686, 0.24022238, 0.05550893, 0.0096717, 0.00132187)
"""Coefficients ``c0..c5`` of the degree-5 fit of ``2^r`` on ``|r| <= 1/2`` (the scalar and the vector
``exp(-d2 / 2)`` both read them)."""
_P0, _P1, _P2, _P3, _P4, _P5 = (np.float32(c) for c in EXP_POLY)
_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_VEC = ir.VectorType(_F32, LANES)
_IVEC = ir.VectorType(_I32, LANES)


@intrinsic
def _fma(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """``a * b + c`` with one rounding (float32)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True, inline="always")
def exp_neg_half(d2: np.float32) -> np.float32:
    """``exp(-d2 / 2)`` in float32 for ``d2 >= 0`` (relative error below 3e-7; clamps at ``2^-100``), vectorizable.

    The scalar form of the kernels' vector polynomial (the same operations).

    ``2^x`` with ``x = -d2 log2(e) / 2``: ``n = round(x)`` by the 1.5 * 2^23
    addition trick, a degree-5 least-squares fit of ``2^r`` on ``|r| <= 1/2``
    evaluated with FMAs in Estrin's scheme (short dependency chain), and ``2^n``
    built in the exponent bits.
    """
    x = max(d2 * _EXP_SCALE, _EXP_FLOOR)
    n = (x + _F32_ROUND) - _F32_ROUND
    r = x - n
    r2 = r * r
    q01 = _fma(_P1, r, _P0)
    q23 = _fma(_P3, r, _P2)
    q45 = _fma(_P5, r, _P4)
    p = _fma(r2, _fma(r2, q45, q23), q01)
    return p * f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))


def _const(x: float) -> ir.Constant:
    return ir.Constant(_VEC, [float(np.float32(x))] * LANES)


def _splat(builder: ir.IRBuilder, v: ir.Value) -> ir.Value:
    undef = ir.Constant(_VEC, ir.Undefined)
    one = builder.insert_element(undef, v, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _vector_intrinsic(builder: ir.IRBuilder, name: str, nargs: int) -> ir.Function:
    fnty = ir.FunctionType(_VEC, [_VEC] * nargs)
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{name}.v{LANES}f32")


def _vector_exp_neg_half(builder: ir.IRBuilder, d2: ir.Value) -> ir.Value:
    """``exp(-d2 / 2)`` per lane: the same operations as :func:`exp_neg_half`."""
    fma = _vector_intrinsic(builder, "fma", 3)
    vmax = _vector_intrinsic(builder, "maxnum", 2)
    x = builder.call(vmax, [builder.fmul(d2, _const(_EXP_SCALE)), _const(_EXP_FLOOR)])
    n = builder.fsub(builder.fadd(x, _const(_F32_ROUND)), _const(_F32_ROUND))
    r = builder.fsub(x, n)
    r2 = builder.fmul(r, r)
    q01 = builder.call(fma, [_const(_P1), r, _const(_P0)])
    q23 = builder.call(fma, [_const(_P3), r, _const(_P2)])
    q45 = builder.call(fma, [_const(_P5), r, _const(_P4)])
    p = builder.call(fma, [r2, builder.call(fma, [r2, q45, q23]), q01])
    bits = builder.shl(builder.add(builder.fptosi(n, _IVEC), ir.Constant(_IVEC, [127] * LANES)),
                       ir.Constant(_IVEC, [23] * LANES))
    return builder.fmul(p, builder.bitcast(bits, _VEC))


def _codegen(recurrence: bool, vectors: int, ftz: bool = False):  # type: ignore[no-untyped-def]
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        acc_arg, aoff, bstride, z1_arg, zoff, nrows, row0, y, l21, l22, c0, c1, c2 = args
        fma = _vector_intrinsic(builder, "fma", 3)
        vmax = _vector_intrinsic(builder, "maxnum", 2)
        vptr = _VEC.as_pointer()
        acc = context.make_array(signature.args[0])(context, builder, acc_arg).data
        z1p = context.make_array(signature.args[3])(context, builder, z1_arg).data
        vs = range(vectors)
        bases = [builder.gep(acc, [builder.add(aoff, builder.mul(bstride, ir.Constant(_I64, v)))]) for v in vs]
        z1 = [builder.load(builder.bitcast(builder.gep(z1p, [builder.add(zoff, ir.Constant(_I64, LANES * v))]), vptr),
                           align=4) for v in vs]
        l21z1 = [builder.fmul(z, _splat(builder, l21)) for z in z1]
        z1sq = [builder.fmul(z, z) for z in z1]
        vl22 = _splat(builder, l22)
        colour = [_splat(builder, c) for c in (c0, c1, c2)]
        zero = _const(0.0)
        row0f = builder.fadd(builder.sitofp(row0, _F32), ir.Constant(_F32, 0.5))

        vy = _splat(builder, y)
        first_centre = _splat(builder, row0f)  # in the entry block, for the exact loop's phi

        def row_centres(i: ir.Value) -> ir.Value:
            """``row0 + i + 0.5`` in every lane (exact in float32 below 2^23 rows)."""
            return _splat(builder, builder.fadd(row0f, builder.sitofp(i, _F32)))

        def z2_d2(centre: ir.Value, v: int) -> tuple[ir.Value, ir.Value]:
            dy = builder.fsub(centre, vy)  # (row + 0.5) - y, the reference's order
            z2 = builder.fdiv(builder.fsub(dy, l21z1[v]), vl22)
            return z2, builder.fadd(z1sq[v], builder.fmul(z2, z2))

        def accumulate(i: ir.Value, centre: ir.Value, weights: list[list[ir.Value]]) -> None:
            """Add rows ``i`` and ``i + 1`` (row centres ``centre``, ``centre + 1``) of every vector ``v``
            with ``weights[v]``, masked here."""
            offset = builder.mul(i, ir.Constant(_I64, ROW_STRIDE))
            centres = [centre, builder.fadd(centre, _const(1.0))]
            for v in vs:
                row = builder.gep(bases[v], [offset])
                for r, w in enumerate(weights[v]):
                    _, d2 = z2_d2(centres[r], v)
                    w = builder.select(builder.fcmp_ordered("<=", d2, _const(CUTOFF_SQ)), w, zero)
                    for ch in range(3):
                        at = ir.Constant(_I64, r * ROW_STRIDE + ch * CHANNEL_STRIDE)
                        ptr = builder.bitcast(builder.gep(row, [at]), vptr)
                        builder.store(builder.call(fma, [w, colour[ch], builder.load(ptr, align=4)]), ptr, align=4)

        entry = builder.block
        fn = builder.function
        two = ir.Constant(_I64, 2)
        done = fn.append_basic_block("strip.done")
        if not recurrence:
            loop = fn.append_basic_block("strip.exact")
            builder.cbranch(builder.icmp_signed(">", nrows, ir.Constant(_I64, 0)), loop, done)
            builder.position_at_end(loop)
            i = builder.phi(_I64)
            i.add_incoming(ir.Constant(_I64, 0), entry)
            centre = builder.phi(_VEC)
            centre.add_incoming(first_centre, entry)
            pair = [centre, builder.fadd(centre, _const(1.0))]
            accumulate(i, centre, [[_vector_exp_neg_half(builder, z2_d2(pair[r], v)[1]) for r in range(2)] for v in vs])
            nxt = builder.add(i, two)
            i.add_incoming(nxt, builder.block)
            centre.add_incoming(builder.fadd(centre, _const(2.0)), builder.block)
            builder.cbranch(builder.icmp_signed("<", nxt, nrows), loop, done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        inv = builder.fdiv(ir.Constant(_F32, 1.0), l22)
        vinv = _splat(builder, inv)
        k1 = _vector_exp_neg_half(builder, _splat(builder, builder.fmul(ir.Constant(_F32, 2.0), builder.fmul(inv, inv))))
        k2 = builder.fmul(k1, k1)
        k4 = builder.fmul(k2, k2)
        restart = fn.append_basic_block("strip.restart")
        loop = fn.append_basic_block("strip.rows")
        latch = fn.append_basic_block("strip.latch")
        builder.cbranch(builder.icmp_signed(">", nrows, ir.Constant(_I64, 0)), restart, done)

        builder.position_at_end(restart)
        i0 = builder.phi(_I64)
        i0.add_incoming(ir.Constant(_I64, 0), entry)
        centre0 = row_centres(i0)
        start = []  # per vector: w(i), w(i + 1), rho2(i), rho2(i + 1); with ftz: w(i), rho(i)
        for v in vs:
            z2, d2 = z2_d2(centre0, v)
            wa0 = _vector_exp_neg_half(builder, d2)
            # rho(i) = w(i + 1) / w(i) = exp(-(2 z2 + 1 / l22) / (2 l22)); rho2(i) = rho(i) rho(i + 1) = rho(i)^2 K
            rho = _vector_exp_neg_half(builder, builder.fmul(builder.fadd(builder.fadd(z2, z2), vinv), vinv))
            if ftz:
                start += [wa0, rho]
                continue
            ra0 = builder.fmul(builder.fmul(rho, rho), k1)
            start += [wa0, builder.fmul(wa0, rho), ra0, builder.fmul(ra0, k2)]
        end = builder.add(i0, ir.Constant(_I64, RESTART))
        end = builder.select(builder.icmp_signed("<", end, nrows), end, nrows)
        builder.branch(loop)

        builder.position_at_end(loop)
        i = builder.phi(_I64)
        i.add_incoming(i0, restart)
        centre = builder.phi(_VEC)
        centre.add_incoming(centre0, restart)
        state = [builder.phi(_VEC) for _ in start]
        for phi, value in zip(state, start):
            phi.add_incoming(value, restart)
        step = []
        if ftz:  # one chain per vector: w(i + 1) = w(i) rho(i), w(i + 2) = w(i + 1) rho(i) K, rho(i + 2) = rho(i) K^2
            weights = []
            for v in vs:
                wa, ra = state[2 * v: 2 * v + 2]
                wb = builder.fmul(wa, ra)
                weights.append([wa, wb])
                step += [builder.fmul(wb, builder.fmul(ra, k1)), builder.fmul(ra, k2)]
            accumulate(i, centre, weights)
        else:
            accumulate(i, centre, [state[4 * v: 4 * v + 2] for v in vs])
            wfloor, rfloor = _const(2.0 ** -100), _const(2.0 ** -20)
            for v in vs:
                wa, wb, ra, rb = state[4 * v: 4 * v + 4]
                step += [builder.call(vmax, [builder.fmul(wa, ra), wfloor]),
                         builder.call(vmax, [builder.fmul(wb, rb), wfloor]),
                         builder.call(vmax, [builder.fmul(ra, k4), rfloor]),
                         builder.call(vmax, [builder.fmul(rb, k4), rfloor])]
        centre.add_incoming(builder.fadd(centre, _const(2.0)), loop)
        for phi, value in zip(state, step):
            phi.add_incoming(value, loop)
        nxt = builder.add(i, two)
        i.add_incoming(nxt, loop)
        builder.cbranch(builder.icmp_signed("<", nxt, end), loop, latch)

        builder.position_at_end(latch)
        i0.add_incoming(end, latch)
        builder.cbranch(builder.icmp_signed("<", end, nrows), restart, done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return codegen


def _strip_intrinsic(recurrence: bool, vectors: int, ftz: bool = False):  # type: ignore[no-untyped-def]
    def typer(typingctx, acc, aoff, bstride, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2):  # type: ignore[no-untyped-def]
        args = (acc, aoff, bstride, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2)
        ok = (isinstance(acc, types.Array) and acc.dtype == types.float32 and acc.layout == "C"
              and isinstance(z1s, types.Array) and z1s.dtype == types.float32 and z1s.layout == "C"
              and all(t == types.int64 for t in (aoff, bstride, zoff, nrows, row0))
              and all(t == types.float32 for t in (y, l21, l22, c0, c1, c2)))
        if not ok:
            return None
        return types.void(*args), _codegen(recurrence, vectors, ftz)

    typer.__name__ = f"strip{vectors}_{'recurrence' if recurrence else 'exact'}{'_ftz' if ftz else ''}"
    return intrinsic(typer)


strip_exact = _strip_intrinsic(False, 1)
strip_recurrence = _strip_intrinsic(True, 1)
strip2_exact = _strip_intrinsic(False, 2)
strip2_recurrence = _strip_intrinsic(True, 2)
strip_recurrence_ftz = _strip_intrinsic(True, 1, True)
strip2_recurrence_ftz = _strip_intrinsic(True, 2, True)

MXCSR_FTZ = 0x8000
"""The flush-to-zero bit of the x86 SSE control register: results below ``2**-126`` become 0."""
MXCSR_SUPPORTED = platform.machine().lower() in ("x86_64", "amd64")
"""Whether this machine has the register (x86-64); elsewhere :func:`mxcsr` reads 0, :func:`swap_mxcsr` does
nothing and the decoder keeps the kernels with floors."""


def _mxcsr_codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
    if not MXCSR_SUPPORTED:
        return ir.Constant(_I64, 0)
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p])
    slot = cgutils.alloca_once(builder, _I32)
    builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr"),
                 [builder.bitcast(slot, i8p)])
    old = builder.load(slot)
    builder.store(builder.trunc(args[0], _I32), slot)
    builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr"),
                 [builder.bitcast(slot, i8p)])
    return builder.zext(old, _I64)


def _mxcsr_read_codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
    if not MXCSR_SUPPORTED:
        return ir.Constant(_I64, 0)
    i8p = ir.IntType(8).as_pointer()
    slot = cgutils.alloca_once(builder, _I32)
    builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p]),
                                                "llvm.x86.sse.stmxcsr"), [builder.bitcast(slot, i8p)])
    return builder.zext(builder.load(slot), _I64)


@intrinsic
def mxcsr(typingctx):  # type: ignore[no-untyped-def]
    """``mxcsr()``: this thread's SSE control register, as int64."""
    return types.int64(), _mxcsr_read_codegen


@intrinsic
def swap_mxcsr(typingctx, value):  # type: ignore[no-untyped-def]
    """``swap_mxcsr(value)``: set this thread's SSE control register (rounding, flush-to-zero) to ``value``
    (int64); returns the value it had. Only x86-64 has it."""
    if value != types.int64:
        return None
    return types.int64(types.int64), _mxcsr_codegen


def _grad_codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
    g_arg, goff, z1_arg, zoff, nrows, row0, y, l21, l22, c0, c1, c2, out_arg, ooff = args
    fma = _vector_intrinsic(builder, "fma", 3)
    vptr = _VEC.as_pointer()
    gp = context.make_array(signature.args[0])(context, builder, g_arg).data
    z1p = context.make_array(signature.args[2])(context, builder, z1_arg).data
    outp = context.make_array(signature.args[12])(context, builder, out_arg).data
    base = builder.gep(gp, [goff])
    z1 = builder.load(builder.bitcast(builder.gep(z1p, [zoff]), vptr), align=4)
    l21z1 = builder.fmul(z1, _splat(builder, l21))
    z1sq = builder.fmul(z1, z1)
    vl22 = _splat(builder, l22)
    vy = _splat(builder, y)
    colour = [_splat(builder, c) for c in (c0, c1, c2)]
    zero = _const(0.0)
    row0f = builder.fadd(builder.sitofp(row0, _F32), ir.Constant(_F32, 0.5))
    first_centre = _splat(builder, row0f)  # in the entry block, for the loop's phi
    entry = builder.block
    fn = builder.function
    loop = fn.append_basic_block("grad.rows")
    done = fn.append_basic_block("grad.done")
    builder.cbranch(builder.icmp_signed(">", nrows, ir.Constant(_I64, 0)), loop, done)
    builder.position_at_end(loop)
    i = builder.phi(_I64)
    i.add_incoming(ir.Constant(_I64, 0), entry)
    centre = builder.phi(_VEC)
    centre.add_incoming(first_centre, entry)
    sums = [builder.phi(_VEC) for _ in range(GRAD_SUMS)]
    for phi in sums:
        phi.add_incoming(zero, entry)
    dy = builder.fsub(centre, vy)  # (row + 0.5) - y, the reference's order
    z2 = builder.fdiv(builder.fsub(dy, l21z1), vl22)
    d2 = builder.fadd(z1sq, builder.fmul(z2, z2))
    w = builder.select(builder.fcmp_ordered("<=", d2, _const(CUTOFF_SQ)), _vector_exp_neg_half(builder, d2), zero)
    row = builder.gep(base, [builder.mul(i, ir.Constant(_I64, ROW_STRIDE))])
    grads = [builder.load(builder.bitcast(builder.gep(row, [ir.Constant(_I64, ch * CHANNEL_STRIDE)]), vptr), align=4)
             for ch in range(3)]
    dot = builder.call(fma, [grads[2], colour[2], builder.call(fma, [grads[1], colour[1],
                                                                     builder.fmul(grads[0], colour[0])])])
    a = builder.fmul(w, dot)
    t = builder.fmul(a, z2)
    new = [builder.call(fma, [w, grads[ch], sums[ch]]) for ch in range(3)]
    new += [builder.fadd(sums[3], a), builder.fadd(sums[4], t), builder.call(fma, [t, z2, sums[5]])]
    for phi, value in zip(sums, new):
        phi.add_incoming(value, loop)
    centre.add_incoming(builder.fadd(centre, _const(1.0)), loop)
    nxt = builder.add(i, ir.Constant(_I64, 1))
    i.add_incoming(nxt, loop)
    builder.cbranch(builder.icmp_signed("<", nxt, nrows), loop, done)
    builder.position_at_end(done)
    results = [builder.phi(_VEC) for _ in range(GRAD_SUMS)]
    for phi, value in zip(results, new):
        phi.add_incoming(zero, entry)
        phi.add_incoming(value, loop)
    for s, value in enumerate(results):
        ptr = builder.bitcast(builder.gep(outp, [builder.add(ooff, ir.Constant(_I64, s * LANES))]), vptr)
        builder.store(value, ptr, align=4)
    return context.get_dummy_value()


GRAD_SUMS = 6
"""Vectors :func:`strip_grad` writes: ``sum(w G_c)`` for c = 0, 1, 2, then ``sum(a)``, ``sum(a z2)``, ``sum(a z2^2)``."""


@intrinsic
def strip_grad(typingctx, g, goff, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2, out, ooff):  # type: ignore[no-untyped-def]
    """Per-lane gradient sums of one Gaussian over a strip of 8 columns of the upstream gradient, row by row.

    ``strip_grad(g, goff, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2, out, ooff)``:
    ``g`` float32 upstream gradient in the scratch layout (the strip's first
    row at ``g[goff:]``, rows ``ROW_STRIDE`` apart, channels ``CHANNEL_STRIDE``);
    ``z1s[zoff:]`` the lanes' ``(px - x) / l11``; rows ``row0 .. row0 + nrows``;
    mean ``y`` and factors ``l21, l22``; ``c0, c1, c2`` the colour scaled by -1/2.
    With the exact mask and weight ``w``, ``a = w * dot(G, c)``: writes the
    :data:`GRAD_SUMS` per-lane float32 sums to ``out[ooff:ooff + 8 * GRAD_SUMS]``.
    """
    args = (g, goff, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2, out, ooff)
    ok = (all(isinstance(t, types.Array) and t.dtype == types.float32 and t.layout == "C" for t in (g, z1s, out))
          and all(t == types.int64 for t in (goff, zoff, nrows, row0, ooff))
          and all(t == types.float32 for t in (y, l21, l22, c0, c1, c2)))
    if not ok:
        return None
    return types.void(*args), _grad_codegen


def _pack_codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
    acc_arg, aoff, out_arg, ooff = args
    vptr = _VEC.as_pointer()
    acc = context.make_array(signature.args[0])(context, builder, acc_arg).data
    out = context.make_array(signature.args[2])(context, builder, out_arg).data
    floor = _vector_intrinsic(builder, "floor", 1)
    i8 = ir.IntType(8)
    channels = []
    for ch in range(3):
        v = builder.load(builder.bitcast(builder.gep(acc, [builder.add(aoff, ir.Constant(_I64, ch * CHANNEL_STRIDE))]),
                                         vptr), align=4)
        v = builder.select(builder.fcmp_ordered(">", v, _const(0.0)), v, _const(0.0))  # NaN becomes 0
        v = builder.select(builder.fcmp_ordered("<", v, _const(1.0)), v, _const(1.0))
        v = builder.call(floor, [builder.fadd(builder.fmul(v, _const(255.0)), _const(0.5))])
        channels.append(builder.trunc(builder.fptosi(v, _IVEC), ir.VectorType(i8, LANES)))
    idx = ir.VectorType(_I32, 2 * LANES)
    rg = builder.shuffle_vector(channels[0], channels[1], ir.Constant(idx, list(range(2 * LANES))))
    bb = builder.shuffle_vector(channels[2], ir.Constant(ir.VectorType(i8, LANES), ir.Undefined),
                                ir.Constant(idx, list(range(LANES)) * 2))
    order = [v for lane in range(LANES) for v in (lane, LANES + lane, 2 * LANES + lane)]
    rgb = builder.shuffle_vector(rg, bb, ir.Constant(ir.VectorType(_I32, 3 * LANES), order))
    target = builder.bitcast(builder.gep(out, [ooff]), ir.VectorType(i8, 3 * LANES).as_pointer())
    builder.store(rgb, target, align=1)
    return context.get_dummy_value()


@intrinsic
def pack_rgb8(typingctx, acc, aoff, out, ooff):  # type: ignore[no-untyped-def]
    """Write 8 pixels of a scratch row as interleaved RGB bytes ``floor(clamp(v, 0, 1) * 255 + 0.5)``.

    ``pack_rgb8(acc, aoff, out, ooff)``: the channel vectors at ``acc[aoff:]``
    (``CHANNEL_STRIDE`` apart) go to ``out.flat[ooff:ooff + 24]``; NaN becomes 0.
    """
    ok = (isinstance(acc, types.Array) and acc.dtype == types.float32 and acc.layout == "C"
          and isinstance(out, types.Array) and out.dtype == types.uint8 and out.layout == "C"
          and aoff == types.int64 and ooff == types.int64)
    if not ok:
        return None
    return types.void(acc, aoff, out, ooff), _pack_codegen


_DOC = """Add one Gaussian to {what} of a scratch over ``nrows`` rows ({how}).

    ``strip(acc, aoff, bstride, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2)``:
    ``acc`` float32 scratch, the strip's first row at ``acc[aoff:]`` (layout in
    the module docstring){second}; ``z1s[zoff:]`` the lanes' ``(px - x) / l11``;
    ``row0`` the image row of the strip's first row; mean ``y`` and factors
    ``l21, l22`` (pixels); colour ``c0, c1, c2``. Rows are stepped in pairs:
    an odd ``nrows`` also writes the next row (with the exact mask).
    """
for _fn, _what, _second in ((strip_exact, "one strip of 8 columns", ", ``bstride`` unused"),
                            (strip_recurrence, "one strip of 8 columns", ", ``bstride`` unused"),
                            (strip2_exact, "two strips of 8 columns", ", the second ``bstride`` floats on"),
                            (strip2_recurrence, "two strips of 8 columns", ", the second ``bstride`` floats on"),
                            (strip_recurrence_ftz, "one strip of 8 columns", ", ``bstride`` unused"),
                            (strip2_recurrence_ftz, "two strips of 8 columns", ", the second ``bstride`` floats on")):
    _how = ("weights from the polynomial in every row" if _fn in (strip_exact, strip2_exact)
            else "weights by the row recurrence; needs ``|l22| >= MIN_RECURRENCE_L22``")
    if _fn in (strip_recurrence_ftz, strip2_recurrence_ftz):
        _how += (", one chain per vector and no floors; the caller sets flush-to-zero (:func:`swap_mxcsr`, "
                 ":data:`MXCSR_FTZ`)")
    _fn.__doc__ = _DOC.format(what=_what, how=_how, second=_second)

key_caches_on_sources(globals())

__all__ = ["CHANNEL_STRIDE", "EXP_POLY", "GRAD_SUMS", "LANES", "MIN_RECURRENCE_L22", "MXCSR_FTZ", "MXCSR_SUPPORTED",
           "RESTART", "ROW_STRIDE", "exp_neg_half", "mxcsr", "pack_rgb8", "strip2_exact", "strip2_recurrence",
           "strip2_recurrence_ftz", "strip_exact", "strip_grad", "strip_recurrence", "strip_recurrence_ftz",
           "swap_mxcsr"]
