"""llama.cpp's file types (``enum llama_ftype``, include/llama.h) and llama-quantize's table of them.

``QUANT_OPTIONS`` is ``QUANT_OPTIONS`` of tools/quantize/quantize.cpp, in its order (the order decides which name a
number resolves to: ``12`` is ``Q3_K``, the alias listed before ``Q3_K_M``; ``0`` is ``F32``, listed before
``COPY``).  ``DEFAULT_TYPE`` is ``llama_ftype_get_default_type`` (src/llama-quant.cpp).

A quant type registered with ``refimpl.quant`` that is not a llama ftype name (a plugin, issue 16) is accepted as
an ftype too: ``resolve_ftype`` returns it with ``plugin=True``, and the quantizer applies ``--pure`` semantics
(every quantizable weight gets that type, with llama-quantize's shape fallbacks).
"""
from __future__ import annotations

import re
from typing import NamedTuple

# enum llama_ftype (include/llama.h)
LLAMA_FTYPE_ALL_F32 = 0
LLAMA_FTYPE_MOSTLY_F16 = 1
LLAMA_FTYPE_MOSTLY_Q4_0 = 2
LLAMA_FTYPE_MOSTLY_Q4_1 = 3
LLAMA_FTYPE_MOSTLY_Q8_0 = 7
LLAMA_FTYPE_MOSTLY_Q5_0 = 8
LLAMA_FTYPE_MOSTLY_Q5_1 = 9
LLAMA_FTYPE_MOSTLY_Q2_K = 10
LLAMA_FTYPE_MOSTLY_Q3_K_S = 11
LLAMA_FTYPE_MOSTLY_Q3_K_M = 12
LLAMA_FTYPE_MOSTLY_Q3_K_L = 13
LLAMA_FTYPE_MOSTLY_Q4_K_S = 14
LLAMA_FTYPE_MOSTLY_Q4_K_M = 15
LLAMA_FTYPE_MOSTLY_Q5_K_S = 16
LLAMA_FTYPE_MOSTLY_Q5_K_M = 17
LLAMA_FTYPE_MOSTLY_Q6_K = 18
LLAMA_FTYPE_MOSTLY_IQ2_XXS = 19
LLAMA_FTYPE_MOSTLY_IQ2_XS = 20
LLAMA_FTYPE_MOSTLY_Q2_K_S = 21
LLAMA_FTYPE_MOSTLY_IQ3_XS = 22
LLAMA_FTYPE_MOSTLY_IQ3_XXS = 23
LLAMA_FTYPE_MOSTLY_IQ1_S = 24
LLAMA_FTYPE_MOSTLY_IQ4_NL = 25
LLAMA_FTYPE_MOSTLY_IQ3_S = 26
LLAMA_FTYPE_MOSTLY_IQ3_M = 27
LLAMA_FTYPE_MOSTLY_IQ2_S = 28
LLAMA_FTYPE_MOSTLY_IQ2_M = 29
LLAMA_FTYPE_MOSTLY_IQ4_XS = 30
LLAMA_FTYPE_MOSTLY_IQ1_M = 31
LLAMA_FTYPE_MOSTLY_BF16 = 32
LLAMA_FTYPE_MOSTLY_TQ1_0 = 36
LLAMA_FTYPE_MOSTLY_TQ2_0 = 37
LLAMA_FTYPE_MOSTLY_MXFP4_MOE = 38
LLAMA_FTYPE_MOSTLY_NVFP4 = 39
LLAMA_FTYPE_MOSTLY_Q1_0 = 40
LLAMA_FTYPE_MOSTLY_Q2_0 = 41
LLAMA_FTYPE_GUESSED = 1024      # or-ed into a file type the model loader guessed from the tensor types


class QuantOption(NamedTuple):
    name: str
    ftype: int
    desc: str


