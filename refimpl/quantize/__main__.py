"""``python -m refimpl.quantize [options] IN.gguf [OUT.gguf] FTYPE [NTHREADS]``: llama-quantize's command line.

Options come first, as in tools/quantize/quantize.cpp (every argument starting with ``--`` before the input
path); their names and meanings are llama-quantize's.  refimpl adds ``--verbose`` (per-tensor lines like
llama-quantize's log), ``--no-progress`` and ``--plugin FILE.py`` (loads a Python file that registers extra quant
types with refimpl.quant before the arguments are resolved).  ``--keep-split`` and ``--max-buffer-size`` are not
supported (refimpl writes one file and streams tensors in bounded slabs): a clear error.
"""
from __future__ import annotations

import os
import sys

USAGE = """\
usage: python -m refimpl.quantize [--help] [--allow-requantize] [--leave-output-tensor] [--pure] [--imatrix]
       [--include-weights] [--exclude-weights] [--output-tensor-type] [--token-embedding-type] [--tensor-type]
       [--tensor-type-file] [--prune-layers] [--override-kv] [--dry-run] [--verbose] [--no-progress]
       [--plugin FILE.py] model-f32.gguf [model-quant.gguf] type [nthreads]

  --allow-requantize          allow requantizing tensors that have already been quantized
                              WARNING: this can severely reduce quality compared to quantizing from 16bit or 32bit!
  --leave-output-tensor       leave output.weight un(re)quantized
  --pure                      disable k-quant mixtures and quantize all tensors to the same type
  --imatrix file_name         use data in file_name (GGUF or legacy .dat) as importance matrix
  --include-weights tensor_name   use importance matrix for this/these tensor(s)
  --exclude-weights tensor_name   do not use importance matrix for this/these tensor(s)
  --output-tensor-type ggml_type  use this ggml_type for the output.weight tensor
  --token-embedding-type ggml_type  use this ggml_type for the token embeddings tensor
  --tensor-type tensor_name=ggml_type  quantize tensors matching this regex (std::regex_search semantics, the
                              name lowercased) to this ggml_type; may be given several times, first match wins
  --tensor-type-file tensor_types.txt  the same, NAME=TYPE entries separated by spaces or newlines
  --prune-layers L0,L1,L2...  comma-separated list of layer numbers to prune from the model
  --override-kv KEY=TYPE:VALUE  override model metadata by key in the quantized model (int, float, bool, str)
  --dry-run                   calculate and show the final quantization size without performing quantization
  --verbose                   one line per tensor (name, shape, old -> new type, size), as llama-quantize logs
  --no-progress               no progress bar
  --plugin FILE.py            load a Python file that registers quant types (refimpl.quant.register)
  --keep-split, --max-buffer-size   not supported by refimpl (error)

note: --include-weights and --exclude-weights cannot be used together

-----------------------------------------------------------------------------
 allowed quantization types
-----------------------------------------------------------------------------

"""

#: hooks run for ``--plugin FILE.py`` (issue 16 registers its loader here); each gets the file path
PLUGIN_LOADERS: list = []


def load_plugin(path: str) -> None:
    """Run a plugin file (it registers its quant types with refimpl.quant when executed)."""
    if PLUGIN_LOADERS:
        for loader in PLUGIN_LOADERS:
            loader(path)
        return
    from ..quant import load_plugin as load_quant_plugin      # a file or a module name (spec/plugins.md)
    load_quant_plugin(path)


class UsageError(ValueError):
    pass


def _usage_text() -> str:
    from .ftypes import usage_table
    return USAGE + usage_table() + "\n"


