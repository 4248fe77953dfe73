"""Block quantization goldens: quantize (with and without imatrix), quantize_ref, dequantize, validate.

Layout (see golden/README.md):
  quant/inputs.npz        float32 input families, each (3, 4096); imatrix families, each (4096,)
  quant/cases.json        how each case slices the inputs (shared by every type)
  quant/<TYPE>.npz        ggml's outputs for that type, one array per case
"""
from __future__ import annotations

import os
import pickle

import numpy as np

ABORT = "ggml aborts"  # a GGML_ASSERT fired in the oracle for this input (recorded, not a golden array)


def forked(fn):
    """Run ``fn()`` in a forked child: ggml aborts the whole process on some inputs (e.g. iq3_find_best_neighbour's
    GGML_ASSERT when every distance is NaN), and that verdict is itself worth recording."""
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            data = pickle.dumps(fn())
            with os.fdopen(wfd, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data or status != 0:
        return ABORT
    return pickle.loads(data)

DESCRIPTION = ("ggml block formats (legacy, K, ternary, FP4, Q1_0/Q2_0) and float/int types: quantize, "
               "quantize with imatrix, quantize_ref, dequantize, validate")

# name -> ggml type id, for the types of this family (the IQ family reuses this module with its own list)
TYPES = {
    "F32": 0, "F16": 1, "BF16": 30, "F64": 28, "I8": 24, "I16": 25, "I32": 26, "I64": 27,
    "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q8_1": 9,
    "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "Q8_K": 15,
    "TQ1_0": 34, "TQ2_0": 35, "MXFP4": 39, "NVFP4": 40, "Q1_0": 41, "Q2_0": 42,
}

#: Row quantizers and dequantizers that no type trait exposes but ggml exports (the issue's "reference row
#: quantizers" for the two activation-only types).
SYMBOL_QUANTIZE = {"Q8_1": "quantize_row_q8_1_ref", "Q8_K": "quantize_row_q8_K_ref"}
SYMBOL_DEQUANTIZE = {"Q8_K": "dequantize_row_q8_K"}

def iq4_nl_unspecified(raw: np.ndarray) -> np.ndarray:
    """quantize_row_iq4_nl_ref: a block whose amax < GROUP_MAX_EPS gets d = 0 but its qs are packed from the
    never-written stack array L, so those 16 bytes are whatever the stack held (they dequantize to 0 either way)."""
    blocks = raw.reshape(raw.shape[0], -1, 18)
    mask = np.zeros(blocks.shape, dtype=np.bool_)
    zero_d = (blocks[:, :, 0] == 0) & (blocks[:, :, 1] == 0)
    mask[:, :, 2:] = zero_d[:, :, None]
    return mask.reshape(raw.shape)


#: (type, op) -> function giving the bytes ggml leaves unspecified (uninitialised memory): the golden stores 0 there
#: plus a mask ``unspecified.<case>``, and comparisons skip those bytes.
UNSPECIFIED = {("IQ4_NL", "quantize_ref"): iq4_nl_unspecified}

ROWS, COLS = 3, 4096
INPUT_FAMILIES = ("gauss", "uniform", "student_t2", "outlier", "zeros", "constant", "negative", "subnormal",
                  "huge", "ties")
IMATRIX_FAMILIES = ("ones", "random", "with_zeros", "range_1e6")
IMATRIX_INPUTS = ("gauss", "student_t2", "outlier", "ties")
LONG_INPUTS = ("gauss", "student_t2")
N_RANDOM_RAW_BLOCKS = 32


def make_inputs(seed: int = 4001) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (ROWS, COLS)
    g = rng.standard_normal(shape).astype(np.float32)
    x = {
        "gauss": g,
        "uniform": rng.uniform(-1.0, 1.0, shape).astype(np.float32),
        "student_t2": rng.standard_t(2, shape).astype(np.float32),
        "zeros": np.zeros(shape, np.float32),
        "constant": np.full(shape, 0.3125, np.float32),
        "negative": -np.abs(rng.standard_normal(shape)).astype(np.float32),
        # F32 subnormals (|x| < 2^-126): scales underflow
        "subnormal": (rng.standard_normal(shape) * 1e-39).astype(np.float32),
        # so large that F16 scales overflow to Inf
        "huge": (rng.standard_normal(shape) * 1e30).astype(np.float32),
    }
    out = rng.standard_normal(shape).astype(np.float32)
    pos = rng.integers(0, 32, size=(ROWS, COLS // 32))
    sign = rng.choice([-1.0, 1.0], size=(ROWS, COLS // 32))
    for b in range(COLS // 32):
        out[np.arange(ROWS), b * 32 + pos[:, b]] = (sign[:, b] * 1000.0).astype(np.float32)
    x["outlier"] = out
    # half-integer multiples of a power of two, with each 32-block's extreme at +-7.5 or 127.5 steps, so that the
    # x/d products of the common formats land exactly on .5 and the rounding rule decides
    t = (rng.integers(-15, 15, shape) + 0.5).astype(np.float32) * np.float32(0.25)
    t[:, ::32] = np.where(rng.random((ROWS, COLS // 32)) < 0.5, 2.0, -2.0).astype(np.float32)
    x["ties"] = t
    im_rng = np.random.default_rng(seed + 1)
    imx = {
        "ones": np.ones(COLS, np.float32),
        "random": (im_rng.uniform(0.05, 3.0, COLS) ** 2).astype(np.float32),
        "with_zeros": np.where(im_rng.random(COLS) < 0.25, 0.0, im_rng.uniform(0.1, 2.0, COLS)).astype(np.float32),
        "range_1e6": np.exp(im_rng.uniform(np.log(1e-3), np.log(1e3), COLS)).astype(np.float32),
    }
    arrays = {f"x.{k}": x[k] for k in INPUT_FAMILIES}
    arrays.update({f"imatrix.{k}": imx[k] for k in IMATRIX_FAMILIES})
    return arrays


def case_table() -> dict[str, dict]:
    """case name -> how to build it: input family, rows, length in blocks (or columns), imatrix family."""
    cases = {}
    for fam in INPUT_FAMILIES:
        cases[f"quantize.{fam}.one"] = {"op": "quantize", "input": fam, "rows": 1, "blocks": 1}
        cases[f"quantize.{fam}.several"] = {"op": "quantize", "input": fam, "rows": 2, "blocks": 4}
        cases[f"quantize_ref.{fam}"] = {"op": "quantize_ref", "input": fam, "rows": 2, "blocks": 4}
    for fam in LONG_INPUTS:
        cases[f"quantize.{fam}.long"] = {"op": "quantize", "input": fam, "rows": 1, "cols": COLS}
    for im in IMATRIX_FAMILIES:
        for fam in IMATRIX_INPUTS:
            cases[f"quantize_imatrix.{im}.{fam}"] = {"op": "quantize", "input": fam, "rows": 2, "blocks": 4,
                                                     "imatrix": im}
        cases[f"quantize_imatrix.{im}.gauss.long"] = {"op": "quantize", "input": "gauss", "rows": 1, "cols": COLS,
                                                      "imatrix": im}
    for fam in ("gauss", "huge", "subnormal", "outlier"):
        cases[f"dequantize.quantized.{fam}"] = {"op": "dequantize", "of": f"quantize.{fam}.several"}
    cases["dequantize.random_raw"] = {"op": "dequantize", "raw": "random_raw"}
    cases["dequantize.special_raw"] = {"op": "dequantize", "raw": "special_raw"}
    cases["validate"] = {"op": "validate", "raw": "validate_raw"}
    return cases


def case_input(inputs: dict, case: dict, block_size: int):
    x = inputs[f"x.{case['input']}"]
    cols = case.get("cols", case.get("blocks", 0) * block_size)
    x = np.ascontiguousarray(x[: case["rows"], :cols])
    im = case.get("imatrix")
    return x, (np.ascontiguousarray(inputs[f"imatrix.{im}"][:cols]) if im else None)


def special_blocks(type_size: int, rng) -> np.ndarray:
    """One block per (offset, pattern): F16 Inf/NaN at every even offset, F32 Inf/NaN at every 4th, E8M0 0xFF at
    every byte; zeros elsewhere except random low bytes.  Validation verdicts show which fields ggml checks."""
    pats = []
    for off in range(0, type_size - 1, 2):
        for v in (0x7C00, 0x7E00, 0xFC00, 0x7C01):
            pats.append((off, v.to_bytes(2, "little")))
    for off in range(0, type_size - 3, 4):
        for v in (0x7F800000, 0x7FC00000):
            pats.append((off, v.to_bytes(4, "little")))
    for off in range(type_size):
        pats.append((off, b"\xff"))
    blocks = np.zeros((len(pats), type_size), np.uint8)
    for i, (off, b) in enumerate(pats):
        blocks[i, off: off + len(b)] = np.frombuffer(b, np.uint8)
    return blocks


class OracleOps:
    """The oracle's view of one type: what ggml can do with it, and how."""

    def __init__(self, oracle, name: str, type_id: int):
        self.o, self.name, self.t = oracle, name, type_id
        tr = oracle.type_traits(type_id)
        self.block_size = int(tr.blck_size)
        self.type_size = int(tr.type_size)
        self.has_to_float = bool(tr.to_float) or name in SYMBOL_DEQUANTIZE
        self.has_ref = bool(tr.from_float_ref) or name in SYMBOL_QUANTIZE
        self.requires_imatrix = oracle.requires_imatrix(type_id)
        # ggml_quantize_chunk handles exactly these (it asserts on the rest)
        self.chunk = tr.is_quantized and name not in SYMBOL_QUANTIZE or name in ("F32", "F16", "BF16")

    def quantize(self, x, imatrix=None):
        if self.chunk:
            if imatrix is None and self.requires_imatrix:
                return None
            if imatrix is not None and not self.o.type_traits(self.t).is_quantized:
                return None
            return forked(lambda: self.o.quantize_chunk(self.t, x, imatrix))
        if imatrix is None and self.name in SYMBOL_QUANTIZE:
            return np.stack([self.o.symbol_from_float(SYMBOL_QUANTIZE[self.name], self.t, r) for r in x])
        return None

    def quantize_ref(self, x):
        if not self.has_ref:
            return None
        if self.name in SYMBOL_QUANTIZE:
            return self.o.symbol_from_float(SYMBOL_QUANTIZE[self.name], self.t, x.reshape(-1))
        return forked(lambda: self.o.from_float_ref(self.t, x.reshape(-1)))

    def dequantize(self, raw):
        if not self.has_to_float:
            return None
        raw = np.ascontiguousarray(raw, np.uint8).reshape(-1)
        n = raw.size // self.type_size * self.block_size
        if self.name in SYMBOL_DEQUANTIZE:
            return self.o.symbol_to_float(SYMBOL_DEQUANTIZE[self.name], self.t, raw, n)
        return self.o.to_float(self.t, raw, n)

    def validate_blocks(self, raw_blocks):
        return np.array([self.o.validate_row_data(self.t, b) for b in raw_blocks], dtype=np.bool_)


def generate_types(oracle, w, types: dict[str, int], seed: int, write_inputs: bool = True) -> None:
    inputs = make_inputs()
    cases = case_table()
    if write_inputs:
        w.npz("inputs.npz", inputs, "float32 input families x.<family> (3 x 4096) and imatrix.<family> (4096,)")
        w.json("cases.json", cases, "case name -> op, input family, rows, blocks/cols, imatrix family")
    import time

    for name, tid in types.items():
        t0 = time.time()
        ops = OracleOps(oracle, name, tid)
        oracle.quantize_init(tid)  # build ggml's IQ search tables once, in the parent, not in every forked child
        rng = np.random.default_rng([seed, tid])
        out = {}
        aborts = []
        for cname, case in cases.items():
            op = case["op"]
            if op in ("quantize", "quantize_ref"):
                x, im = case_input(inputs, case, ops.block_size)
                q = ops.quantize(x, im) if op == "quantize" else ops.quantize_ref(x)
                if isinstance(q, str):
                    aborts.append(cname)
                elif q is not None:
                    q = q.reshape(x.shape[0], -1).copy()
                    unspecified = UNSPECIFIED.get((name, op))
                    if unspecified is not None:
                        mask = unspecified(q)
                        if mask.any():
                            q[mask] = 0
                            out[f"unspecified.{cname}"] = mask
                    out[cname] = q
        # names of the cases where ggml aborted, as a 0/1-terminated byte string array (language-neutral)
        out["aborts"] = np.array(aborts, dtype="S64") if aborts else np.zeros(0, dtype="S64")
        random_raw = rng.integers(0, 256, (N_RANDOM_RAW_BLOCKS, ops.type_size), dtype=np.uint8)
        validate_raw = np.concatenate([special_blocks(ops.type_size, rng), random_raw])
        verdicts = ops.validate_blocks(validate_raw)
        out["validate_raw"] = validate_raw
        out["validate"] = verdicts
        out["random_raw"] = random_raw
        # blocks that fail validation are the ones with NaN/Inf in a checked scale: dequantize a few of them
        bad = np.flatnonzero(~verdicts[: len(validate_raw) - N_RANDOM_RAW_BLOCKS])
        special = validate_raw[bad[:: max(1, len(bad) // 6)][:6]] if bad.size else validate_raw[:0]
        if special.size:
            special = special.copy()
            special_noise = rng.integers(0, 256, special.shape, dtype=np.uint8)
            # keep the scale pattern, randomise the payload where the pattern is zero
            mask = special == 0
            special[mask] = special_noise[mask] & 0x33
            out["special_raw"] = special
        for cname, case in cases.items():
            if case["op"] != "dequantize":
                continue
            raw = out.get(case["of"]) if "of" in case else out.get(case["raw"])
            if raw is None:
                continue
            y = ops.dequantize(raw)
            if y is not None:
                out[cname] = y.reshape(raw.shape[0], -1)
        print(f"  {name}: {len(out)} arrays, {len(aborts)} aborts, {time.time() - t0:.1f} s", flush=True)
        w.npz(f"{name}.npz", out,
              f"{name} (ggml type {tid}): ggml's outputs per case of cases.json; validate_raw/validate are "
              f"blocks and ggml_validate_row_data verdicts")


def generate(oracle, w) -> None:
    generate_types(oracle, w, TYPES, seed=4100)


def fresh_types(oracle, rng, types: dict[str, int]) -> list[str]:
    """Fresh random cases: refimpl against the live oracle (not against committed files)."""
    from refimpl import quant

    fails = []
    for name, tid in types.items():
        ops = OracleOps(oracle, name, tid)
        oracle.quantize_init(tid)  # quantize_row_iq*_ref asserts without ggml's IQ search tables (as in generate)
        if name not in quant.TYPES:
            fails.append(f"quant/{name}: not implemented in refimpl")
            continue
        bs = ops.block_size
        nb = int(rng.integers(1, 9))
        x = (rng.standard_t(int(rng.integers(2, 6)), (2, nb * bs)) * np.exp(rng.uniform(-8, 8))).astype(np.float32)
        im = np.exp(rng.uniform(-5, 5, nb * bs)).astype(np.float32)
        im[rng.random(nb * bs) < 0.1] = 0
        checks = []
        for imx in (None, im):
            theirs = ops.quantize(x, imx)
            if theirs is not None:
                checks.append(("quantize" + ("+imatrix" if imx is not None else ""),
                               lambda imx=imx: quant.quantize(x, name, imatrix=imx), theirs))
        r = ops.quantize_ref(x)
        if r is not None:
            checks.append(("quantize_ref", lambda: quant.quantize_ref(x.reshape(-1), name), r))
        raw = rng.integers(0, 256, nb * ops.type_size, dtype=np.uint8)
        d = ops.dequantize(raw)
        if d is not None:
            checks.append(("dequantize", lambda: quant.dequantize(raw, name), d))
        for what, ours_fn, theirs in checks:
            if isinstance(theirs, str):  # ggml aborted on this input: refimpl must refuse it too
                try:
                    ours_fn()
                    fails.append(f"quant/{name} {what}: ggml aborts on this fresh case but refimpl did not raise")
                except ValueError:
                    pass
                continue
            try:
                ours = ours_fn()
            except Exception as e:  # report, don't stop the run
                fails.append(f"quant/{name} {what}: raised {type(e).__name__}: {e}")
                continue
            a = np.ascontiguousarray(ours).reshape(-1).view(np.uint8).copy()
            b = np.ascontiguousarray(theirs).reshape(-1).view(np.uint8).copy()
            unspecified = UNSPECIFIED.get((name, what))
            if unspecified is not None and a.shape == b.shape:
                mask = unspecified(np.asarray(theirs).reshape(x.shape[0], -1)).reshape(-1)
                a[mask] = 0
                b[mask] = 0
            if a.shape != b.shape or not np.array_equal(a, b):
                fails.append(f"quant/{name} {what}: differs from the oracle on a fresh case ({nb} blocks)")
        v_theirs = oracle.validate_row_data(tid, raw)
        if quant.validate(raw, name) != v_theirs:
            fails.append(f"quant/{name} validate: verdict differs (oracle {v_theirs})")
    return fails


def fresh(oracle, rng) -> list[str]:
    return fresh_types(oracle, rng, TYPES)
