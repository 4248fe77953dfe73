"""vec_dot and matmul for every weight type, bit for bit against ggml's scalar CPU backend (golden/matmul)."""
import numpy as np
import pytest

from conftest import GOLDEN, KERNEL_LAYERS, assert_bits_equal, load_golden, with_layers
from refimpl import kernels, quant

TYPES = sorted(p.stem for p in (GOLDEN / "matmul").glob("*.npz") if p.stem not in ("activations", "nan_scales"))


@pytest.fixture(scope="module")
def acts():
    return load_golden("matmul/activations.npz")


def cases(g):
    return sorted(k.split(".", 1)[1] for k in g if k.startswith("w."))


@pytest.mark.parametrize("kernel_layer", KERNEL_LAYERS, indirect=True)
def test_activation_quantization(acts, kernel_layer):
    for key, xq in acts.items():
        if not key.startswith("xq."):
            continue
        _, vtype, case = key.split(".")
        if vtype not in quant.TYPES:
            pytest.fail(f"activation type {vtype} is not implemented")
        assert_bits_equal(quant.quantize_activations(acts[f"x.{case}"], vtype), xq, key)


@pytest.mark.parametrize("kernel_layer", KERNEL_LAYERS, indirect=True)
def test_vec_dot_nan_scales(kernel_layer):
    # NaN and Inf scales with distinct payloads: which NaN the C's operand order lets through
    g = load_golden("matmul/nan_scales.npz")
    names = sorted(k.split(".", 1)[1] for k in g if k.startswith("vec_dot."))
    assert len(names) >= 20
    for name in names:
        w, y, expect = g[f"w.{name}"], g[f"y.{name}"], g[f"vec_dot.{name}"]
        ours = np.array([quant.vec_dot(name, w[r], y[r]) for r in range(w.shape[0])], dtype=np.float32)
        assert_bits_equal(ours, expect, f"{name} vec_dot with NaN/Inf scales")


@pytest.mark.parametrize("name,kernel_layer", with_layers([(n,) for n in TYPES], "vec_dot"),
                         indirect=["kernel_layer"])
def test_vec_dot(name, acts, kernel_layer):
    g = load_golden(f"matmul/{name}.npz")
    vtype = quant.vec_dot_type(name)
    for case in cases(g):
        w, xq, expect = g[f"w.{case}"], acts[f"xq.{vtype}.{case}"], g[f"vec_dot.{case}"]
        ours = np.array([[quant.vec_dot(name, w[r], xq[t]) for r in range(w.shape[0])] for t in range(xq.shape[0])],
                        dtype=np.float32)
        assert_bits_equal(ours, expect, f"{name} vec_dot {case}")


@pytest.mark.parametrize("kernel_layer", KERNEL_LAYERS, indirect=True)
@pytest.mark.parametrize("name", TYPES)
def test_matmul(name, acts, kernel_layer):
    g = load_golden(f"matmul/{name}.npz")
    for case in cases(g):
        assert_bits_equal(quant.matmul(g[f"w.{case}"], name, acts[f"x.{case}"]), g[f"mul_mat.{case}"],
                          f"{name} matmul {case}")


INTDOT_TYPES = [name for name in TYPES if kernels.get(name) is not None and kernels.get(name).intdot is not None]


@pytest.mark.parametrize("name", INTDOT_TYPES)
def test_matmul_intdot_path(name, acts):
    """The BLAS path (exact integer part by float32 GEMM, float part replayed) gives llama.cpp's bits too, with
    weights expanded on the fly and prepared once."""
    g = load_golden(f"matmul/{name}.npz")
    for case in cases(g):
        w, x, expect = g[f"w.{case}"], acts[f"x.{case}"], g[f"mul_mat.{case}"]
        assert_bits_equal(quant.matmul(w, name, x, path="intdot"), expect, f"{name} intdot {case}")
        assert_bits_equal(quant.matmul(w, name, x, prepared=quant.prepare(w, name)), expect,
                          f"{name} prepared {case}")


