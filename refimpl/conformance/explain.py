"""Failure reports: a block decoded field by field, and the reference computation of one dequantized element.

``decode_block`` names every byte of a block with the field of refimpl's block dtype (``refimpl.quant.TYPES``:
the C struct of ggml-common.h, field for field).  ``explain_element(type, block, j)`` returns the C expression of
``dequantize_row_<type>`` for element ``j`` with the block's numbers put in, and the value that expression gives
in float32 (C operand order).  The runner prints it beside llama.cpp's expected value, which always comes from the
vectors; the value computed here is a reading aid (``tests/test_conformance.py`` checks it against the goldens).
Types without a formula here (the grid-based i-quants) point at their spec page.
"""
from __future__ import annotations

import numpy as np

f32 = np.float32
KVALUES_IQ4NL = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)
KVALUES_MXFP4 = (0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)


def f16(bits: int) -> np.float32:
    # ggml's GGML_FP16_TO_FP32 (refimpl.floats mirrors its bit tricks: a signalling NaN comes out quieted, which
    # a plain float16 -> float32 cast does not do)
    from ..floats import F16_TO_F32

    return f32(F16_TO_F32[int(bits) & 0xFFFF])


def fmt_float(v) -> str:
    v = f32(v)
    bits = int(np.array([v], "<f4").view("<u4")[0])
    return f"{float(v)!r} (0x{bits:08x})"


def field_map(fmt) -> list[tuple[str, int, np.dtype, int]]:
    """(name, offset, element dtype, count) of each field, in byte order."""
    dt = np.dtype(fmt.block_dtype)
    if not dt.names:
        return [("value", 0, dt, 1)]
    out = []
    for name in dt.names:
        ft, off = dt.fields[name][:2]
        out.append((name, int(off), ft.base, int(np.prod(ft.shape)) if ft.shape else 1))
    return sorted(out, key=lambda f: f[1])


def field_at(fmt, byte: int) -> str:
    """The field (with index) that holds byte ``byte`` of a block: 'd', 'scales[3]', 'qs[17]'."""
    for name, off, base, count in field_map(fmt):
        if off <= byte < off + base.itemsize * count:
            k = (byte - off) // base.itemsize
            return name if count == 1 else f"{name}[{k}]"
    return f"byte {byte}"


def _value_str(name: str, base: np.dtype, v) -> str:
    if name == "value":   # a plain F16/BF16/F32/int element: its bits
        return f"0x{int(np.asarray(v).view(f'<u{base.itemsize}')):0{2 * base.itemsize}x}"
    if base == np.dtype("<u2") and name in ("d", "m", "dmin", "s"):
        return f"0x{int(v):04x} (F16 {float(f16(int(v)))!r})"
    if base.kind == "f":
        return repr(float(v))
    return str(int(v))


def decode_block(fmt, block: bytes, highlight: set[str] | None = None, max_items: int = 32) -> list[str]:
    """One line per field: 'd = 0x2e66 (F16 0.0999)', 'qs[0..15] = 1 2 …'; fields in ``highlight`` get a '*'."""
    lines = []
    raw = np.frombuffer(bytes(block), np.uint8)
    for name, off, base, count in field_map(fmt):
        vals = raw[off:off + base.itemsize * count].view(base.newbyteorder("<") if base.itemsize > 1 else base)
        mark = "*" if highlight and name in highlight else " "
        if count == 1:
            lines.append(f"{mark} {name} = {_value_str(name, base, vals[0])}")
        else:
            shown = " ".join(str(int(v)) for v in vals[:max_items])
            more = f" … ({count} values)" if count > max_items else ""
            lines.append(f"{mark} {name}[0..{count - 1}] = {shown}{more}")
    return lines


def _fields(fmt, block: bytes):
    rec = np.frombuffer(bytes(block), dtype=fmt.block_dtype)[0]
    if not fmt.block_dtype.names:   # plain F16 / BF16: the value's bits
        return np.frombuffer(bytes(block), "<u2")[0]
    return {name: rec[name] for name in fmt.block_dtype.names}


def _u8(a) -> np.ndarray:
    return np.frombuffer(bytes(a), np.uint8) if not isinstance(a, np.ndarray) else a.view(np.uint8).reshape(-1)


def _scale_min_k4(j: int, q: np.ndarray) -> tuple[int, int]:
    # get_scale_min_k4 (ggml-quants.c)
    q = [int(v) for v in q]
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def explain_element(fmt, block: bytes, j: int) -> tuple[str, np.float32 | None]:
    """(text, value) for element ``j`` of one block: the dequantize_row_<type> expression with numbers."""
    name = fmt.name
    fn = _EXPLAIN.get(name)
    if fn is None:
        return (f"y[{j}] = dequantize_row_{name.lower()} (grid/lookup format: see spec/quant/{name}.md)", None)
    with np.errstate(all="ignore"):
        return fn(_fields(fmt, block), j)


