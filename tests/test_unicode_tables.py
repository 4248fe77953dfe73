"""refimpl/data/llama_unicode.npz (the tokenizers' code-point classes, case maps and one-code-point NFD) is byte for
byte what tools/extract_unicode_tables.py extracts from the pinned llama.cpp's src/unicode-data.cpp (fetched with
the sdist when there is no vendored checkout)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_unicode_tables_reproducible_from_c_source():
    import refimpl
    from sdist import llama_cpp_dir

    spec = importlib.util.spec_from_file_location("extract_unicode_tables",
                                                  ROOT / "tools" / "extract_unicode_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # puts tools/ on sys.path
    from goldens._io import npz_bytes
    shipped = (Path(refimpl.__file__).resolve().parent / "data" / "llama_unicode.npz").read_bytes()
    assert npz_bytes(mod.extract(llama_cpp_dir())) == shipped, "run tools/extract_unicode_tables.py"