@pytest.mark.parametrize("name", INTDOT_TYPES)
def test_intdot_path_equals_vec_dot_path(name):
    """Both paths on random weights and activations, extreme integer levels included (the 2^24 bound)."""
    rng = np.random.default_rng(7)
    fmt = quant.TYPES[name]
    n = 2 * 256
    w = quant.quantize(rng.standard_normal((37, n)).astype(np.float32) ** 3, name)
    x = (rng.standard_normal((19, n)) * 10.0 ** rng.integers(-3, 4, (19, 1))).astype(np.float32)
    x[3, ::7] = 1e30                                      # saturated activation blocks: levels +-127
    raw = rng.integers(0, 256, w.shape, dtype=np.uint8)   # every bit pattern of levels and scales ...
    blocks = raw.view(fmt.block_dtype)
    for f in ("d", "dmin", "m"):                          # ... with finite F16 scales
        if f in fmt.block_dtype.names:
            blocks[f] &= 0xBBFF
    for weights in (w, raw):
        a = quant.matmul(weights, name, x, path="vec_dot")
        b = quant.matmul(weights, name, x, path="intdot")
        assert_bits_equal(b, a, f"{name} intdot vs vec_dot")


def test_matmul_does_not_depend_on_thread_count(acts):
    g = load_golden("matmul/Q4_K.npz")
    w, x = g["w.small"], acts["x.small"]
    before = quant.get_num_threads()
    try:
        results = []
        for n in sorted({1, quant.get_num_threads()}):
            quant.set_num_threads(n)
            results.append(quant.matmul(w, "Q4_K", x))
            results.append(quant.matmul(w, "Q4_K", x, path="intdot"))
        for r in results[1:]:
            assert_bits_equal(r, results[0], "threads")
    finally:
        quant.set_num_threads(before)


def test_matmul_bad_shapes():
    w = np.zeros((2, 18), np.uint8)
    with pytest.raises(ValueError, match="last dimension 32"):
        quant.matmul(w, "Q4_0", np.zeros((1, 31), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        quant.matmul(w.astype(np.int8), "Q4_0", np.zeros((1, 32), np.float32))
    with pytest.raises(ValueError, match="no vec_dot"):
        quant.matmul(np.zeros((1, 36), np.uint8), "Q8_1", np.zeros((1, 32), np.float32))
    with pytest.raises(ValueError, match="path must be"):
        quant.matmul(w, "Q4_0", np.zeros((1, 32), np.float32), path="blas")
    with pytest.raises(ValueError, match="no intdot"):
        quant.matmul(np.zeros((1, 18), np.uint8), "Q2_0", np.zeros((1, 64), np.float32), path="intdot")
    prepared = quant.prepare(np.zeros((3, 18), np.uint8), "Q4_0")
    with pytest.raises(ValueError, match="prepared weights are Q4_0"):
        quant.matmul(w, "Q4_0", np.zeros((1, 32), np.float32), prepared=prepared)
    assert quant.prepare(np.zeros((1, 66), np.uint8), "TQ2_0") is None      # no intdot path: nothing to prepare


def test_weight_matrix_equals_matmul(acts):
    g = load_golden("matmul/Q8_0.npz")
    w, x = g["w.small"], acts["x.small"]
    m = quant.WeightMatrix(w, "Q8_0")
    assert_bits_equal(m.matmul(x), g["mul_mat.small"], "WeightMatrix")
    assert_bits_equal(m.matmul(x[0]), g["mul_mat.small"][0], "WeightMatrix, one row as 1-D")


@pytest.mark.parametrize("kernel_layer", KERNEL_LAYERS, indirect=True)
def test_format_without_vec_dot_multiplies_through_float32(kernel_layer):
    """A format with no vec_dot (here Q8_K; a plugin type alike) is multiplied by dequantizing its rows and a float32
    numpy product -- not a ggml path, so the check is against that definition, not a golden."""
    rng = np.random.default_rng(3)
    w = quant.quantize_ref(rng.standard_normal((5, 512)).astype(np.float32), "Q8_K")
    x = rng.standard_normal((3, 512)).astype(np.float32)
    expect = np.matmul(x, quant.dequantize(w, "Q8_K").T)
    assert_bits_equal(quant.matmul(w, "Q8_K", x), expect, "Q8_K float32 path")
    one = np.matmul(x[1:2], quant.dequantize(w, "Q8_K").T)[0]      # a (1, n) product, as matmul makes of a 1-D x
    assert_bits_equal(quant.WeightMatrix(w, "Q8_K").matmul(x[1]), one, "Q8_K float32 path, one row")
    with pytest.raises(ValueError, match="no vec_dot"):
        quant.vec_dot("Q8_K", w[0], w[0])


def test_reference_layer_has_no_intdot_path(acts, kernel_layer):
    g = load_golden("matmul/Q4_0.npz")
    quant.set_kernels("reference")
    with pytest.raises(ValueError, match="fast kernel layer"):
        quant.matmul(g["w.small"], "Q4_0", acts["x.small"], path="intdot")