def _legacy(nbits: int, has_min: bool):
    def explain(b, j):
        d = f16(int(b["d"]))
        qs = _u8(b["qs"])
        half = j >= 16
        jj = j - 16 if half else j
        q = int(qs[jj]) >> 4 if half else int(qs[jj]) & 0xF
        qsrc = f"qs[{jj}] {'>> 4' if half else '& 0xF'}"
        if nbits == 5:
            qh = int(np.frombuffer(bytes(_u8(b["qh"])), "<u4")[0])
            hb = ((qh >> (jj + 12)) & 0x10) if half else (((qh >> jj) << 4) & 0x10)
            q |= hb
            qsrc += f" | bit {jj + 16 if half else jj} of qh << 4 (= {hb})"
        if nbits == 8:
            q = int(np.int8(_u8(b["qs"])[j].view(np.int8)))
            qsrc = f"(int8) qs[{j}]"
            return f"y[{j}] = q * d with q = {qsrc} = {q}, d = {float(d)!r}", f32(q) * d
        if has_min:
            m = f16(int(b["m"]))
            return (f"y[{j}] = q * d + m with q = {qsrc} = {q}, d = {float(d)!r}, m = {float(m)!r}",
                    f32(q) * d + m)
        off = 1 << (nbits - 1)
        return f"y[{j}] = (q - {off}) * d with q = {qsrc} = {q}, d = {float(d)!r}", f32(q - off) * d
    return explain


def _q8_K(b, j):
    d = f32(b["d"])
    q = int(np.asarray(b["qs"]).view(np.int8).reshape(-1)[j])
    return f"y[{j}] = d * q with d = {float(d)!r} (F32), q = qs[{j}] = {q}", d * f32(q)


def _k_2bit_position(j):
    h, r = divmod(j, 128)
    jj, k = divmod(r, 32)
    second, l = divmod(k, 16)
    return h, jj, second, l


def _q2_K(b, j):
    h, jj, second, l = _k_2bit_position(j)
    d, dmin = f16(int(b["d"])), f16(int(b["dmin"]))
    isc = h * 8 + jj * 2 + second
    sc = int(_u8(b["scales"])[isc])
    qi = h * 32 + second * 16 + l
    q = (int(_u8(b["qs"])[qi]) >> (2 * jj)) & 3
    dl, ml = d * f32(sc & 0xF), dmin * f32(sc >> 4)
    return (f"y[{j}] = (d * (scales[{isc}] & 0xF)) * q - dmin * (scales[{isc}] >> 4) with d = {float(d)!r}, "
            f"dmin = {float(dmin)!r}, scales[{isc}] = {sc}, q = (qs[{qi}] >> {2 * jj}) & 3 = {q}"), dl * f32(q) - ml


