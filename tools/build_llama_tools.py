#!/usr/bin/env python3
"""Build the pinned llama.cpp's command-line tools (llama-quantize, llama-imatrix, llama-perplexity).

    python tools/build_llama_tools.py                 # scalar build (the golden oracle) -> build/llama-tools-scalar
    python tools/build_llama_tools.py --simd          # native SIMD build (for benchmarks) -> build/llama-tools-simd
    python tools/build_llama_tools.py --check DIR     # is DIR/bin a scalar build of the tools? (exit 1 if not)
    python tools/build_llama_tools.py --print-cmake   # show the cmake commands, run nothing

The source is the llama.cpp vendored in llama-cpp-python==0.3.36: ``vendor/llama.cpp`` (a link to the sdist's
``vendor/llama.cpp``, see the README), or ``--source DIR``.  The scalar flags are the ones every golden pins
(``-DGGML_NATIVE=OFF`` and every x86 SIMD extension off); shared libraries, no curl, no tests/examples/server.
About 10 minutes on 2 cores.  Other tools find the binaries with ``tool_path(name)``: ``$REFIMPL_LLAMA_TOOLS``
(a folder holding the binaries) if set, else ``build/llama-tools-scalar/bin``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("llama-quantize", "llama-perplexity", "llama-imatrix")
SCALAR_FLAGS = ("-DGGML_NATIVE=OFF", "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_AVX512=OFF", "-DGGML_FMA=OFF",
                "-DGGML_F16C=OFF", "-DGGML_SSE42=OFF", "-DGGML_BMI2=OFF", "-DGGML_AVX_VNNI=OFF")
SIMD_FLAGS = ("-DGGML_NATIVE=ON",)
COMMON_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TOOLS=ON")
DEFAULT_DIRS = {"scalar": ROOT / "build" / "llama-tools-scalar", "simd": ROOT / "build" / "llama-tools-simd"}
SCALAR_CACHE_VALUES = {"GGML_NATIVE": "OFF", "GGML_AVX": "OFF", "GGML_AVX2": "OFF", "GGML_AVX512": "OFF",
                       "GGML_FMA": "OFF", "GGML_F16C": "OFF", "GGML_SSE42": "OFF", "GGML_BMI2": "OFF",
                       "GGML_AVX_VNNI": "OFF"}


def cmake_commands(source: Path, build: Path, simd: bool, jobs: int) -> list[list[str]]:
    flags = COMMON_FLAGS + (SIMD_FLAGS if simd else SCALAR_FLAGS)
    return [["cmake", "-S", str(source), "-B", str(build), *flags],
            ["cmake", "--build", str(build), f"-j{jobs}", "--target", *TARGETS]]


def cmake_cache(build: Path) -> dict[str, str]:
    values = {}
    cache = build / "CMakeCache.txt"
    if cache.exists():
        for line in cache.read_text(errors="replace").splitlines():
            if ":" in line and "=" in line and not line.startswith(("//", "#")):
                key, rest = line.split(":", 1)
                values[key] = rest.split("=", 1)[1]
    return values


def is_scalar_build(build: Path) -> bool:
    """True when ``build`` was configured with every SIMD flag off and has the three tools in bin/."""
    cache = cmake_cache(build)
    return (all(cache.get(k) == v for k, v in SCALAR_CACHE_VALUES.items())
            and all((build / "bin" / t).exists() for t in TARGETS))


def tool_path(name: str) -> Path:
    """Where a built tool is: $REFIMPL_LLAMA_TOOLS/<name>, else build/llama-tools-scalar/bin/<name>."""
    folder = os.environ.get("REFIMPL_LLAMA_TOOLS")
    path = Path(folder) / name if folder else DEFAULT_DIRS["scalar"] / "bin" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the tools with `python tools/build_llama_tools.py` or "
                                f"point REFIMPL_LLAMA_TOOLS at a folder holding {name}")
    return path


def tool_env(path: Path) -> dict:
    """The environment to run a tool in: its own folder first on the shared-library path."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(Path(path).parent) + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH")
                                                       else "")
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--simd", action="store_true", help="native SIMD build instead of the scalar oracle build")
    ap.add_argument("--source", type=Path, default=ROOT / "vendor", help="llama.cpp source (default: vendor/)")
    ap.add_argument("--build-dir", type=Path, help="build folder (default: build/llama-tools-scalar or -simd)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--print-cmake", action="store_true", help="print the commands and exit")
    ap.add_argument("--check", type=Path, metavar="DIR", help="check that DIR is a scalar build of the tools")
    args = ap.parse_args()

    if args.check:
        ok = is_scalar_build(args.check)
        print(f"{args.check}: {'scalar build with ' + ', '.join(TARGETS) if ok else 'NOT a complete scalar build'}")
        return 0 if ok else 1
    build = args.build_dir or DEFAULT_DIRS["simd" if args.simd else "scalar"]
    cmds = cmake_commands(args.source.resolve(), build, args.simd, args.jobs)
    if args.print_cmake:
        print("\n".join(shlex.join(c) for c in cmds))
        return 0
    if not (args.source / "CMakeLists.txt").exists():
        print(f"error: {args.source} is not a llama.cpp source tree (see README: the pinned sdist's "
              f"vendor/llama.cpp)", file=sys.stderr)
        return 1
    build.mkdir(parents=True, exist_ok=True)
    for c in cmds:
        print("+", shlex.join(c), flush=True)
        with open(build / "build.log", "a") as log:
            r = subprocess.run(c, stdout=log, stderr=subprocess.STDOUT)
        if r.returncode:
            print(f"error: command failed (exit {r.returncode}); see {build / 'build.log'}", file=sys.stderr)
            return r.returncode
    print(f"BUILD_OK: {build / 'bin'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
