"""refimpl.imatrix_file: the formats' edge cases and errors.  (Byte-for-byte agreement with llama-imatrix's writer
is checked against golden/quantize_model/cases.json in test_quantize_golden.py.)"""
import struct

import numpy as np
import pytest

from refimpl.gguf import GGUFValue, GGUFValueType as T, write
from refimpl.imatrix_file import Imatrix, ImatrixEntry, imatrix_for_quantize, read_imatrix, write_imatrix


def _imatrix():
    return Imatrix({"b.weight": ImatrixEntry(np.arange(8, dtype=np.float32).reshape(2, 4) + 1, [1024.0, 0.0]),
                    "a.weight": ImatrixEntry(np.full((1, 4), 3.0, np.float32), [512.0])},
                   ["one.txt", "two.txt"], 2, 512)


def test_gguf_roundtrip_and_normalisation(tmp_path):
    write_imatrix(tmp_path / "i.gguf", _imatrix())
    back = read_imatrix(tmp_path / "i.gguf")
    assert list(back.entries) == ["a.weight", "b.weight"]           # written in name order, read in file order
    assert back.datasets == ["one.txt", "two.txt"] and back.chunk_count == 2 and back.chunk_size == 512
    q = imatrix_for_quantize(back)
    np.testing.assert_array_equal(q["a.weight"], np.full(4, np.float32(3.0) / np.float32(512.0)))
    # expert 0: sums / 1024; expert 1 has count 0: ones
    np.testing.assert_array_equal(q["b.weight"][:4], (np.arange(4, dtype=np.float32) + 1) / np.float32(1024.0))
    np.testing.assert_array_equal(q["b.weight"][4:], np.ones(4, np.float32))


def test_legacy_roundtrip(tmp_path):
    write_imatrix(tmp_path / "i.dat", _imatrix(), fmt="dat")
    back = read_imatrix(tmp_path / "i.dat")
    assert back.is_legacy and back.chunk_count == 2 and back.datasets == ["two.txt"]   # the last dataset
    q = imatrix_for_quantize(back)
    # ncall = ceil(1024 / 512) = 2; stored (sum / count) * ncall, read back / ncall
    np.testing.assert_array_equal(q["b.weight"][:4], ((np.arange(4, dtype=np.float32) + 1) / np.float32(1024.0))
                                  * np.float32(2) / np.float32(2))
    np.testing.assert_array_equal(q["b.weight"][4:], np.ones(4, np.float32))


def test_legacy_without_trailer(tmp_path):
    raw = struct.pack("<i", 1) + struct.pack("<i", 3) + b"abc" + struct.pack("<ii", 4, 2) + struct.pack("<2f", 8, 4)
    (tmp_path / "x.dat").write_bytes(raw)
    im = read_imatrix(tmp_path / "x.dat")
    assert im.chunk_count == 0 and im.datasets == []
    np.testing.assert_array_equal(imatrix_for_quantize(im)["abc"], np.array([2, 1], np.float32))


@pytest.mark.parametrize("raw, message", [
    (b"", "not an imatrix file"),
    (struct.pack("<i", 0), "not an imatrix file"),
    (struct.pack("<i", 1) + struct.pack("<i", 3) + b"ab", "not an imatrix file"),
    (struct.pack("<i", 1) + struct.pack("<i", 1) + b"a" + struct.pack("<ii", 1, 0), "not an imatrix file"),
])
def test_bad_legacy_files(tmp_path, raw, message):
    (tmp_path / "bad.dat").write_bytes(raw)
    with pytest.raises(ValueError, match=message):
        read_imatrix(tmp_path / "bad.dat")


def test_gguf_mismatched_pairs(tmp_path):
    meta = {"imatrix.datasets": GGUFValue(T.ARRAY, ["d"], T.STRING), "imatrix.chunk_count": GGUFValue(T.UINT32, 1),
            "imatrix.chunk_size": GGUFValue(T.UINT32, 512)}
    write(tmp_path / "a.gguf", meta, {"x.weight.in_sum2": np.ones((1, 4), np.float32)})
    with pytest.raises(ValueError, match="mismatched sums and counts for x.weight"):
        read_imatrix(tmp_path / "a.gguf")
    write(tmp_path / "b.gguf", meta, {"x.weight.in_sum2": np.ones((1, 4), np.float16),
                                      "x.weight.counts": np.ones((1, 1), np.float32)})
    with pytest.raises(ValueError, match="must be F32"):
        read_imatrix(tmp_path / "b.gguf")


def test_gguf_without_metadata_is_refused_by_quantize(tmp_path):
    from conftest import GOLDEN
    from refimpl.quantize import quantize_model

    write(tmp_path / "m.gguf", {}, {"blk.0.attn_q.weight.in_sum2": np.ones((1, 64), np.float32),
                                   "blk.0.attn_q.weight.counts": np.ones((1, 1), np.float32)})
    assert not read_imatrix(tmp_path / "m.gguf").has_metadata
    with pytest.raises(ValueError, match="missing imatrix metadata"):
        quantize_model(GOLDEN / "model" / "llama-F32.gguf", tmp_path / "o.gguf", "IQ4_XS",
                       imatrix=tmp_path / "m.gguf", progress=False)
    assert not (tmp_path / "o.gguf").exists()


def test_write_is_atomic_and_dat_needs_chunk_size(tmp_path):
    im = _imatrix()
    im.chunk_size = 0
    with pytest.raises(ValueError, match="chunk_size"):
        write_imatrix(tmp_path / "i.dat", im, fmt="dat")
    assert list(tmp_path.iterdir()) == []
