"""The fast layer's branch-free best_index_mxfp4 (refimpl.kernels.fp4) picks the same code as ggml's literal 16-code
scan (the reference, refimpl.quant.formats.fp4) for every MXFP4 and NVFP4 scale, on rounding ties and on special
values."""
import numpy as np

from refimpl.kernels import fp4 as fast_fp4
from refimpl.quant.formats import fp4


def test_best_index_shortcut_matches_literal_scan():
    rng = np.random.default_rng(12)
    scales = [fp4.e8m0_to_fp32_half(i) for i in range(256)] + [fp4.ue4m3_to_fp32(i) for i in range(256)]
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3e38, -3e38], np.float32)
    for e in np.array(scales, np.float32):
        with np.errstate(all="ignore"):
            ties = (rng.integers(-30, 31, 200) * e / 4).astype(np.float32)  # midpoints between codes
            spread = (rng.standard_normal(200) * e * np.exp(rng.uniform(-20, 20, 200))).astype(np.float32)
        xs = np.concatenate([specials, ties, spread])
        xs = np.concatenate([xs, np.nextafter(xs, np.float32(np.inf)), np.nextafter(xs, np.float32(-np.inf))])
        for x in xs:
            assert fast_fp4.best_index_mxfp4(x, e) == fp4.best_index_mxfp4(x, e), (x, e)
