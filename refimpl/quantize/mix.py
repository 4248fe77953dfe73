"""Which ggml type each tensor gets: llama.cpp's quantization mixes, rule for rule (src/llama-quant.cpp).

Reading order (each function mirrors the C function named in its docstring):

1. ``tensor_get_category``   -- a tensor's broad role from its name (TOKEN_EMBD, ATTENTION_V, FFN_DOWN, ...)
2. ``MixState.count``        -- init_quantize_state_counters: how many attn_v-like tensors, tied embeddings
3. ``tensor_allows_quantization`` -- which tensors are never quantized (1-D, norms, router gates, ...)
4. ``MixState.get_type``     -- llama_tensor_get_type: user overrides, then the mix, then the shape fallback
5. ``MixState._mix_type``    -- llama_tensor_get_type_impl: the per-ftype rules (use_more_bits, GQA, experts)
6. ``MixState._fallback``    -- tensor_type_fallback: a smaller-block type when a row does not fit the blocks
7. ``tensor_requires_imatrix``

The state is stateful on purpose, like the C: counters ``i_attention_wv``, ``i_ffn_down``, ``i_ffn_gate`` and
``i_ffn_up`` advance each time the mix rules see such a tensor, so ``get_type`` must be called once per tensor in
the model loader's tensor order (``tensor_order``), and the rules of later tensors depend on earlier ones.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import ftypes as F

# enum class tensor_category
TOKEN_EMBD, ATTENTION_Q, ATTENTION_V, ATTENTION_K, ATTENTION_QKV, ATTENTION_KV_B, ATTENTION_OUTPUT, \
    FFN_UP, FFN_GATE, FFN_DOWN, OUTPUT, OTHER = (
        "TOKEN_EMBD", "ATTENTION_Q", "ATTENTION_V", "ATTENTION_K", "ATTENTION_QKV", "ATTENTION_KV_B",
        "ATTENTION_OUTPUT", "FFN_UP", "FFN_GATE", "FFN_DOWN", "OUTPUT", "OTHER")

# the plain (non-block) ggml types: ggml_is_quantized is false for them
_NOT_QUANTIZED = {"F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64"}


def is_quantized(type_name: str) -> bool:
    """ggml_is_quantized (a registered plugin type counts as quantized when its descriptor says so)."""
    if type_name in _NOT_QUANTIZED:
        return False
    from .. import quant
    return quant.get_type(type_name).is_quantized


def _is_plugin(type_name: str) -> bool:
    """A type registered with refimpl.quant outside ggml's own ids (0 .. GGML_TYPE_COUNT-1)."""
    from .. import quant
    return quant.get_type(type_name).type_id >= F.GGML_TYPE_COUNT


def block_size(type_name: str) -> int:
    """ggml_blck_size."""
    from .. import quant
    return quant.get_type(type_name).block_size


def tensor_name_match_token_embd(name: str) -> bool:
    return name in ("token_embd.weight", "per_layer_token_embd.weight")


def tensor_name_match_output_weight(name: str) -> bool:
    return name == "output.weight"


def tensor_get_category(name: str) -> str:
    """tensor_get_category: first match wins, by substring (so "attn_qkv.weight" before "attn_v.weight")."""
    if tensor_name_match_output_weight(name):
        return OUTPUT
    if tensor_name_match_token_embd(name):
        return TOKEN_EMBD
    for needle, cat in (("attn_qkv.weight", ATTENTION_QKV), ("attn_kv_b.weight", ATTENTION_KV_B),
                        ("attn_v.weight", ATTENTION_V), ("attn_k.weight", ATTENTION_K),
                        ("attn_q.weight", ATTENTION_Q), ("attn_output.weight", ATTENTION_OUTPUT),
                        ("ffn_up", FFN_UP), ("ffn_gate", FFN_GATE), ("ffn_down", FFN_DOWN)):
        if needle in name:
            return cat
    return OTHER


def category_is_attn_v(cat: str) -> bool:
    """category_is_attn_v: attention-V-like tensors (more sensitive to quantization)."""
    return cat in (ATTENTION_V, ATTENTION_QKV, ATTENTION_KV_B)


def ggml_n_dims(ne) -> int:
    for i in range(len(ne) - 1, 0, -1):
        if ne[i] > 1:
            return i + 1
    return 1


