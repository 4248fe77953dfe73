"""Hugging Face checkpoint -> GGUF, byte for byte as the pinned llama.cpp's ``convert_hf_to_gguf.py``, without torch
or transformers.

    >>> from refimpl import convert
    >>> convert.convert("path/to/hf_model", "model-f16.gguf", outtype="f16")     # -> Path of the file written
    >>> buf = convert.convert_to_bytes("path/to/hf_model", outtype="f32")           # the same file, in memory
    >>> m = refimpl.model.load("path/to/hf_model")                                  # converts in memory, runs

CLI: ``python -m refimpl.convert HF_DIR [--outfile OUT.gguf] [--outtype f32|f16|bf16|q8_0|tq1_0|tq2_0|auto]
[--vocab-only] [--use-temp-file] [--model-name NAME] [--metadata FILE]``.

Reading order: ``convert`` / ``build`` here (the script's ``main`` -> ``ModelBase.__init__`` -> ``write``),
``checkpoint.py`` (config and safetensors), ``archs/base.py`` then one ``archs/<family>.py`` (tensor names,
hyperparameters), ``tensors.py`` (types and quantization), ``vocab.py`` (tokenizer), ``metadata.py``
(general.*), ``gguf_out.py`` (file layout).  spec/convert.md describes it all.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from . import metadata as metadata_mod
from .archs import model_class, supported
from .checkpoint import Checkpoint
from .gguf_out import GGUFOutput
from .tensors import FILE_TYPES, GGML_TYPE_IDS, OUTTYPES, convert_data, nbytes, tensor_type

__all__ = ["convert", "convert_to_bytes", "build", "model_file", "supported", "OUTTYPES", "Conversion"]

log = logging.getLogger("refimpl.convert")
GGML_QUANT_VERSION = 2


class Conversion:
    """A planned conversion: metadata complete, tensors planned (name, type, shape) but not yet read."""

    def __init__(self, out: GGUFOutput, plan: list, outtype: str, fname_out: Path, vocab_only: bool):
        self.out = out
        self.plan = plan                  # [(gguf name, ggml type name, shape, loader)]
        self.outtype = outtype            # resolved (never "auto")
        self.fname_out = fname_out
        self.vocab_only = vocab_only

    def materialize(self, progress: bool = False) -> None:
        """Read, transform and convert every tensor into the output (the memory of the whole file)."""
        for name, qtype, shape, load in self._iter(progress):
            self.out.tensors[name] = (GGML_TYPE_IDS[qtype], shape, convert_data(load(), qtype))

    def _iter(self, progress):
        if not progress:
            yield from self.plan
            return
        from tqdm import tqdm
        total = sum(nbytes(shape, qtype) for _, qtype, shape, _ in self.plan)
        with tqdm(total=total, unit="B", unit_scale=True, desc="Writing", file=sys.stderr) as bar:
            for item in self.plan:
                yield item
                bar.update(nbytes(item[2], item[1]))

    def summary(self) -> str:
        by_type: dict[str, list[int]] = {}
        for _, qtype, shape, _ in self.plan:
            e = by_type.setdefault(qtype, [0, 0])
            e[0] += 1
            e[1] += nbytes(shape, qtype)
        total = sum(v[1] for v in by_type.values())
        parts = ", ".join(f"{t}: {n} tensors, {b / 1e6:.2f} MB" for t, (n, b) in sorted(by_type.items()))
        return f"{len(self.plan)} tensors, {total / 1e6:.2f} MB of tensor data ({parts})"


def _resolve_outtype(ckpt: Checkpoint, model, outtype: str) -> str:
    """``--outtype auto``: the first stored tensor of >= 2 dimensions in BF16 or F16 decides; else F16."""
    if outtype != "auto":
        return outtype
    for name, ref in ckpt.tensors.items():
        if model.filter_tensor_name(name) is None or len(ref.shape) < 2:
            continue
        if ref.dtype == "BF16":
            return "bf16"
        if ref.dtype == "F16":
            return "f16"
    return "f16"


def build(hf_dir, outfile=None, outtype: str = "auto", *, vocab_only: bool = False, model_name: str | None = None,
          metadata: str | Path | None = None) -> Conversion:
    """Plan the conversion of ``hf_dir``: the script's ModelBase.__init__, prepare_tensors and prepare_metadata."""
    if outtype not in OUTTYPES:
        raise ValueError(f"outtype must be one of {', '.join(OUTTYPES)}, not {outtype!r}")
    ckpt = Checkpoint(hf_dir)
    archs = ckpt.hparams.get("architectures")
    if not archs:
        raise ValueError(f"{ckpt.dir}/config.json: no 'architectures' entry; supported: {', '.join(supported())}")
    cls = model_class(archs[0])
    model = cls(ckpt, outtype)
    outtype = _resolve_outtype(ckpt, model, outtype)
    model.outtype = outtype
    model.file_type = FILE_TYPES[outtype][0]
    out = GGUFOutput(model.arch)

    plan = []
    if not vocab_only:
        for gname, shape, load, _src in model.planned_tensors(out):
            qtype = tensor_type(gname, shape, outtype, always_f32=model.tensor_is_always_f32(gname),
                                is_embedding_or_output=model.tensor_is_embedding_or_output(gname))
            plan.append((gname, qtype, tuple(shape), load))
            out.tensors[gname] = (GGML_TYPE_IDS[qtype], tuple(shape), None)

    # prepare_metadata
    total = sum(_numel(shape) for _, _, shape, _ in plan)
    md = metadata_mod.load(ckpt.dir, model_name, total, Path(metadata) if metadata else None)
    md.setdefault("name", ckpt.dir.name)
    if md.get("size_label") is None and total > 0:
        md["size_label"] = metadata_mod.size_label(total, total, 0, 0)
    out.add_string("general.type", "model")
    metadata_mod.write(md, out)
    model.set_gguf_parameters(out)
    out.add_uint32("general.quantization_version", GGML_QUANT_VERSION)
    output_type = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "tq1_0": "TQ1_0",
                   "tq2_0": "TQ2_0"}[outtype]
    target = Path(outfile) if outfile is not None else ckpt.dir
    if target.is_dir():
        if not vocab_only:
            default = metadata_mod.naming_convention(md.get("name"), md.get("basename"), md.get("finetune"),
                                                     md.get("version"), md.get("size_label"), output_type)
        else:
            default = metadata_mod.naming_convention(md.get("name"), md.get("basename"), md.get("finetune"),
                                                     md.get("version"), None, None, model_type="vocab")
        fname_out = target / f"{default}.gguf"
    else:
        fname_out = target.parent / metadata_mod.fill_templated_filename(target.name, output_type)
    model.set_vocab(out)
    return Conversion(out, plan, outtype, fname_out, vocab_only)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def convert(hf_dir, outfile=None, outtype: str = "auto", *, vocab_only: bool = False, use_temp_file: bool = False,
            model_name: str | None = None, metadata: str | Path | None = None, progress: bool = True) -> Path:
    """Convert a Hugging Face checkpoint folder to a GGUF file; returns the path written.  ``outfile`` defaults to
    a name made from the model's metadata inside ``hf_dir``; ``{ftype}`` in it is replaced by the outtype.  The
    file is written to a temporary name next to the target and renamed at the end."""
    conv = build(hf_dir, outfile, outtype, vocab_only=vocab_only, model_name=model_name, metadata=metadata)
    out = conv.out
    if vocab_only:
        out.tensors.clear()
    log.info("%s: %s", conv.fname_out, conv.summary())

    def tensors_in_order():
        for name, qtype, shape, load in conv._iter(progress):
            yield name, convert_data(load(), qtype)

    out.write(conv.fname_out, streamed=None if vocab_only else tensors_in_order(), use_temp_file=use_temp_file,
              vocab_only=vocab_only)
    return conv.fname_out


def convert_to_bytes(hf_dir, outtype: str = "auto", *, model_name: str | None = None) -> bytearray:
    """The GGUF file ``convert`` would write, as bytes in memory (nothing written to disk)."""
    conv = build(hf_dir, None, outtype, model_name=model_name)
    conv.materialize()
    return conv.out.to_bytes()


def model_file(hf_dir, outtype: str = "auto"):
    """A ``refimpl.model.ModelFile`` over the in-memory conversion of ``hf_dir`` (what ``refimpl.model.load``
    uses when given a folder)."""
    from ..gguf import read_bytes
    from ..model import ModelFile

    class InMemoryModelFile(ModelFile):
        def __init__(self, path, gguf_file):        # noqa: D401 - ModelFile without a file on disk
            self.path = str(path)
            self.gguf = gguf_file
            self.arch = gguf_file.get("general.architecture")

    return InMemoryModelFile(Path(hf_dir), read_bytes(convert_to_bytes(hf_dir, outtype)))