def _q3_K(b, j):
    h, jj, second, l = _k_2bit_position(j)
    d = f16(int(b["d"]))
    isc = h * 8 + jj * 2 + second
    sc = [int(v) for v in _u8(b["scales"])]
    low = (sc[isc] & 0xF) if isc < 8 else (sc[isc - 8] >> 4)
    s = (low | (((sc[8 + isc % 4] >> (2 * (isc // 4))) & 3) << 4)) - 32
    qi = h * 32 + second * 16 + l
    q = (int(_u8(b["qs"])[qi]) >> (2 * jj)) & 3
    hi = second * 16 + l
    mbit = h * 4 + jj
    hset = (int(_u8(b["hmask"])[hi]) >> mbit) & 1
    v = q - (0 if hset else 4)
    return (f"y[{j}] = (d * (scale[{isc}] - 32)) * (q - (hmask[{hi}] bit {mbit} ? 0 : 4)) with d = {float(d)!r}, "
            f"scale[{isc}] - 32 = {s} (6 bits from scales[]), q = (qs[{qi}] >> {2 * jj}) & 3 = {q}, "
            f"high bit = {hset}"), (d * f32(s)) * f32(v)


def _q45_K(five: bool):
    def explain(b, j):
        g, r = divmod(j, 64)
        sub, l = divmod(r, 32)
        isc = 2 * g + sub
        d, dmin = f16(int(b["d"])), f16(int(b["dmin"]))
        sc, m = _scale_min_k4(isc, _u8(b["scales"]))
        qb = int(_u8(b["qs"])[32 * g + l])
        q = (qb >> 4) if sub else (qb & 0xF)
        src = f"qs[{32 * g + l}] {'>> 4' if sub else '& 0xF'}"
        if five:
            bit = 2 * g + sub
            hb = 16 if (int(_u8(b["qh"])[l]) >> bit) & 1 else 0
            q += hb
            src += f" + (qh[{l}] bit {bit} ? 16 : 0)"
        return (f"y[{j}] = (d * sc) * q - dmin * m with d = {float(d)!r}, dmin = {float(dmin)!r}, "
                f"(sc, m) = get_scale_min_k4({isc}, scales) = ({sc}, {m}), q = {src} = {q}",
                (d * f32(sc)) * f32(q) - dmin * f32(m))
    return explain


def _q6_K(b, j):
    h, r = divmod(j, 128)
    quarter, l = divmod(r, 32)
    d = f16(int(b["d"]))
    qli = h * 64 + l + (32 if quarter in (1, 3) else 0)
    ql = int(_u8(b["ql"])[qli])
    low = (ql >> 4) if quarter >= 2 else (ql & 0xF)
    qhi = h * 32 + l
    hi = (int(_u8(b["qh"])[qhi]) >> (2 * quarter)) & 3
    q = (low | (hi << 4)) - 32
    isc = h * 8 + l // 16 + 2 * quarter
    sc = int(np.asarray(b["scales"]).view(np.int8).reshape(-1)[isc])
    return (f"y[{j}] = d * scales[{isc}] * q with d = {float(d)!r}, scales[{isc}] = {sc}, q = (ql[{qli}] "
            f"{'>> 4' if quarter >= 2 else '& 0xF'} | ((qh[{qhi}] >> {2 * quarter}) & 3) << 4) - 32 = {q}"), \
        (d * f32(sc)) * f32(q)


def _iq4_nl(b, j):
    d = f16(int(b["d"]))
    half, jj = divmod(j, 16)
    qb = int(_u8(b["qs"])[jj])
    k = (qb >> 4) if half else (qb & 0xF)
    return (f"y[{j}] = d * kvalues_iq4nl[{k}] with d = {float(d)!r}, index = qs[{jj}] {'>> 4' if half else '& 0xF'}, "
            f"kvalue = {KVALUES_IQ4NL[k]}"), d * f32(KVALUES_IQ4NL[k])


def _iq4_xs(b, j):
    d = f16(int(b["d"]))
    ib, r = divmod(j, 32)
    half, jj = divmod(r, 16)
    sl = [int(v) for v in _u8(b["scales_l"])]
    ls = ((sl[ib // 2] >> (4 * (ib % 2))) & 0xF) | (((int(b["scales_h"]) >> (2 * ib)) & 3) << 4)
    qb = int(_u8(b["qs"])[16 * ib + jj])
    k = (qb >> 4) if half else (qb & 0xF)
    return (f"y[{j}] = (d * (ls - 32)) * kvalues_iq4nl[{k}] with d = {float(d)!r}, ls = {ls} (scales_l/scales_h "
            f"of sub-block {ib}), kvalue = {KVALUES_IQ4NL[k]}"), (d * f32(ls - 32)) * f32(KVALUES_IQ4NL[k])


def _tq2_0(b, j):
    d = f16(int(b["d"]))
    jb, r = divmod(j, 128)
    l, m = divmod(r, 32)
    qi = 32 * jb + m
    q = (int(_u8(b["qs"])[qi]) >> (2 * l)) & 3
    return f"y[{j}] = (q - 1) * d with q = (qs[{qi}] >> {2 * l}) & 3 = {q}, d = {float(d)!r}", f32(q - 1) * d


def _mxfp4(b, j):
    e = int(b["e"])
    bits = (0x00200000 << e) if e < 2 else ((e - 1) << 23)
    d = np.array([bits], "<u4").view("<f4")[0]
    half, jj = divmod(j, 16)
    qb = int(_u8(b["qs"])[jj])
    k = (qb >> 4) if half else (qb & 0xF)
    return (f"y[{j}] = kvalues_mxfp4[{k}] * E8M0_TO_FP32_HALF(e) with e = {e} -> {float(d)!r}, kvalue = "
            f"{KVALUES_MXFP4[k]}"), f32(KVALUES_MXFP4[k]) * d


def _q1_0(b, j):
    d = f16(int(b["d"]))
    bit = (int(_u8(b["qs"])[j // 8]) >> (j % 8)) & 1
    return f"y[{j}] = bit ? d : -d with bit {j % 8} of qs[{j // 8}] = {bit}, d = {float(d)!r}", (d if bit else -d)


def _q2_0(b, j):
    d = f16(int(b["d"]))
    q = (int(_u8(b["qs"])[j // 4]) >> (2 * (j % 4))) & 3
    return f"y[{j}] = (q - 1) * d with q = (qs[{j // 4}] >> {2 * (j % 4)}) & 3 = {q}, d = {float(d)!r}", f32(q - 1) * d


def _f16_plain(b, j):
    return f"y = (float) x with x the F16 0x{int(b):04x} (ggml_fp16_to_fp32)", f16(int(b))


def _bf16_plain(b, j):
    v = np.array([int(b) << 16], "<u4").view("<f4")[0]
    return f"y = (float) x with x the BF16 0x{int(b):04x}: its bits << 16 (ggml_bf16_to_fp32)", v


_EXPLAIN = {
    "Q4_0": _legacy(4, False), "Q4_1": _legacy(4, True), "Q5_0": _legacy(5, False), "Q5_1": _legacy(5, True),
    "Q8_0": _legacy(8, False), "Q2_K": _q2_K, "Q3_K": _q3_K, "Q4_K": _q45_K(False), "Q5_K": _q45_K(True),
    "Q6_K": _q6_K, "Q8_K": _q8_K, "IQ4_NL": _iq4_nl, "IQ4_XS": _iq4_xs, "TQ2_0": _tq2_0, "MXFP4": _mxfp4,
    "Q1_0": _q1_0, "Q2_0": _q2_0, "F16": _f16_plain, "BF16": _bf16_plain,
}
