"""Plugin quantization formats (refimpl.quant.register / load_plugin, spec/plugins.md) and GGUF files with
experimental types: the contract's checks, the container round trip, the errors, and one plugin written in a file
outside the package used end to end on tiny-kjv (quantize, save, reload, generate, measure)."""
from __future__ import annotations

import io
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from refimpl import gguf, quant
from refimpl.gguf import GGUFError
from refimpl.quant import EXPERIMENTAL_TYPE_BASE, PluginError, QuantFormat

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "refimpl" / "data" / "tiny-kjv-q8_0.gguf"
TEXT = ROOT / "tests" / "data" / "kjv-genesis-1.txt"

# A complete plugin, as a user writes it: one file, plain numpy, no vec_dot.  Blocks of 32 weights: a float16
# scale and 32 signed 6-bit codes stored one per byte (absmax, round to nearest).
PLUGIN_SOURCE = textwrap.dedent('''
    import numpy as np
    from refimpl.quant import QuantFormat

    BLOCK = np.dtype([("d", "<f2"), ("q", "i1", (32,))])

    def quantize(x, imatrix, blocks):
        groups = x.reshape(len(x), -1, 32)
        amax = np.abs(groups).max(axis=-1)
        d = (amax / 31).astype(np.float16)
        inv = np.divide(1, d.astype(np.float32), out=np.zeros(d.shape, np.float32), where=d > 0)
        out = np.empty(blocks.shape, BLOCK)
        out["d"] = d
        out["q"] = np.clip(np.rint(groups * inv[..., None]), -31, 31).astype(np.int8)
        return out

    def dequantize(blocks, y):
        return (blocks["q"].astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)

    FORMATS = [QuantFormat(name="test-q6-absmax", type_id=None, block_size=32, block_dtype=BLOCK,
                           vec_dot_type=None, quantize=quantize, dequantize=dequantize)]
''')


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user_plugin") / "my_q6.py"
    path.write_text(PLUGIN_SOURCE)
    return path


@pytest.fixture(scope="module")
def plugin(plugin_file):
    (fmt,) = quant.load_plugin(plugin_file)
    return fmt


def _block():
    return np.dtype([("d", "<f4"), ("q", "i1", (32,))])


def _good_quantize(x, imatrix, blocks):
    g = x.reshape(len(x), -1, 32)
    blocks["d"] = np.abs(g).max(axis=-1) / 127
    d = np.where(blocks["d"] > 0, blocks["d"], 1)
    blocks["q"] = np.rint(g / d[..., None]).astype(np.int8)


def _good_dequantize(blocks, y):
    y[:] = (blocks["q"] * blocks["d"][:, None]).reshape(-1)


def _fmt(name, quantize=_good_quantize, dequantize=_good_dequantize, **kw):
    return QuantFormat(name=name, type_id=kw.pop("type_id", None), block_size=32, block_dtype=_block(),
                       vec_dot_type=kw.pop("vec_dot_type", None), quantize=quantize, dequantize=dequantize, **kw)


# ------------------------------------------------------------------------------------------------ registration

def test_register_assigns_experimental_ids_and_is_idempotent(plugin, plugin_file):
    assert quant.EXPERIMENTAL_TYPE_BASE == EXPERIMENTAL_TYPE_BASE == 0x1000
    assert EXPERIMENTAL_TYPE_BASE <= plugin.type_id < 0x2000
    assert quant.get_type("TEST-Q6-ABSMAX") is quant.get_type(plugin.type_id) is plugin      # case-insensitive
    assert plugin.type_size == 34 and plugin.bits_per_weight == 8.5
    assert quant.load_plugin(plugin_file) == [plugin]                                          # no-op twice
    fmt = _fmt("test-idempotent")
    assert quant.register(fmt) is quant.register(fmt)