#: tools/quantize/quantize.cpp QUANT_OPTIONS, in order
QUANT_OPTIONS: tuple[QuantOption, ...] = (
    QuantOption("Q1_0", LLAMA_FTYPE_MOSTLY_Q1_0, " 1.125 bpw quantization"),
    QuantOption("Q2_0", LLAMA_FTYPE_MOSTLY_Q2_0, " 2.25 bpw quantization (group 64)"),
    QuantOption("Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0, " 4.34G, +0.4685 ppl @ Llama-3-8B"),
    QuantOption("Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1, " 4.78G, +0.4511 ppl @ Llama-3-8B"),
    QuantOption("MXFP4_MOE", LLAMA_FTYPE_MOSTLY_MXFP4_MOE, " MXFP4 MoE"),
    QuantOption("Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0, " 5.21G, +0.1316 ppl @ Llama-3-8B"),
    QuantOption("Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1, " 5.65G, +0.1062 ppl @ Llama-3-8B"),
    QuantOption("IQ2_XXS", LLAMA_FTYPE_MOSTLY_IQ2_XXS, " 2.06 bpw quantization"),
    QuantOption("IQ2_XS", LLAMA_FTYPE_MOSTLY_IQ2_XS, " 2.31 bpw quantization"),
    QuantOption("IQ2_S", LLAMA_FTYPE_MOSTLY_IQ2_S, " 2.5  bpw quantization"),
    QuantOption("IQ2_M", LLAMA_FTYPE_MOSTLY_IQ2_M, " 2.7  bpw quantization"),
    QuantOption("IQ1_S", LLAMA_FTYPE_MOSTLY_IQ1_S, " 1.56 bpw quantization"),
    QuantOption("IQ1_M", LLAMA_FTYPE_MOSTLY_IQ1_M, " 1.75 bpw quantization"),
    QuantOption("TQ1_0", LLAMA_FTYPE_MOSTLY_TQ1_0, " 1.69 bpw ternarization"),
    QuantOption("TQ2_0", LLAMA_FTYPE_MOSTLY_TQ2_0, " 2.06 bpw ternarization"),
    QuantOption("Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K, " 2.96G, +3.5199 ppl @ Llama-3-8B"),
    QuantOption("Q2_K_S", LLAMA_FTYPE_MOSTLY_Q2_K_S, " 2.96G, +3.1836 ppl @ Llama-3-8B"),
    QuantOption("IQ3_XXS", LLAMA_FTYPE_MOSTLY_IQ3_XXS, " 3.06 bpw quantization"),
    QuantOption("IQ3_S", LLAMA_FTYPE_MOSTLY_IQ3_S, " 3.44 bpw quantization"),
    QuantOption("IQ3_M", LLAMA_FTYPE_MOSTLY_IQ3_M, " 3.66 bpw quantization mix"),
    QuantOption("Q3_K", LLAMA_FTYPE_MOSTLY_Q3_K_M, "alias for Q3_K_M"),
    QuantOption("IQ3_XS", LLAMA_FTYPE_MOSTLY_IQ3_XS, " 3.3 bpw quantization"),
    QuantOption("Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S, " 3.41G, +1.6321 ppl @ Llama-3-8B"),
    QuantOption("Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M, " 3.74G, +0.6569 ppl @ Llama-3-8B"),
    QuantOption("Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L, " 4.03G, +0.5562 ppl @ Llama-3-8B"),
    QuantOption("IQ4_NL", LLAMA_FTYPE_MOSTLY_IQ4_NL, " 4.50 bpw non-linear quantization"),
    QuantOption("IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS, " 4.25 bpw non-linear quantization"),
    QuantOption("Q4_K", LLAMA_FTYPE_MOSTLY_Q4_K_M, "alias for Q4_K_M"),
    QuantOption("Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S, " 4.37G, +0.2689 ppl @ Llama-3-8B"),
    QuantOption("Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M, " 4.58G, +0.1754 ppl @ Llama-3-8B"),
    QuantOption("Q5_K", LLAMA_FTYPE_MOSTLY_Q5_K_M, "alias for Q5_K_M"),
    QuantOption("Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S, " 5.21G, +0.1049 ppl @ Llama-3-8B"),
    QuantOption("Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M, " 5.33G, +0.0569 ppl @ Llama-3-8B"),
    QuantOption("Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K, " 6.14G, +0.0217 ppl @ Llama-3-8B"),
    QuantOption("Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0, " 7.96G, +0.0026 ppl @ Llama-3-8B"),
    QuantOption("F16", LLAMA_FTYPE_MOSTLY_F16, "14.00G, +0.0020 ppl @ Mistral-7B"),
    QuantOption("BF16", LLAMA_FTYPE_MOSTLY_BF16, "14.00G, -0.0050 ppl @ Mistral-7B"),
    QuantOption("F32", LLAMA_FTYPE_ALL_F32, "26.00G              @ 7B"),
    # Note: Ensure COPY comes after F32 to avoid ftype 0 from matching.
    QuantOption("COPY", LLAMA_FTYPE_ALL_F32, "only copy tensors, no quantizing"),
)

#: llama_ftype_get_default_type (src/llama-quant.cpp): the ggml type most tensors of a file type get
DEFAULT_TYPE: dict[int, str] = {
    LLAMA_FTYPE_MOSTLY_Q4_0: "Q4_0",
    LLAMA_FTYPE_MOSTLY_Q4_1: "Q4_1",
    LLAMA_FTYPE_MOSTLY_Q5_0: "Q5_0",
    LLAMA_FTYPE_MOSTLY_Q5_1: "Q5_1",
    LLAMA_FTYPE_MOSTLY_Q8_0: "Q8_0",
    LLAMA_FTYPE_MOSTLY_F16: "F16",
    LLAMA_FTYPE_MOSTLY_BF16: "BF16",
    LLAMA_FTYPE_ALL_F32: "F32",
    LLAMA_FTYPE_MOSTLY_Q1_0: "Q1_0",
    LLAMA_FTYPE_MOSTLY_Q2_0: "Q2_0",
    LLAMA_FTYPE_MOSTLY_MXFP4_MOE: "MXFP4",
    LLAMA_FTYPE_MOSTLY_Q2_K_S: "Q2_K",
    LLAMA_FTYPE_MOSTLY_Q2_K: "Q2_K",
    LLAMA_FTYPE_MOSTLY_IQ3_XS: "IQ3_S",
    LLAMA_FTYPE_MOSTLY_Q3_K_S: "Q3_K",
    LLAMA_FTYPE_MOSTLY_Q3_K_M: "Q3_K",
    LLAMA_FTYPE_MOSTLY_Q3_K_L: "Q3_K",
    LLAMA_FTYPE_MOSTLY_Q4_K_S: "Q4_K",
    LLAMA_FTYPE_MOSTLY_Q4_K_M: "Q4_K",
    LLAMA_FTYPE_MOSTLY_Q5_K_S: "Q5_K",
    LLAMA_FTYPE_MOSTLY_Q5_K_M: "Q5_K",
    LLAMA_FTYPE_MOSTLY_Q6_K: "Q6_K",
    LLAMA_FTYPE_MOSTLY_TQ1_0: "TQ1_0",
    LLAMA_FTYPE_MOSTLY_TQ2_0: "TQ2_0",
    LLAMA_FTYPE_MOSTLY_IQ2_XXS: "IQ2_XXS",
    LLAMA_FTYPE_MOSTLY_IQ2_XS: "IQ2_XS",
    LLAMA_FTYPE_MOSTLY_IQ2_S: "IQ2_XS",
    LLAMA_FTYPE_MOSTLY_IQ2_M: "IQ2_S",
    LLAMA_FTYPE_MOSTLY_IQ3_XXS: "IQ3_XXS",
    LLAMA_FTYPE_MOSTLY_IQ1_S: "IQ1_S",
    LLAMA_FTYPE_MOSTLY_IQ1_M: "IQ1_M",
    LLAMA_FTYPE_MOSTLY_IQ4_NL: "IQ4_NL",
    LLAMA_FTYPE_MOSTLY_IQ4_XS: "IQ4_XS",
    LLAMA_FTYPE_MOSTLY_IQ3_S: "IQ3_S",
    LLAMA_FTYPE_MOSTLY_IQ3_M: "IQ3_S",
}

#: the model loader's guess of a file's type from its most common tensor type (llama_model_loader constructor)
GUESS_FROM_TENSOR_TYPE: dict[str, int] = {
    "F32": LLAMA_FTYPE_ALL_F32, "F16": LLAMA_FTYPE_MOSTLY_F16, "BF16": LLAMA_FTYPE_MOSTLY_BF16,
    "Q4_0": LLAMA_FTYPE_MOSTLY_Q4_0, "Q4_1": LLAMA_FTYPE_MOSTLY_Q4_1, "Q5_0": LLAMA_FTYPE_MOSTLY_Q5_0,
    "Q5_1": LLAMA_FTYPE_MOSTLY_Q5_1, "Q8_0": LLAMA_FTYPE_MOSTLY_Q8_0, "Q2_K": LLAMA_FTYPE_MOSTLY_Q2_K,
    "Q3_K": LLAMA_FTYPE_MOSTLY_Q3_K_M, "Q4_K": LLAMA_FTYPE_MOSTLY_Q4_K_M, "Q5_K": LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "Q6_K": LLAMA_FTYPE_MOSTLY_Q6_K, "TQ1_0": LLAMA_FTYPE_MOSTLY_TQ1_0, "TQ2_0": LLAMA_FTYPE_MOSTLY_TQ2_0,
    "IQ2_XXS": LLAMA_FTYPE_MOSTLY_IQ2_XXS, "IQ2_XS": LLAMA_FTYPE_MOSTLY_IQ2_XS, "IQ2_S": LLAMA_FTYPE_MOSTLY_IQ2_S,
    "IQ3_XXS": LLAMA_FTYPE_MOSTLY_IQ3_XXS, "IQ1_S": LLAMA_FTYPE_MOSTLY_IQ1_S, "IQ1_M": LLAMA_FTYPE_MOSTLY_IQ1_M,
    "IQ4_NL": LLAMA_FTYPE_MOSTLY_IQ4_NL, "IQ4_XS": LLAMA_FTYPE_MOSTLY_IQ4_XS, "IQ3_S": LLAMA_FTYPE_MOSTLY_IQ3_S,
    "NVFP4": LLAMA_FTYPE_MOSTLY_NVFP4, "Q1_0": LLAMA_FTYPE_MOSTLY_Q1_0, "Q2_0": LLAMA_FTYPE_MOSTLY_Q2_0,
}


class Ftype(NamedTuple):
    """A resolved FTYPE argument: ``name`` as llama-quantize prints it (and puts in the default output name),
    ``ftype`` the ``llama_ftype`` value written to ``general.file_type``, ``default_type`` the ggml type most
    tensors get, ``only_copy`` for COPY, ``plugin`` for a registered non-llama type (forces --pure)."""
    name: str
    ftype: int
    default_type: str
    only_copy: bool = False
    plugin: bool = False


def _stoi_prefix(s: str) -> int | None:
    """std::stoi: optional leading whitespace, sign and digits, the rest ignored; None where it throws."""
    m = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", s)
    if not m:
        return None
    v = int(m.group(1))
    return v if -2**31 <= v < 2**31 else None


def try_parse_ftype(arg) -> Ftype | None:
    """try_parse_ftype (tools/quantize/quantize.cpp): a name from QUANT_OPTIONS (case-insensitive), else a number
    (std::stoi prefix) naming the first option with that llama_ftype; then a registered refimpl.quant type that
    is not a llama ftype name (a plugin).  None if nothing matches."""
    if isinstance(arg, int) and not isinstance(arg, bool):
        arg = str(arg)
    s = str(arg).upper()
    for opt in QUANT_OPTIONS:
        if opt.name == s:
            return _make(opt)
    n = _stoi_prefix(s)
    if n is not None:
        for opt in QUANT_OPTIONS:
            if opt.ftype == n:
                return _make(opt)
    return _plugin_ftype(s)


def _make(opt: QuantOption) -> Ftype:
    return Ftype(opt.name, opt.ftype, DEFAULT_TYPE[opt.ftype], only_copy=opt.name == "COPY")


#: ggml type ids of the types llama.cpp itself defines (0 .. GGML_TYPE_COUNT-1); a registered type outside them
#: is a plugin.  The file type a plugin file records is PLUGIN_FILE_TYPE_BASE + its type id (no llama_ftype names
#: it; llama.cpp prints such a file's type as "unknown, may not work").
GGML_TYPE_COUNT = 43
PLUGIN_FILE_TYPE_BASE = 0


def _plugin_ftype(name: str) -> Ftype | None:
    from .. import quant
    try:
        fmt = quant.get_type(name)
    except ValueError:
        return None
    if fmt.type_id < GGML_TYPE_COUNT or not fmt.is_quantized:
        return None     # a llama.cpp type that is no ftype name (e.g. Q8_K): llama-quantize refuses it too
    return Ftype(fmt.name, PLUGIN_FILE_TYPE_BASE + fmt.type_id, fmt.name, plugin=True)


def resolve_ftype(arg) -> Ftype:
    """try_parse_ftype, with a ValueError listing the choices when nothing matches."""
    ft = try_parse_ftype(arg)
    if ft is None:
        names = ", ".join(o.name for o in QUANT_OPTIONS)
        raise ValueError(f"invalid ftype {arg!r}: expected one of {names}, a llama_ftype number, or the name of "
                         f"a quant type registered with refimpl.quant")
    return ft


def parse_ggml_type(arg: str) -> str:
    """parse_ggml_type (tools/quantize/quantize.cpp): a ggml type name, case-insensitive (ggml_type_name of every
    id < GGML_TYPE_COUNT), or a registered plugin type.  ValueError if unknown."""
    from .. import quant
    try:
        fmt = quant.get_type(str(arg))
    except ValueError:
        raise ValueError(f"invalid ggml_type {arg!r}; known: {', '.join(quant.TYPES.names())}") from None
    return fmt.name


def usage_table() -> str:
    """The 'allowed quantization types' list of llama-quantize's usage text."""
    lines = []
    for opt in QUANT_OPTIONS:
        lead = f"  {opt.ftype:2d}  or  " if opt.name != "COPY" else "          "
        lines.append(f"{lead}{opt.name:<7s} : {opt.desc}")
    return "\n".join(lines)
