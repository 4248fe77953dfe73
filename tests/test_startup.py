"""Start-up: a second process on a warm numba cache loads every kernel from the cache and saves nothing.

The fast layer compiles closures over the formats' kernels (row drivers, float folds).  numba keyed their cache
entries on a per-process random uuid, so each process compiled them again and added one more entry to the cache
(refimpl/kernels/jitcache.py says why and how it is fixed).  Here the shipped model runs twice in fresh processes
sharing one empty cache directory: after the second run the cache must be exactly as the first left it (no new or
rewritten index/data file).  Besides the model (Q8_0, packed: refimpl/kernels/packed.py's group dots for one token,
its tiles for a prompt of 8+ tokens), the script multiplies Q4_K and IQ4_XS weights (packed, alone and grouped:
closures over intrinsics whose codegen must pickle the same before and after a compilation), and the second
process must have compiled none of the drivers (all loaded from the cache).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import numpy as np
from refimpl import model, quant
m = model.load(model.__file__.rsplit("/", 2)[0] + "/data/tiny-kjv-q8_0.gguf", n_ctx=64)
nxt = int(np.argmax(m.eval(list(range(3, 13)), logits="last")[-1]))     # 10 tokens: the tiles
for _ in range(2):
    nxt = int(np.argmax(m.eval([nxt])[-1]))                               # one token: the vec_dot path
rng = np.random.default_rng(0)
for qtype in ("Q4_K", "IQ4_XS"):
    fmt = quant.get_type(qtype)
    raw = rng.integers(0, 256, (64, fmt.row_size(256)), dtype=np.uint8)
    raw.view(np.uint16)[:, 0] = 0x3C00                                    # a finite F16 scale (d) in every row
    for n_tok in (1, 8):
        quant.matmul(raw, qtype, rng.standard_normal((n_tok, 256)).astype(np.float32))
    # the grouped decode driver (several matrices in one call)
    from refimpl.kernels import drivers
    drivers.matmul_group([quant.WeightMatrix(raw, qtype)] * 2, rng.standard_normal((1, 256)).astype(np.float32))
from numba.core.dispatcher import Dispatcher
from refimpl.kernels import drivers, intdot
compiled = [d for d in list(drivers._DRIVERS.values()) + list(intdot._FOLDERS.values()) if isinstance(d, Dispatcher)]
print("driver cache misses", sum(sum(d.stats.cache_misses.values()) for d in compiled), "of", len(compiled))
print("ok")
"""


def _snapshot(cache_dir: Path) -> dict:
    return {str(p.relative_to(cache_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in cache_dir.rglob("*") if p.is_file()}


def _run(cache_dir: Path) -> str:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), REFIMPL_KERNELS="fast")
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
    return out.stdout


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="tests numba's on-disk cache")
def test_second_process_saves_nothing_to_the_numba_cache(tmp_path):
    cache_dir = tmp_path / "numba-cache"
    cache_dir.mkdir()
    _run(cache_dir)
    first = _snapshot(cache_dir)
    assert any(name.endswith(".nbc") for name in first), "the first run cached nothing"
    report = _run(cache_dir)
    second = _snapshot(cache_dir)
    added = sorted(set(second) - set(first))
    changed = sorted(k for k in first if k in second and first[k] != second[k])
    assert not added and not changed, f"the second run saved to the cache: new {added}, rewritten {changed}"
    # and compiled none of the fast layer's drivers again (a function numba refuses to cache, e.g. one holding a
    # ctypes pointer, saves nothing either: it is compiled in every process)
    assert "driver cache misses 0 of" in report, report