def test_round_trip_through_the_public_api(plugin):
    x = np.random.default_rng(0).standard_normal((4, 96)).astype(np.float32)
    raw = quant.quantize(x, plugin.name)
    assert raw.dtype == np.uint8 and raw.shape == (4, 3 * 34)
    y = quant.dequantize(raw, plugin.name)
    assert np.abs(y - x).max() <= np.abs(x).max() / 31
    # matmul without vec_dot: dequantized rows times float32 activations (not a ggml path)
    a = np.random.default_rng(1).standard_normal((2, 96)).astype(np.float32)
    np.testing.assert_allclose(quant.matmul(raw, plugin.name, a), a @ y.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (dict(name="Q4_0"), "one of ggml's types"),
    (dict(name="has space"), "must be 1-63 characters"),
    (dict(name="test-badid", type_id=42), "experimental range"),
    (dict(name="test-vdt", vec_dot_type="Q8_0"), "vec_dot and vec_dot_type go together"),
])
def test_register_rejects_bad_descriptors(bad, message):
    with pytest.raises(PluginError, match=message):
        quant.register(_fmt(**bad))


def test_wrong_shape_or_dtype_is_named():
    def wrong_shape(x, imatrix, blocks):
        return np.zeros(blocks.shape[0], dtype=_block())

    def wrong_dtype(x, imatrix, blocks):
        return np.zeros(blocks.shape, dtype=np.float32)

    with pytest.raises(PluginError, match=r"'test-wrong-shape' \(.*test_plugins.py\): quantize returned"):
        quant.register(_fmt("test-wrong-shape", quantize=wrong_shape))
    with pytest.raises(PluginError, match="'test-wrong-dtype'.*quantize returned float32"):
        quant.register(_fmt("test-wrong-dtype", quantize=wrong_dtype))
    assert "test-wrong-shape" not in quant.TYPES


def test_non_finite_round_trip_at_registration():
    def nan_scales(x, imatrix, blocks):
        _good_quantize(x, imatrix, blocks)
        blocks["d"] = np.nan

    with pytest.raises(PluginError, match="'test-nan'.*round trip quantize -> dequantize is not finite"):
        quant.register(_fmt("test-nan", quantize=nan_scales))


def test_failure_on_first_real_use_writes_no_file(tmp_path):
    """A plugin that passes the probe but breaks on a real model: the model quantizer stops, nothing is written."""
    from refimpl.quantize import quantize_model

    def overflows_on_wide_rows(x, imatrix, blocks):
        _good_quantize(x, imatrix, blocks)
        if x.shape[1] > 256:            # the probe has 256 columns; tiny-kjv's ffn_down rows have 512
            blocks["d"] = np.inf

    quant.register(_fmt("test-late-inf", quantize=overflows_on_wide_rows))
    dst = tmp_path / "out.gguf"
    with pytest.raises(PluginError, match="'test-late-inf'.*not finite"):
        quantize_model(TINY, dst, "test-late-inf", allow_requantize=True, progress=False, nthread=1)
    assert list(tmp_path.iterdir()) == []


def test_load_plugin_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        quant.load_plugin(tmp_path / "missing.py")
    empty = tmp_path / "empty_plugin.py"
    empty.write_text("X = 1\n")
    with pytest.raises(ValueError, match="registered no quantization format"):
        quant.load_plugin(empty)
    with pytest.raises(ValueError, match="no such file, and no importable module"):
        quant.load_plugin("no_such_plugin_module_xyz")


# ------------------------------------------------------------------------------------------------ GGUF

def _write_plugin_file(path, fmt, rows=3):
    x = np.random.default_rng(2).standard_normal((rows, 64)).astype(np.float32)
    raw = quant.quantize(x, fmt.name)
    gguf.write(path, {"general.architecture": "test"},
               {"w": gguf.Tensor(fmt.name, x.shape, raw), "norm": np.ones(64, np.float32)})
    return raw


