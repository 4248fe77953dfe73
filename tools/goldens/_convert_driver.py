"""Runs the pinned convert_hf_to_gguf.py's own main() once per case inside ONE interpreter (importing torch and
transformers once instead of per case).  Executed by $REFIMPL_CONVERT_PYTHON from tools/goldens/convert.py:

    python _convert_driver.py CASES.json      # [[argv...], ...]; prints one line per case: OK or FAIL <reason>
"""
import json
import runpy
import sys
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "vendor"
sys.path.insert(0, str(VENDOR))
sys.path.insert(1, str(VENDOR / "gguf-py"))
script = runpy.run_path(str(VENDOR / "convert_hf_to_gguf.py"), run_name="convert_hf_to_gguf")
for argv in json.loads(Path(sys.argv[1]).read_text()):
    sys.argv = ["convert_hf_to_gguf.py", *argv]
    try:
        script["main"]()
        print("OK", flush=True)
    except SystemExit as e:
        print("OK" if not e.code else f"FAIL exit {e.code}", flush=True)
    except Exception as e:  # noqa: BLE001 - reported to the generator, which fails loudly
        print(f"FAIL {type(e).__name__}: {e}", flush=True)
