"""python -m refimpl.report end to end on tiny-kjv: a ggml type and a plugin type quantized, measured and
tabulated; files reused on a second run; the plot when matplotlib (refimpl[report]) is installed; bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from refimpl import quant, report

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "refimpl" / "data" / "tiny-kjv-q8_0.gguf"
TEXT = ROOT / "tests" / "data" / "kjv-genesis-1.txt"
MLX = ROOT / "examples" / "plugins" / "mlx_affine.py"
SMALL = dict(n_ctx=64, n_chunks=2, n_prompt=16, n_gen=4, progress=False)


def test_report_on_tiny_kjv(tmp_path):
    quant.load_plugin(MLX)
    rows = report.run_report(TINY, TEXT, ["Q4_0", "mlx-q4-g64"], out_dir=tmp_path, **SMALL)
    base, q4_0, mlx = rows
    assert [r.error for r in rows] == [None, None, None]
    assert base.type == "base (Q8_0)" and base.kld_mean == 0
    assert not q4_0.plugin and mlx.plugin
    for r in (q4_0, mlx):
        assert Path(r.path).is_file() and r.file_bytes == Path(r.path).stat().st_size
        assert 4.0 < r.bpw < 5.5 and r.bpw < base.bpw
        assert r.ppl > 1 and 0 < r.kld_mean <= r.kld_max and r.kld_99 <= r.kld_max and 0.5 < r.same_top_p <= 1
        assert r.prompt_tps > 0 and r.decode_tps > 0
    assert mlx.tensor_types == {"mlx-q4-g64": 37, "F32": 11}
    table = (tmp_path / "report.md").read_text()
    assert "| Q4_0 |" in table and "| mlx-q4-g64 (plugin) |" in table and "| base (Q8_0) |" in table
    assert [r["type"] for r in json.loads((tmp_path / "report.json").read_text())] == \
        ["base (Q8_0)", "Q4_0", "mlx-q4-g64"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "report.png").exists()      # the plot alone is skipped without refimpl[report]
    else:
        assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run reuses the quantized files
    (again,) = report.run_report(TINY, TEXT, ["Q4_0"], out_dir=tmp_path, **SMALL)[1:]
    assert again.reused and again.kld_mean == q4_0.kld_mean


def test_report_bad_input(tmp_path, capsys):
    out = tmp_path / "out"
    assert report.main(["-m", str(TINY), "-f", str(TEXT), "--types", "Q4_0", "NOT_A_TYPE", "-o", str(out)]) == 1
    assert "invalid ftype 'NOT_A_TYPE'" in capsys.readouterr().err
    assert not out.exists()                                 # checked before any work
    assert report.main(["-m", str(tmp_path / "missing.gguf"), "-f", str(TEXT), "--types", "Q4_0"]) == 1
    assert report.main(["-m", str(TINY), "-f", str(TEXT), "--types", "Q4_0", "--plugin",
                        str(tmp_path / "nope.py")]) == 1