def test_gguf_round_trip_with_experimental_type(plugin, tmp_path):
    raw = _write_plugin_file(tmp_path / "a.gguf", plugin)
    f = gguf.read(tmp_path / "a.gguf")
    t = f.tensors["w"]
    assert t.ggml_type == plugin.name and t.type_id == plugin.type_id and np.array_equal(t.data, raw)
    assert list(f.get("refimpl.experimental_types.id")) == [plugin.type_id]
    assert list(f.get("refimpl.experimental_types.name")) == [plugin.name]
    assert list(f.get("refimpl.experimental_types.block_size")) == [32]
    assert list(f.get("refimpl.experimental_types.type_size")) == [34]
    f.save(tmp_path / "b.gguf")
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()
    # a file without plugin tensors carries no stale description
    gguf.write(tmp_path / "c.gguf", dict(f.metadata), {"norm": np.ones(64, np.float32)})
    assert not any(k.startswith("refimpl.experimental_types") for k in gguf.read(tmp_path / "c.gguf").metadata)
    assert len(gguf.GGML_TYPES) == 43          # ggml's table is unchanged


def _patched(path, old: bytes, new: bytes) -> bytes:
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    return data.replace(old, new)


def test_unregistered_experimental_type_is_a_clear_error(plugin, tmp_path):
    _write_plugin_file(tmp_path / "a.gguf", plugin)
    # the same file naming a type nobody registered (same length name, so every offset stays valid)
    data = _patched(tmp_path / "a.gguf", b"test-q6-absmax", b"test-q6-unknwn")
    with pytest.raises(GGUFError, match=r"experimental type 'test-q6-unknwn' \(id \d+, 32-element blocks of 34 "
                                        r"bytes\), which is not registered: load its plugin") as e:
        gguf.read_bytes(data)
    assert e.value.offset > 0
    # a block size that disagrees with the registered plugin of that name
    data = (tmp_path / "a.gguf").read_bytes()
    key = b"refimpl.experimental_types.type_size"
    at = data.index(key) + len(key) + 4 + 4 + 8             # type tag, element type, count, then the int32
    bad = data[:at] + np.int32(35).tobytes() + data[at + 4:]
    with pytest.raises(GGUFError, match="another version of the plugin"):
        gguf.read_bytes(bad)
    # an id in the experimental range that the file does not describe
    gguf.write(tmp_path / "d.gguf", {}, {"norm": np.ones(64, np.float32)})
    data = (tmp_path / "d.gguf").read_bytes()
    at = data.index(b"norm") + 4 + 4 + 8                       # name, n_dims, ne[0], then the type
    bad = data[:at] + np.int32(EXPERIMENTAL_TYPE_BASE + 7).tobytes() + data[at + 4:]
    with pytest.raises(GGUFError, match="does not describe it"):
        gguf.read_bytes(bad)


# ------------------------------------------------------------------------------------------------ end to end

def test_user_plugin_end_to_end_on_tiny_kjv(plugin, plugin_file, tmp_path):
    """register (load_plugin on a file outside the package), quantize tiny-kjv, save, reload, generate, measure."""
    from refimpl import generate, model, quality
    from refimpl.quantize import quantize_model

    out = tmp_path / "tiny-kjv-test-q6.gguf"
    res = quantize_model(TINY, out, plugin.name, allow_requantize=True, progress=False, nthread=1)
    assert res.path == str(out)
    f = gguf.read(out)
    types = {t.ggml_type for t in f.tensors.values()}
    assert types == {plugin.name, "F32"}            # --pure semantics: every 2-D weight (rows of 192/512 fit)
    assert list(f.get("refimpl.experimental_types.name")) == [plugin.name]
    # reload it and compare every weight with the quantize -> dequantize of the original
    src = gguf.read(TINY)
    w = quant.dequantize(np.asarray(src.tensors["blk.0.ffn_up.weight"].data), "Q8_0")
    np.testing.assert_array_equal(f.tensors["blk.0.ffn_up.weight"].data, quant.quantize(w, plugin.name))
    # generate with it through the CLI (--plugin) and through the API
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert generate.main(["-m", str(out), "--plugin", str(plugin_file), "-p", "In the beginning", "-n", "8",
                              "--temp", "0"]) == 0
    assert buf.getvalue().startswith("In the beginning") and len(buf.getvalue()) > len("In the beginning ")
    m = model.load(out, n_ctx=64)
    assert np.isfinite(m.eval([1, 450, 300]).astype(np.float64)).all()
    # measure: KL-divergence against the Q8_0 model on two chunks of 64 tokens
    base = tmp_path / "base.kld"
    quality.perplexity(TINY, TEXT.read_text(), n_ctx=64, n_chunks=2, kl_divergence_base=base)
    s = quality.kl_divergence(out, base).statistics()
    assert 0 < s["kld_mean"] < 0.05 and s["same_top"] > 0.8


