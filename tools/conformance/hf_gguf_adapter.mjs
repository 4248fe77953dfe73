#!/usr/bin/env node
// @huggingface/gguf (npm; the GGUF parser of huggingface.js, used by the Hugging Face Hub) behind the conformance
// kit's command-line protocol (spec/conformance.md). Only the `gguf` operation: metadata and tensor infos.
//
//   (cd tools/conformance && npm install)
//   python -m refimpl.conformance run --ops gguf --impl "node tools/conformance/hf_gguf_adapter.mjs"
//
// For each GGUF path in LIST.txt one JSON line: {accepted, version, alignment, data_offset, n_kv, tensors:
// [{type, shape}]} from gguf(path, {allowLocalFile: true}), or {accepted: false, error} when it throws.
// The library exposes no alignment field: general.alignment when present, else GGUF's default 32.
import { readFileSync, writeFileSync } from "node:fs";
import { gguf } from "@huggingface/gguf";

const [op, list, out] = process.argv.slice(2);
if (op !== "gguf") {
  console.error(`hf_gguf adapter: unsupported operation ${op}`);
  process.exit(3);
}
const toNum = (v) => (typeof v === "bigint" ? Number(v) : v);
const lines = [];
for (const path of readFileSync(list, "utf8").split("\n").filter((p) => p.length)) {
  let ans;
  try {
    const r = await gguf(path, { allowLocalFile: true });
    const md = r.metadata;
    const align = md["general.alignment"];
    ans = {
      accepted: true,
      version: toNum(md.version),
      alignment: align === undefined ? 32 : toNum(align),
      data_offset: toNum(r.tensorDataOffset),
      n_kv: toNum(md.kv_count),
      tensors: r.tensorInfos.map((t) => ({ type: toNum(t.dtype), shape: t.shape.map(toNum) })),
    };
  } catch (e) {
    ans = { accepted: false, error: String(e && e.message ? e.message : e).slice(0, 300) };
  }
  lines.push(JSON.stringify(ans));
}
writeFileSync(out, lines.join("\n") + "\n");