# substrings that keep a tensor unquantized (tensor_allows_quantization, in the C's order)
_NEVER_QUANTIZED = (
    "_norm.weight",
    "ffn_gate_inp.weight",          # expert gating
    "ffn_gate_tid2eid.weight",      # DeepSeek-V4 token-id -> expert-id table
    "altup", "laurel",              # very small (e.g. 4x4)
    "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight",       # Mamba/Kimi small conv1d weights
    "indexer.k_proj.weight", "indexer.q_proj.weight",   # MiniMax indexer projections
)
_GLM5_NEXT_KEEP = (
    "hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "indexer_compressor_gate",
    "indexer_compressor_ape", "ssm_f_a.weight", "ssm_f_b.weight", "ssm_g_a.weight", "ssm_g_b.weight",
    "ssm_beta.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight", "attn_v_b.weight",
)
_NEVER_QUANTIZED_TAIL = (
    # RWKV's small yet 2D weights
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
    "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",            # T5 relative position bias
    # multimodal
    ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger",
    # audio codebook
    "a.rvq.codebook", "mm.a.code_embd",
)


def _ends_with_weight(name: str) -> bool:
    """``name.rfind("weight") == name.size() - 6`` with size_t arithmetic: true for names ending in "weight",
    and -- a quirk of the unsigned wrap-around -- for any 5-byte name without "weight" (npos == 5 - 6)."""
    n = len(name.encode("utf-8", "surrogateescape"))
    if n == 5:
        return "weight" not in name
    return name.endswith("weight")


def tensor_allows_quantization(name: str, ne, arch: str, *, only_copy: bool = False,
                               quantize_output_tensor: bool = True) -> bool:
    """tensor_allows_quantization: only 2-D and 3-D (expert) weights, never norms, router gates, position
    embeddings and the other small or special tensors the C lists by name."""
    if only_copy:
        return False
    if ggml_n_dims(ne) < 2:
        return False
    quantize = _ends_with_weight(name)
    quantize &= "_norm.weight" not in name
    quantize &= quantize_output_tensor or name != "output.weight"
    for needle in _NEVER_QUANTIZED[1:]:
        quantize &= needle not in name
    # LLM_TN(arch)(LLM_TENSOR_POS_EMBD / LLM_TENSOR_TOKEN_TYPES, "weight"): the same names for every arch
    quantize &= name != "position_embd.weight"
    quantize &= name != "token_types.weight"
    if arch == "glm5-next":
        for needle in _GLM5_NEXT_KEEP:
            quantize &= needle not in name
    for needle in _NEVER_QUANTIZED_TAIL:
        quantize &= needle not in name
    return bool(quantize)


def tensor_requires_imatrix(name: str, dst_type: str, ftype: int) -> bool:
    """tensor_requires_imatrix: the 1-2 bit i-quants, and Q2_K inside a Q2_K_S file; never the embeddings/output."""
    if tensor_name_match_token_embd(name) or tensor_name_match_output_weight(name):
        return False
    if dst_type in ("IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S"):
        return True
    if dst_type == "Q2_K":
        return ftype == F.LLAMA_FTYPE_MOSTLY_Q2_K_S
    return False


_LAYER_RE = re.compile(r"blk\.[ \t\n\v\f\r]*([+-]?[0-9]+)", re.ASCII)


def sscanf_layer(name: str) -> int | None:
    """``sscanf(name, "blk.%d.", &i)``: the layer number after a leading "blk." (%d skips white space and takes a
    sign), None when it does not match (the trailing "." in the format is not needed for a count of 1)."""
    m = _LAYER_RE.match(name)
    if not m:
        return None
    v = int(m.group(1))
    # glibc's %d stores strtol's value truncated to int
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def tensor_order(names) -> list[str]:
    """The model loader's weights_map order (weight_name_comparer, src/llama-model-loader.h): by the layer number
    of "blk.N." (-1 for tensors outside blocks), then by name bytes.  llama-quantize writes tensors in this order,
    not in the input file's."""
    def key(name):
        layer = sscanf_layer(name)
        return (-1 if layer is None else layer, name.encode("utf-8", "surrogateescape"))
    return sorted(names, key=key)


@dataclass
class Hparams:
    """The model facts the mix rules read (llama_model::load_hparams): architecture name, block count
    (n_layer_all), experts, heads of layer 0 (for n_gqa) and whether llama.cpp types the model as a 70B."""
    arch: str
    n_layer: int
    n_expert: int = 0
    n_head: int = 0
    n_head_kv: int = 0
    is_70b: bool = False

    def n_gqa(self) -> int:
        """llama_hparams::n_gqa(0)."""
        return 0 if self.n_head_kv == 0 else self.n_head // self.n_head_kv


