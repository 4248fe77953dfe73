"""``general.*`` metadata as gguf-py's ``Metadata`` derives it (gguf-py/gguf/metadata.py, utility.py): sampling
defaults from generation_config.json, the model name and its parts guessed from the model card, config.json's
``_name_or_path`` and the folder name, then ``--metadata`` overrides and ``--model-name``.

The model card's YAML front matter is read with PyYAML when it is installed (the script needs it); without it a
card with front matter is ignored with a warning, which can change general.* keys.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger("refimpl.convert")

SAMPLING = (("sequence", "general.sampling.sequence", "str"), ("top_k", "general.sampling.top_k", "i32"),
            ("top_p", "general.sampling.top_p", "f32"), ("min_p", "general.sampling.min_p", "f32"),
            ("xtc_probability", "general.sampling.xtc_probability", "f32"),
            ("xtc_threshold", "general.sampling.xtc_threshold", "f32"),
            ("temp", "general.sampling.temp", "f32"), ("penalty_last_n", "general.sampling.penalty_last_n", "i32"),
            ("penalty_repeat", "general.sampling.penalty_repeat", "f32"),
            ("mirostat", "general.sampling.mirostat", "i32"), ("mirostat_tau", "general.sampling.mirostat_tau", "f32"),
            ("mirostat_eta", "general.sampling.mirostat_eta", "f32"))
GEN_CONFIG_KEYS = {"sequence": "sequence", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
                   "xtc_probability": "xtc_probability", "xtc_threshold": "xtc_threshold", "temp": "temperature",
                   "penalty_last_n": "penalty_last_n", "mirostat": "mirostat", "mirostat_tau": "mirostat_tau",
                   "mirostat_eta": "mirostat_eta"}
AUTHORSHIP = ("name", "author", "version", "organization", "finetune", "basename", "description", "quantized_by",
              "size_label", "license_name", "license_link", "url", "doi", "uuid", "repo_url", "source_url",
              "source_doi", "source_uuid", "source_repo_url")


def model_weight_count_rounded_notation(n: int, min_digits: int = 2) -> str:
    if n > 1e12:
        scaled, suffix = n * 1e-12, "T"
    elif n > 1e9:
        scaled, suffix = n * 1e-9, "B"
    elif n > 1e6:
        scaled, suffix = n * 1e-6, "M"
    else:
        scaled, suffix = n * 1e-3, "K"
    fix = max(min_digits - len(str(round(scaled)).lstrip("0")), 0)
    return f"{scaled:.{fix}f}{suffix}"


def size_label(total: int, shared: int, expert: int, expert_count: int) -> str:
    if expert_count > 0:
        return f"{expert_count}x{model_weight_count_rounded_notation(abs(shared) + abs(expert))}"
    return model_weight_count_rounded_notation(abs(total))


def naming_convention(name, basename, finetune, version, size, output_type, model_type=None) -> str:
    if basename is not None:
        n = basename.strip().replace(" ", "-").replace("/", "-")
    elif name is not None:
        n = name.strip().replace(" ", "-").replace("/", "-")
    else:
        n = "ggml-model"
    parts = [n]
    if size is not None:
        parts.append(size)
    if finetune is not None:
        parts.append(finetune.strip().replace(" ", "-"))
    if version is not None:
        parts.append(version.strip().replace(" ", "-"))
    if output_type is not None:
        parts.append(output_type.strip().replace(" ", "-").upper())
    if model_type is not None:
        parts.append(model_type.strip().replace(" ", "-"))
    return "-".join(parts)


def fill_templated_filename(filename: str, output_type: str | None) -> str:
    lower = output_type.lower() if output_type is not None else ""
    upper = output_type.upper() if output_type is not None else ""
    return filename.format(lower, outtype=lower, ftype=lower, OUTTYPE=upper, FTYPE=upper)


def id_to_title(s: str) -> str:
    return " ".join(w.title() if w.islower() and not re.match(r"^(v\d+(?:\.\d+)*|\d.*)$", w) else w
                    for w in s.strip().replace("-", " ").split())


def get_model_id_components(model_id: str | None, total_params: int = 0):
    """Metadata.get_model_id_components: (full name, org, basename, finetune, version, size label)."""
    if model_id is None:
        return None, None, None, None, None, None
    if " " in model_id:
        return model_id, None, None, None, None, None
    if "/" in model_id:
        org, full = model_id.split("/", 1)
    else:
        org, full = None, model_id
    if org is not None and len(org) > 0 and org[0] == ".":
        org = None
    parts = [p for p in full.split("-") if p]
    types: list[set] = [set() for _ in parts]
    for i, part in enumerate(parts):
        if re.fullmatch(r"(v|iter)?\d+([.]\d+)*", part, re.IGNORECASE):
            types[i].add("version")
        elif re.fullmatch(r"i?q\d(_\w)*|b?fp?(16|32)", part, re.IGNORECASE):
            types[i].add("type")
            parts[i] = part.upper()
        elif i > 0 and re.fullmatch(r"(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)", part,
                                    re.IGNORECASE):
            part = part.replace("_", ".")
            if part[-1].isdecimal():
                part = part[:-2] + "." + part[-1] + part[-2]
            if len(part) > 1 and part[-2].isdecimal():
                if part[-1] in "kmbt":
                    part = part[:-1] + part[-1].upper()
            if total_params != 0:
                try:
                    label_params = float(part[:-1]) * pow(1000, " KMBT".find(part[-1]))
                    if (total_params < 0 and label_params < abs(total_params) // 8) or (
                            total_params > 0 and abs(label_params - total_params) > 7 * total_params // 8):
                        types[i].add("finetune")
                        part = part[:-1] + part[-1].lower()
                except ValueError:
                    pass
            if len(types[i]) == 0:
                types[i].add("size_label")
            parts[i] = part
        elif i > 0 and re.fullmatch(r"chat|instruct|vision|lora", part, re.IGNORECASE):
            if total_params < 0 and part.lower() == "lora":
                types[i].add("type")
            else:
                types[i].add("finetune")
    if any(c.isdecimal() for n, t in zip(parts, types) if "size_label" in t for c in n):
        for n, t in zip(parts, types):
            if "size_label" in t and all(c.isalpha() for c in n):
                t.remove("size_label")
    at_start = True
    for part, t in zip(parts, types):
        if at_start and ((len(t) == 0 and part[0].isalpha()) or "version" in t):
            t.add("basename")
        else:
            if at_start:
                at_start = False
            if len(t) == 0:
                t.add("finetune")
    for part, t in zip(reversed(parts), reversed(types)):
        if "basename" in t and len(t) > 1:
            t.remove("basename")
        else:
            break
    basename = "-".join(n for n, t in zip(parts, types) if "basename" in t) or None
    size = "-".join(dict.fromkeys(s for s, t in zip(parts, types) if "size_label" in t).keys()) or None
    finetune = "-".join(f for f, t in zip(parts, types) if "finetune" in t) or None
    version = "-".join(v for v, t in zip(parts, types) if "version" in t and "basename" not in t) or None
    if size is None and finetune is None and version is None:
        basename = None
    return full, org, basename, finetune, version, size


def _load_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, OSError):
        return {}


def _load_model_card(model_dir: Path) -> dict:
    path = model_dir / "README.md"
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != "---":
        return {}
    yaml_lines = []
    for line in lines[1:]:
        if line == "---":
            break
        yaml_lines.append(line)
    content = ("\n".join(yaml_lines) + "\n").replace("- no\n", '- "no"\n').replace("\t", "  ")
    try:
        import yaml
    except ImportError:
        log.warning("%s has YAML front matter but PyYAML is not installed: model card metadata ignored", path)
        return {}
    data = yaml.safe_load(content)
    return data if isinstance(data, dict) else {}


def _base_entries(values, total_params, kind):
    out = []
    for mid in values:
        entry = {}
        if isinstance(mid, str):
            if mid.startswith(("http://", "https://", "ssh://")):
                entry["repo_url"] = mid
                if "huggingface.co" in mid:
                    m = re.match(r"https?://huggingface.co/([^/]+/[^/]+)$", mid)
                    if m:
                        full, org, _, _, version, _ = get_model_id_components(m.group(1), total_params)
                        if full is not None:
                            entry["name"] = id_to_title(full)
                        if org is not None:
                            entry["organization"] = id_to_title(org)
                        if version is not None:
                            entry["version"] = version
            else:
                full, org, _, _, version, _ = get_model_id_components(mid, total_params)
                if full is not None:
                    entry["name"] = id_to_title(full)
                if org is not None:
                    entry["organization"] = id_to_title(org)
                if version is not None:
                    entry["version"] = version
                if org is not None and full is not None:
                    entry["repo_url"] = f"https://huggingface.co/{org}/{full}"
        elif isinstance(mid, dict):
            entry = mid
        else:
            log.error("%s entry %r not in a known format", kind, mid)
        out.append(entry)
    return out


def load(model_dir: Path, model_name: str | None, total_params: int, override_path: Path | None = None) -> dict:
    """Metadata.load: a dict of the Metadata fields that are set."""
    md: dict = {}
    card = _load_model_card(model_dir)
    hf_params = _load_json(model_dir / "config.json")
    gen = _load_json(model_dir / "generation_config.json")

    def use(key, card_key):
        if card_key in card and md.get(key) is None:
            md[key] = card.get(card_key)

    def use_array(key, card_key):
        value = card.get(card_key)
        if value is None:
            return
        cur = md.get(key) or []
        if isinstance(value, str):
            cur.append(value)
        elif isinstance(value, list):
            cur.extend(value)
        md[key] = cur

    if card:
        for key in ("name", "author", "version", "organization", "description", "finetune", "basename",
                    "size_label"):
            use(key, key)
        for key, ck in (("source_url", "url"), ("source_doi", "doi"), ("source_uuid", "uuid"),
                        ("source_repo_url", "repo_url")):
            use(key, ck)
        for key in ("name", "author", "version", "organization", "description", "finetune", "basename",
                    "size_label"):
            use(key, "model_" + key)
        for key, ck in (("source_url", "model_url"), ("source_doi", "model_doi"), ("source_uuid", "model_uuid"),
                        ("source_repo_url", "model_repo_url")):
            use(key, ck)
        use("name", "model_name")
        use("author", "model_creator")
        use("basename", "model_type")
        if "base_model" in card or "base_models" in card or "base_model_sources" in card:
            v = card.get("base_model", card.get("base_models", card.get("base_model_sources", None)))
            vals = [v] if isinstance(v, str) else (list(v) if isinstance(v, list) else [])
            md["base_models"] = (md.get("base_models") or []) + _base_entries(vals, total_params, "base model")
        if "datasets" in card or "dataset" in card or "dataset_sources" in card:
            v = card.get("datasets", card.get("dataset", card.get("dataset_sources", None)))
            vals = [v] if isinstance(v, str) else (list(v) if isinstance(v, list) else [])
            md["datasets"] = (md.get("datasets") or []) + _base_entries(vals, total_params, "dataset")
        use("license", "license")
        use("license_name", "license_name")
        use("license_link", "license_link")
        use_array("tags", "tags")
        use_array("tags", "pipeline_tag")
        use_array("languages", "languages")
        use_array("languages", "language")

    def from_id(model_id):
        full, org, basename, finetune, version, size = get_model_id_components(model_id, total_params)
        for key, value in (("name", full and id_to_title(full)), ("organization", org and id_to_title(org)),
                           ("basename", basename), ("finetune", finetune), ("version", version),
                           ("size_label", size)):
            if md.get(key) is None and value is not None:
                md[key] = value

    name_or_path = hf_params.get("_name_or_path")
    if name_or_path is not None and name_or_path.count("/") <= 1:
        from_id(name_or_path)
    from_id(model_dir.name)

    for field, gkey in GEN_CONFIG_KEYS.items():
        if gkey in gen:
            md["sampling_" + field] = gen[gkey]
    if "penalty_repeat" in gen or "repetition_penalty" in gen:
        md["sampling_penalty_repeat"] = gen.get("penalty_repeat", gen.get("repetition_penalty"))

    override = _load_json(override_path) if override_path is not None else {}
    for field, key, _ in SAMPLING:
        if key in override:
            md["sampling_" + field] = override[key]
    for field in AUTHORSHIP:
        if "general." + field in override:
            md[field] = override["general." + field]
    for key in ("base_models", "datasets", "tags", "languages"):
        if "general." + key in override:
            md[key] = override["general." + key]
    if model_name is not None:
        md["name"] = model_name
    return {k: v for k, v in md.items() if v is not None}


def write(md: dict, w) -> None:
    """Metadata.set_gguf_meta_model."""
    for field, key, kind in SAMPLING:
        v = md.get("sampling_" + field)
        if v is None:
            continue
        if kind == "str":
            w.add_string(key, v)
        elif kind == "i32":
            w.add_int32(key, v)
        else:
            w.add_float32(key, v)
    w.add_string("general.name", md["name"])
    for field in ("author", "version", "organization", "finetune", "basename", "description", "quantized_by",
                  "size_label"):
        if md.get(field) is not None:
            w.add_string("general." + field, md[field])
    if md.get("license") is not None:
        lic = md["license"]
        w.add_string("general.license", ",".join(lic) if isinstance(lic, list) else lic)
    for field in ("license_name", "license_link", "url", "doi", "uuid", "repo_url", "source_url", "source_doi",
                  "source_uuid", "source_repo_url"):
        if md.get(field) is not None:
            w.add_string("general." + field, md[field])
    for kind, key in (("base_models", "base_model"), ("datasets", "dataset")):
        entries = md.get(kind)
        if entries is None:
            continue
        w.add_uint32(f"general.{key}.count", len(entries))
        for i, e in enumerate(entries):
            for field in ("name", "author", "version", "organization", "description", "url", "doi", "uuid",
                          "repo_url"):
                if field in e:
                    w.add_string(f"general.{key}.{i}.{field}", e[field])
    if md.get("tags") is not None:
        w.add_array("general.tags", md["tags"])
    if md.get("languages") is not None:
        w.add_array("general.languages", md["languages"])
