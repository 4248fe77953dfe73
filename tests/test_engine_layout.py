"""How the engine is put together (issue 13): one hyperparameter path, overridable blocks, architectures found
by module name, and the clean-up.  The numbers themselves are checked by the model and trace goldens."""
from __future__ import annotations

import inspect
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from refimpl import model
from refimpl.model import hparams, layers
from refimpl.model.hparams import Hparams, rope_scaling
from refimpl.model.llama import Llama

LLAMA = ROOT / "golden" / "model" / "llama-F32.gguf"
MODEL_DIR = ROOT / "refimpl" / "model"


def test_architectures_are_found_by_module_name():
    archs = model.architectures()
    assert {"llama", "qwen2", "qwen3", "gemma3", "phi3", "gpt2"} <= set(archs)
    for name, cls in archs.items():
        assert cls.arch == name and issubclass(cls, model.Model)
    assert not hasattr(model, "_ARCH_MODULES")


def test_a_new_architecture_is_one_new_file(tmp_path, monkeypatch):
    (tmp_path / "toyarch.py").write_text(textwrap.dedent('''
        from refimpl.model import register
        from refimpl.model.llama import Llama

        @register("toyarch")
        class ToyArch(Llama):
            pass
    '''))
    monkeypatch.setattr(model, "__path__", list(model.__path__) + [str(tmp_path)])
    monkeypatch.setattr(model, "_discovered", False)
    try:
        assert model.architectures()["toyarch"].__name__ == "ToyArch"
    finally:
        model.ARCHITECTURES.pop("toyarch", None)
        sys.modules.pop("refimpl.model.toyarch", None)
    with pytest.raises(ValueError, match="registered twice"):
        model.register("llama")(type("Other", (Llama,), {}))


def test_one_hyperparameter_path():
    from refimpl.model.gemma3 import Gemma3Hparams
    from refimpl.model.gpt2 import GPT2Hparams
    from refimpl.model.phi3 import Phi3Hparams

    for cls in (Gemma3Hparams, GPT2Hparams, Phi3Hparams):
        assert issubclass(cls, Hparams)
    for path in MODEL_DIR.glob("*.py"):            # the shared fields are declared once, as dataclass fields
        if path.name != "hparams.py":
            assert "\n    n_head_kv: int" not in path.read_text(), path.name
    m = model.load(LLAMA, n_ctx=64)
    assert type(m.hp) is Hparams and m.hp.n_layer == 2 and m.hp.eps == np.float32(1e-5)


class _Meta:
    """A ModelFile stand-in: metadata lookups only."""
    path, arch = "x.gguf", "llama"

    def __init__(self, **kv):
        self.kv = {f"llama.{k}": v for k, v in kv.items()}

    def get(self, key, default=None):
        return self.kv.get(key.replace("{arch}", "llama"), default)


def test_rope_scaling_rule():
    f32 = np.float32
    assert rope_scaling(_Meta()) == (f32(1), f32(1))
    assert rope_scaling(_Meta(**{"rope.scaling.factor": f32(8)})) == (f32(0.125), f32(1))
    assert rope_scaling(_Meta(**{"rope.scale_linear": f32(3)}))[0] == f32(1) / f32(3)       # 1.0f/factor
    assert rope_scaling(_Meta(**{"rope.scaling.type": "none", "rope.scaling.factor": f32(8)}))[0] == f32(1)
    assert rope_scaling(_Meta(**{"rope.scaling.attn_factor": f32(1.25)}))[1] == f32(1.25)
    with pytest.raises(ValueError, match="yarn"):
        rope_scaling(_Meta(**{"rope.scaling.type": "yarn"}))
    assert "def rope_freq_scale" not in (MODEL_DIR / "gemma3.py").read_text()
    assert "from .gemma3" not in (MODEL_DIR / "phi3.py").read_text()
    assert hparams.ROPE_SCALING_TYPES == ("none", "linear", "longrope")


# The mixture-of-experts shape of spec/model.md ("Blocks"): only feed_forward is replaced.  With one expert whose
# weights are the dense FFN's, the router's softmax is exactly 1.0 and the logits are the dense model's, bit for bit.
class OneExpertMoE(Llama):
    n_expert_used = 1

    def __init__(self, mf):
        super().__init__(mf)
        for layer in self.layers:
            layer.experts = [(layer.ffn_gate, layer.ffn_up, layer.ffn_down)]
            layer.router = np.zeros((1, self.hp.n_embd), np.float32)           # ffn_gate_inp

    def feed_forward(self, il, layer, cur):
        logits = cur @ layer.router.T                                          # (n_tokens, n_expert)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :self.n_expert_used]
        out = np.zeros_like(cur)
        for e, (gate, up, down) in enumerate(layer.experts):
            rows = np.flatnonzero((top == e).any(axis=1))
            if rows.size:
                x = cur[rows]
                y = down.mm(layers.swiglu(gate.mm(x), up.mm(x)))
                out[rows] += probs[rows, e, None] * y
        return out


def test_a_moe_replaces_the_feed_forward_block_alone():
    dense = model.load(LLAMA, n_ctx=64)
    mf = model.ModelFile(LLAMA)
    moe = OneExpertMoE(mf)
    moe.new_context(64)
    toks = [1, 17, 42, 5, 200]
    assert np.array_equal(dense.eval(toks).view(np.uint32), moe.eval(toks).view(np.uint32))
    overridden = {k for k, v in vars(OneExpertMoE).items() if inspect.isfunction(v)}
    assert overridden == {"__init__", "feed_forward"}


def test_clean_up():
    assert not hasattr(layers, "silu")
    assert "softcap" not in inspect.signature(layers.attention).parameters
    sources = {p.name: p.read_text() for p in MODEL_DIR.glob("*.py")}
    assert [n for n, s in sources.items() if "def softcap" in s or "def _softcap" in s] == ["layers.py"]
    assert not any('hasattr(self.gguf.tensors, "get")' in s for s in sources.values())
    assert not any("L.attn_norm" in s or ", L in enumerate" in s for s in sources.values())


def test_no_trace_no_trace_calls(monkeypatch):
    m = model.load(LLAMA, n_ctx=64)

    def boom(*a):
        raise AssertionError("emit called without a trace callback")

    monkeypatch.setattr(m, "emit", boom)
    m.eval([1, 2, 3])
    names = []
    with pytest.raises(AssertionError, match="emit called"):
        m.eval([1, 2, 3], n_past=0, trace=lambda n, a: names.append(n))
    monkeypatch.undo()
    m.eval([1, 2, 3], n_past=0, trace=lambda n, a: names.append(n))
    assert names[0] == "embd" and names[-1] == "result_output" and "kq_soft_max-1" in names
    with pytest.raises(ValueError, match="callable"):
        m.eval([1], n_past=0, trace="yes")


def test_trace_of_a_decode_step():
    from refimpl.trace import trace

    m = model.load(LLAMA, n_ctx=64)
    m.eval([1, 2, 3])
    ts = {t.key: t for t in trace(m, [4], n_past=3)}
    assert ts[("kq-0", 0)].ne == [256, 1, 4, 1]                     # all n_kv cells, one token, 4 heads
    p = ts[("kq_soft_max-1", 0)].array
    assert np.all(p[:, :, 4:] == 0) and np.all(p[:, :, :4] > 0)      # cells 0..3 visible, the rest masked
    assert ts[("result_output", 0)].ne == [m.n_vocab, 1, 1, 1]