@dataclass
class MixOptions:
    """The llama_model_quantize_params fields the type choice reads."""
    ftype: int
    default_type: str
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    pure: bool = False
    only_copy: bool = False
    quantize_output_tensor: bool = True
    tensor_types: list = field(default_factory=list)    # [(compiled pattern, type name)], first match wins


@dataclass
class MixState:
    """quantize_state_impl: the counters and flags llama_tensor_get_type reads and advances."""
    hp: Hparams
    opts: MixOptions
    has_imatrix: bool = False
    n_attention_wv: int = 0
    n_ffn_down: int = 0
    n_ffn_gate: int = 0
    n_ffn_up: int = 0
    i_attention_wv: int = 0
    i_ffn_down: int = 0
    i_ffn_gate: int = 0
    i_ffn_up: int = 0
    n_fallback: int = 0
    has_tied_embeddings: bool = True      # until an output.weight is seen
    warnings: list = field(default_factory=list)

    def count(self, names) -> None:
        """init_quantize_state_counters: attn_v-like tensors are counted by name (every tensor, quantizable or
        not); the FFN counters are the block count; any output.weight means the embeddings are not tied."""
        for name in names:
            cat = tensor_get_category(name)
            if category_is_attn_v(cat):
                self.n_attention_wv += 1
            if cat == OUTPUT:
                self.has_tied_embeddings = False
        self.n_ffn_down = self.n_ffn_gate = self.n_ffn_up = self.hp.n_layer

    # ---------------------------------------------------------------------------------------------------------
    def get_type(self, name: str, ne, cur_type: str) -> str:
        """llama_tensor_get_type: the type this tensor is written as."""
        o = self.opts
        if not tensor_allows_quantization(name, ne, self.hp.arch, only_copy=o.only_copy,
                                          quantize_output_tensor=o.quantize_output_tensor):
            return cur_type
        category = tensor_get_category(name)
        if o.token_embedding_type is not None and category == TOKEN_EMBD:
            # per_layer_token_embd follows --token-embedding-type unless a --tensor-type pattern names it
            named = name == "per_layer_token_embd.weight" and any(p.search(name) for p, _ in o.tensor_types)
            if not named:
                return o.token_embedding_type
        if o.output_tensor_type is not None and category == OUTPUT:
            return o.output_tensor_type

        new_type = o.default_type
        if is_quantized(o.default_type):
            manual = False
            for pattern, qtype in o.tensor_types:       # std::regex_search, first match wins
                if pattern.search(name):
                    if qtype != new_type:
                        self.warnings.append(f"{name}: applying manual override: {new_type} -> {qtype}")
                    new_type = qtype
                    manual = True
                    break
            if not manual and not o.pure:
                new_type = self._mix_type(new_type, name, ne, category)
            new_type = self._fallback(name, ne, new_type)
        return new_type

    # ---------------------------------------------------------------------------------------------------------
    def _fallback(self, name: str, ne, target: str) -> str:
        """tensor_type_fallback: when the row length is not a multiple of the type's block, a type with a smaller
        block (256 -> 32), and F16 when even that does not fit."""
        ncols = ne[0]
        qk_k = block_size(target)
        if ncols % qk_k == 0:
            return target
        self.n_fallback += 1
        if target in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"):
            ret = "IQ4_NL"
        elif target in ("Q2_0", "Q2_K", "Q3_K", "TQ1_0", "TQ2_0"):
            ret = "Q4_0"
        elif target == "Q4_K":
            ret = "Q5_0"
        elif target == "Q5_K":
            ret = "Q5_1"
        elif target == "Q6_K":
            ret = "Q8_0"
        elif qk_k <= 32:
            # already a 32-block type: no smaller block to demote to; the check below makes it F16
            ret = target
        elif _is_plugin(target):
            # refimpl's rule for a registered (plugin) type, which llama.cpp does not know: Q8_0, the closest
            # 32-block type in size and quality to what a plugin is usually compared with (F16 if even 32 fails)
            ret = "Q8_0"
        else:
            raise ValueError(f"no tensor type fallback is defined for type {target} (tensor {name} has rows of "
                             f"{ncols}, not a multiple of {qk_k})")
        if ncols % block_size(ret) != 0:
            ret = "F16"     # "must use F16 due to unusual shape"
        self.warnings.append(f"{name}: ncols {ncols} not divisible by {qk_k} (required for type {target}) "
                             f"-> falling back to {ret}")
        return ret

    # ---------------------------------------------------------------------------------------------------------
    def _layer_info(self, i_layer: int, n_layer: int, name: str) -> tuple[int, int]:
        """layer_info: with experts the layer comes from the name (Mixtral's experts are not consecutive)."""
        if max(1, self.hp.n_expert) > 1:
            layer = sscanf_layer(name)
            if layer is None:
                raise ValueError(f"Failed to determine layer for tensor {name}")
            if layer < 0 or layer >= n_layer:
                raise ValueError(f"Bad layer {layer} for tensor {name}. Must be in [0, {n_layer})")
            i_layer = layer
        return i_layer, n_layer

    def _mix_type(self, new_type: str, name: str, ne, category: str) -> str:
        """llama_tensor_get_type_impl: the mix rules of each ftype, in the C's order."""
        ft = self.opts.ftype
        arch = self.hp.arch
        hp = self.hp

        def use_more_bits(i_layer: int, n_layers: int) -> bool:
            # C integer division and remainder (truncate toward zero)
            return (i_layer < _cdiv(n_layers, 8) or i_layer >= _cdiv(7 * n_layers, 8)
                    or _cmod(i_layer - _cdiv(n_layers, 8), 3) == 2)

        # glm5-next: attn_q_a / attn_q_b / nextn.eh_proj never below Q8_0
        if arch == "glm5-next" and ("attn_q_a" in name or "attn_q_b" in name or "nextn.eh_proj" in name):
            if new_type not in ("F32", "BF16", "F16"):
                return "Q8_0"

        IQ12 = (F.LLAMA_FTYPE_MOSTLY_IQ2_XXS, F.LLAMA_FTYPE_MOSTLY_IQ2_XS, F.LLAMA_FTYPE_MOSTLY_IQ1_S,
                F.LLAMA_FTYPE_MOSTLY_IQ2_S, F.LLAMA_FTYPE_MOSTLY_IQ2_M, F.LLAMA_FTYPE_MOSTLY_IQ1_M)
        IQ2SM = (F.LLAMA_FTYPE_MOSTLY_IQ2_S, F.LLAMA_FTYPE_MOSTLY_IQ2_M)

        # tied embeddings are quantized like the output tensor
        if category == OUTPUT or (self.has_tied_embeddings and category == TOKEN_EMBD):
            if self.opts.output_tensor_type is not None:
                new_type = self.opts.output_tensor_type
            else:
                nx = ne[0]
                qk_k = block_size(new_type)
                if ft == F.LLAMA_FTYPE_MOSTLY_MXFP4_MOE:
                    new_type = "Q8_0"
                elif arch == "falcon" or nx % qk_k != 0:
                    new_type = "Q8_0"
                elif ft in (F.LLAMA_FTYPE_MOSTLY_IQ2_XXS, F.LLAMA_FTYPE_MOSTLY_IQ2_XS, F.LLAMA_FTYPE_MOSTLY_IQ3_XXS,
                            F.LLAMA_FTYPE_MOSTLY_IQ1_S, F.LLAMA_FTYPE_MOSTLY_IQ2_S, F.LLAMA_FTYPE_MOSTLY_IQ2_M,
                            F.LLAMA_FTYPE_MOSTLY_IQ1_M):
                    new_type = "Q5_K"
                elif new_type != "Q8_0":
                    new_type = "Q6_K"
        elif ft == F.LLAMA_FTYPE_MOSTLY_MXFP4_MOE:
            # MoE tensors -> MXFP4, the rest -> Q8_0 (bailingmoe3's MLA projections are 3-D too: experts only)
            is_bailingmoe3_expert = arch == "bailingmoe3" and category in (FFN_UP, FFN_GATE, FFN_DOWN)
            if ne[2] > 1 and (arch != "bailingmoe3" or is_bailingmoe3_expert):
                new_type = "MXFP4"
            else:
                new_type = "Q8_0"
        elif category == TOKEN_EMBD:
            if self.opts.token_embedding_type is not None:
                new_type = self.opts.token_embedding_type
            elif ft in (F.LLAMA_FTYPE_MOSTLY_IQ2_XXS, F.LLAMA_FTYPE_MOSTLY_IQ2_XS, F.LLAMA_FTYPE_MOSTLY_IQ1_S,
                        F.LLAMA_FTYPE_MOSTLY_IQ1_M):
                new_type = "Q2_K"
            elif ft in IQ2SM:
                new_type = "IQ3_S"
            elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XXS:
                new_type = "IQ3_S"
            elif ft in (F.LLAMA_FTYPE_MOSTLY_TQ1_0, F.LLAMA_FTYPE_MOSTLY_TQ2_0, F.LLAMA_FTYPE_MOSTLY_Q2_0):
                new_type = "Q4_K"
        elif ft in IQ12:
            if category_is_attn_v(category):
                if hp.n_gqa() >= 4 or hp.n_expert >= 4:
                    new_type = "Q4_K"
                else:
                    new_type = "IQ3_S" if ft in IQ2SM else "Q2_K"
                self.i_attention_wv += 1
            elif hp.n_expert == 8 and category == ATTENTION_K:
                new_type = "Q4_K"
            elif category == FFN_DOWN:
                if self.i_ffn_down < _cdiv(self.n_ffn_down, 8):
                    new_type = "IQ3_S" if ft in IQ2SM else "Q2_K"
                self.i_ffn_down += 1
            elif category == ATTENTION_OUTPUT:
                if hp.n_expert == 8:
                    new_type = "Q5_K"
                elif ft in (F.LLAMA_FTYPE_MOSTLY_IQ1_S, F.LLAMA_FTYPE_MOSTLY_IQ1_M):
                    new_type = "IQ2_XXS"
                elif ft in IQ2SM:
                    new_type = "IQ3_S"
        elif category_is_attn_v(category):
            if ft == F.LLAMA_FTYPE_MOSTLY_Q2_K:
                new_type = "Q4_K" if hp.n_gqa() >= 4 else "Q3_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q2_K_S and hp.n_gqa() >= 4:
                new_type = "Q4_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XXS:
                new_type = "Q4_K" if hp.n_gqa() >= 4 else ("IQ3_S" if not self.has_imatrix else "IQ3_XXS")
            elif ft in (F.LLAMA_FTYPE_MOSTLY_IQ3_XS, F.LLAMA_FTYPE_MOSTLY_IQ3_S) and hp.n_gqa() >= 4:
                new_type = "Q4_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_M:
                new_type = "Q4_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q3_K_M:
                new_type = "Q5_K" if self.i_attention_wv < 2 else "Q4_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q3_K_L:
                new_type = "Q5_K"
            elif ft in (F.LLAMA_FTYPE_MOSTLY_IQ4_NL, F.LLAMA_FTYPE_MOSTLY_IQ4_XS) and hp.n_gqa() >= 4:
                new_type = "Q5_K"
            elif (ft in (F.LLAMA_FTYPE_MOSTLY_Q4_K_M, F.LLAMA_FTYPE_MOSTLY_Q5_K_M)
                  and use_more_bits(self.i_attention_wv, self.n_attention_wv)):
                new_type = "Q6_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q4_K_S and self.i_attention_wv < 4:
                new_type = "Q5_K"
            if hp.is_70b:
                # 70B: 8 heads share attn_v, which is 8x smaller than attn_q: more bits cost little
                if new_type in ("Q3_K", "Q4_K"):
                    new_type = "Q5_K"
            if hp.n_expert == 8:
                new_type = "Q8_0"       # for the 8-expert model, bumping this to Q8_0 trades just ~128MB
            self.i_attention_wv += 1
        elif category == ATTENTION_K:
            if hp.n_expert == 8:
                new_type = "Q8_0"
            elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XS:
                new_type = "IQ3_XXS"
            elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XXS:
                new_type = "IQ2_S"
        elif category == ATTENTION_Q:
            if ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XS:
                new_type = "IQ3_XXS"
            elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XXS:
                new_type = "IQ2_S"
        elif category == FFN_DOWN:
            i_layer, n_layer = self._layer_info(self.i_ffn_down, self.n_ffn_down, name)
            if ft == F.LLAMA_FTYPE_MOSTLY_Q2_K:
                new_type = "Q3_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q2_K_S:
                if i_layer < _cdiv(n_layer, 8):
                    new_type = "Q4_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XXS and not self.has_imatrix:
                new_type = "Q4_K" if i_layer < _cdiv(n_layer, 8) else "Q3_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q3_K_M:
                new_type = ("Q5_K" if i_layer < _cdiv(n_layer, 16)
                            else "Q4_K" if arch != "falcon" or use_more_bits(i_layer, n_layer)
                            else "Q3_K")
            elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_M and (
                    i_layer < _cdiv(n_layer, 8) or (hp.n_expert == 8 and use_more_bits(i_layer, n_layer))):
                new_type = "Q4_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q3_K_L:
                new_type = "Q4_K" if arch == "falcon" else "Q5_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q4_K_M:
                if arch == "falcon":
                    new_type = ("Q6_K" if i_layer < _cdiv(n_layer, 16)
                                else "Q5_K" if use_more_bits(i_layer, n_layer) else "Q4_K")
                elif use_more_bits(i_layer, n_layer):
                    new_type = "Q6_K"
            elif (i_layer < _cdiv(n_layer, 8) and ft in (F.LLAMA_FTYPE_MOSTLY_IQ4_NL, F.LLAMA_FTYPE_MOSTLY_IQ4_XS)
                  and not self.has_imatrix):
                new_type = "Q5_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q5_K_M and use_more_bits(i_layer, n_layer):
                new_type = "Q6_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q4_K_S and arch != "falcon" and i_layer < _cdiv(n_layer, 8):
                new_type = "Q5_K"
            elif (ft in (F.LLAMA_FTYPE_MOSTLY_Q4_0, F.LLAMA_FTYPE_MOSTLY_Q5_0) and self.has_imatrix
                  and i_layer < _cdiv(n_layer, 8)):
                # guard the first ffn_down layers of Q4_0/Q5_0, only with an imatrix (so that without one the
                # result stays what it was before imatrix support)
                new_type = "Q4_1" if ft == F.LLAMA_FTYPE_MOSTLY_Q4_0 else "Q5_1"
            self.i_ffn_down += 1
        elif category == ATTENTION_OUTPUT:
            if arch != "falcon":
                if hp.n_expert == 8:
                    if ft in (F.LLAMA_FTYPE_MOSTLY_Q2_K, F.LLAMA_FTYPE_MOSTLY_IQ3_XS, F.LLAMA_FTYPE_MOSTLY_IQ3_XXS,
                              F.LLAMA_FTYPE_MOSTLY_Q3_K_S, F.LLAMA_FTYPE_MOSTLY_Q3_K_M, F.LLAMA_FTYPE_MOSTLY_IQ4_NL,
                              F.LLAMA_FTYPE_MOSTLY_Q4_K_S, F.LLAMA_FTYPE_MOSTLY_Q4_K_M, F.LLAMA_FTYPE_MOSTLY_IQ3_S,
                              F.LLAMA_FTYPE_MOSTLY_IQ3_M, F.LLAMA_FTYPE_MOSTLY_IQ4_XS):
                        new_type = "Q5_K"
                else:
                    if ft == F.LLAMA_FTYPE_MOSTLY_Q2_K:
                        new_type = "Q3_K"
                    elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XXS:
                        new_type = "IQ3_S"
                    elif ft == F.LLAMA_FTYPE_MOSTLY_Q3_K_M:
                        new_type = "Q4_K"
                    elif ft == F.LLAMA_FTYPE_MOSTLY_Q3_K_L:
                        new_type = "Q5_K"
                    elif ft == F.LLAMA_FTYPE_MOSTLY_IQ3_M:
                        new_type = "Q4_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q3_K_L:
                new_type = "Q4_K"
        elif category == ATTENTION_QKV:
            if ft in (F.LLAMA_FTYPE_MOSTLY_Q3_K_M, F.LLAMA_FTYPE_MOSTLY_Q3_K_L, F.LLAMA_FTYPE_MOSTLY_IQ3_M):
                new_type = "Q4_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q4_K_M:
                new_type = "Q5_K"
            elif ft == F.LLAMA_FTYPE_MOSTLY_Q5_K_M:
                new_type = "Q6_K"
        elif category == FFN_GATE:
            i_layer, n_layer = self._layer_info(self.i_ffn_gate, self.n_ffn_gate, name)
            if ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XS and _cdiv(n_layer, 8) <= i_layer < _cdiv(7 * n_layer, 8):
                new_type = "IQ3_XXS"
            self.i_ffn_gate += 1
        elif category == FFN_UP:
            i_layer, n_layer = self._layer_info(self.i_ffn_up, self.n_ffn_up, name)
            if ft == F.LLAMA_FTYPE_MOSTLY_IQ3_XS and _cdiv(n_layer, 8) <= i_layer < _cdiv(7 * n_layer, 8):
                new_type = "IQ3_XXS"
            self.i_ffn_up += 1
        return new_type


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cmod(a: int, b: int) -> int:
    """C remainder (sign of the dividend)."""
    return a - _cdiv(a, b) * b
