"""The oracle refuses SIMD builds (goldens pin the scalar path), and says how to install the right one."""
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import ggml_oracle  # noqa: E402


def _fake_oracle(simd: dict, version: str = ggml_oracle.PINNED_VERSION):
    o = ggml_oracle.Oracle.__new__(ggml_oracle.Oracle)
    o.simd = simd
    o.version = version
    return o


def test_simd_build_is_refused_with_install_instructions():
    o = _fake_oracle({"avx": 1, "avx2": 1, "fma": 1, "f16c": 1, "neon": 0})
    with pytest.raises(ggml_oracle.OracleError) as e:
        o.require_scalar()
    msg = str(e.value)
    assert "avx, avx2, fma, f16c" in msg
    assert "-DGGML_AVX2=OFF" in msg and "llama-cpp-python==0.3.36" in msg


def test_wrong_version_is_refused():
    with pytest.raises(ggml_oracle.OracleError, match="pinned to 0.3.36"):
        _fake_oracle({"avx": 0}, version="0.3.1").require_scalar()


def test_scalar_build_of_pinned_version_is_accepted():
    _fake_oracle({k: 0 for k in ggml_oracle.SIMD_PROBES}).require_scalar()
