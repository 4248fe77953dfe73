"""golden/ holds exactly what MANIFEST.json lists, byte for byte."""
import hashlib

from conftest import GOLDEN


def test_every_golden_file_is_listed(manifest):
    listed = set(manifest["files"])
    present = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()}
    present -= {"MANIFEST.json", "README.md"}
    assert sorted(present - listed) == [], "files in golden/ that MANIFEST.json does not list"
    assert sorted(listed - present) == [], "files MANIFEST.json lists that are missing from golden/"


def test_every_sha256_matches(manifest):
    bad = []
    for rel, entry in manifest["files"].items():
        data = (GOLDEN / rel).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["bytes"]:
            bad.append(rel)
    assert bad == []


def test_manifest_records_provenance(manifest):
    oracle = manifest["oracle"]
    assert oracle["llama_cpp_python"] == "0.3.36"
    assert oracle["scalar_build"] is True
    assert not any(oracle["ggml_simd_features"].values())
    for rel, entry in manifest["files"].items():
        assert entry["description"], rel
        assert entry["command"].startswith("python tools/make_golden.py"), rel
        assert entry["family"] in manifest["families"], rel


def test_golden_stays_lean(manifest):
    total = sum(e["bytes"] for e in manifest["files"].values())
    assert total < 30 * 1024 * 1024, f"golden/ is {total / 2**20:.1f} MiB; the budget is 30 MiB"