def test_plugin_type_in_tensor_type_overrides(plugin, tmp_path):
    """--tensor-type NAME=TYPE and --output-tensor-type take a plugin type like any ggml type."""
    from refimpl.quantize import quantize_model

    out = tmp_path / "mixed.gguf"
    quantize_model(TINY, out, "Q4_0", allow_requantize=True, progress=False, nthread=1,
                   tensor_types=[f"ffn_down={plugin.name}"], output_tensor_type=plugin.name)
    types = {t.name: t.ggml_type for t in gguf.read(out).tensors.values()}
    assert types["output.weight"] == types["blk.3.ffn_down.weight"] == plugin.name
    assert types["blk.3.ffn_up.weight"] == "Q4_0"


def test_plugin_with_vec_dot_runs_ggml_scheme(tmp_path):
    """A plugin with an @njit vec_dot against Q8_0: matmul quantizes the activations to Q8_0 and calls it."""
    source = textwrap.dedent('''
        import numpy as np
        from numba import njit
        from refimpl.floats import F16_TO_F32
        from refimpl.quant import QuantFormat

        BLOCK = np.dtype([("d", "<f4"), ("qs", "i1", (32,))])

        def quantize(x, imatrix, blocks):
            g = x.reshape(len(x), -1, 32)
            d = (np.abs(g).max(axis=-1) / 127).astype(np.float32)
            out = np.empty(blocks.shape, BLOCK)
            out["d"] = d
            out["qs"] = np.rint(g / np.where(d > 0, d, 1)[..., None]).astype(np.int8)
            return out

        def dequantize(blocks, y):
            return (blocks["qs"] * blocks["d"][:, None]).reshape(-1).astype(np.float32)

        @njit(cache=False)
        def vec_dot(n, x, y):                      # x: this format's blocks, y: Q8_0 blocks (F16 scale bits)
            s = np.float32(0)
            for b in range(n // 32):
                acc = 0
                for j in range(32):
                    acc += np.int32(x[b].qs[j]) * np.int32(y[b].qs[j])
                s += np.float32(acc) * x[b].d * F16_TO_F32[y[b].d]
            return s

        FORMATS = [QuantFormat(name="test-vd-q8", type_id=None, block_size=32, block_dtype=BLOCK,
                               vec_dot_type="Q8_0", quantize=quantize, dequantize=dequantize, vec_dot=vec_dot)]
    ''')
    path = tmp_path / "vd_plugin.py"
    path.write_text(source)
    (fmt,) = quant.load_plugin(path)
    rng = np.random.default_rng(3)
    w, a = rng.standard_normal((8, 64)).astype(np.float32), rng.standard_normal((3, 64)).astype(np.float32)
    raw = quant.quantize(w, fmt.name)
    # the reference: the plugin's vec_dot on Q8_0 activations, output by output
    a_q8 = quant.quantize_activations(a, "Q8_0")
    expected = np.array([[quant.vec_dot(fmt.name, raw[r], a_q8[t]) for r in range(8)] for t in range(3)])
    np.testing.assert_array_equal(quant.matmul(raw, fmt.name, a), expected)