def parse_args(argv: list[str]) -> dict:
    """The argument loop of llama_quantize (tools/quantize/quantize.cpp)."""
    from . import parse_override_kv, parse_tensor_type, default_output_path
    from .ftypes import try_parse_ftype

    if len(argv) < 2:
        raise UsageError("too few arguments")
    opts = dict(imatrix=None, allow_requantize=False, leave_output_tensor=False, pure=False, include_weights=[],
                exclude_weights=[], output_tensor_type=None, token_embedding_type=None, tensor_types=[],
                override_kv=[], prune_layers=None, dry_run=False, verbose=False, progress=True)
    i = 0

    def value(flag):
        nonlocal i
        if i >= len(argv) - 1:
            raise UsageError(f"{flag} needs a value")
        i += 1
        return argv[i]

    while i < len(argv) and argv[i].startswith("--"):
        a = argv[i]
        if a == "--leave-output-tensor":
            opts["leave_output_tensor"] = True
        elif a == "--output-tensor-type":
            opts["output_tensor_type"] = _ggml_type(value(a))
        elif a == "--token-embedding-type":
            opts["token_embedding_type"] = _ggml_type(value(a))
        elif a == "--tensor-type":
            opts["tensor_types"].append(parse_tensor_type(value(a)))
        elif a == "--tensor-type-file":
            fn = value(a)
            try:
                with open(fn) as fh:
                    words = fh.read().split()
            except OSError as e:
                raise UsageError(f"failed to open file {fn!r}: {e.strerror}") from None
            opts["tensor_types"].extend(parse_tensor_type(w) for w in words)
        elif a == "--prune-layers":
            opts["prune_layers"] = _parse_layer_prune(value(a))
        elif a == "--override-kv":
            opts["override_kv"].append(parse_override_kv(value(a)))
        elif a == "--dry-run":
            opts["dry_run"] = True
        elif a == "--allow-requantize":
            opts["allow_requantize"] = True
        elif a == "--pure":
            opts["pure"] = True
        elif a == "--imatrix":
            opts["imatrix"] = value(a)
        elif a == "--include-weights":
            opts["include_weights"].append(value(a))
        elif a == "--exclude-weights":
            opts["exclude_weights"].append(value(a))
        elif a == "--verbose":
            opts["verbose"] = True
        elif a == "--no-progress":
            opts["progress"] = False
        elif a == "--plugin":
            load_plugin(value(a))
        elif a in ("--keep-split", "--max-buffer-size"):
            raise ValueError(f"{a} is not supported by refimpl.quantize: it writes one output file and streams "
                             f"tensors in bounded slabs (use llama-quantize for split output)")
        elif a == "--help":
            raise UsageError("")
        else:
            raise UsageError(f"unknown option {a}")
        i += 1

    if len(argv) - i < 2:
        raise UsageError("bad arguments")
    if opts["include_weights"] and opts["exclude_weights"]:
        raise UsageError("--include-weights and --exclude-weights cannot be used together")

    src = argv[i]
    i += 1
    ft = try_parse_ftype(argv[i])
    if ft is not None:
        # <input> <ftype>: export as [input path]/ggml-model-<ftype>.gguf
        dst = None if opts["dry_run"] else default_output_path(src, ft.name)
        i += 1
    else:
        dst = argv[i]
        i += 1
        if len(argv) <= i:
            raise ValueError("missing ftype")
        ft = try_parse_ftype(argv[i])
        if ft is None:
            from .ftypes import resolve_ftype
            resolve_ftype(argv[i])      # raises with the list of choices
        i += 1
    nthread = None
    if len(argv) > i:
        from .ftypes import _stoi_prefix
        nthread = _stoi_prefix(argv[i])
        if nthread is None:
            raise ValueError(f"invalid nthread {argv[i]!r}")
    return dict(src=src, dst=dst, ftype=ft, nthread=nthread, **opts)


def _ggml_type(s: str) -> str:
    from .ftypes import parse_ggml_type
    try:
        return parse_ggml_type(s)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _parse_layer_prune(data: str) -> list[int]:
    """parse_layer_prune: comma-separated non-negative ids (std::stoi), sorted and deduplicated."""
    from .ftypes import _stoi_prefix
    ids = []
    for part in data.split(","):
        v = _stoi_prefix(part)
        if v is None or v < 0:
            raise UsageError(f"invalid layer id {part!r}")
        ids.append(v)
    return sorted(set(ids))


def main(argv: list[str] | None = None) -> int:
    from . import quantize_model

    argv = sys.argv[1:] if argv is None else argv
    try:
        a = parse_args(argv)
    except UsageError as e:
        if str(e):
            print(f"error: {e}\n", file=sys.stderr)
        print(_usage_text(), file=sys.stderr, end="")
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    src, dst, ft = a.pop("src"), a.pop("dst"), a.pop("ftype")
    what = f"calculating quantization size for '{src}' as {ft.name}" if a["dry_run"] else \
        f"quantizing '{src}' to '{dst}' as {ft.name}"
    print(what + (f" using {a['nthread']} threads" if a["nthread"] and a["nthread"] > 0 else ""), file=sys.stderr)
    try:
        r = quantize_model(src, dst, ft, **a)
    except KeyboardInterrupt:
        print("\ninterrupted: nothing written", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        print(f"error: failed to quantize: {e}", file=sys.stderr)
        return 1
    if not a["verbose"]:
        print(r.summary(), file=sys.stderr)
    if r.n_fallback and not a["verbose"]:
        print(f"WARNING: {r.n_fallback} tensor(s) required fallback quantization", file=sys.stderr)
    print(f"quantize time = {r.seconds * 1000:8.2f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
