"""The CLI starts light: printing help (the top level and every command's) imports no heavy library.

torch, onnxruntime, scikit-learn, rasterio and dask are imported by the commands that use them, when they
run. Checked in a fresh interpreter (the test process has long imported them all); a module check, not a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "onnxruntime", "onnx", "sklearn", "rasterio", "dask", "distributed")

PROBE = """
import json, sys
from amberwatch.cli import main

def show_help(args):
    try:
        main(args, prog_name="amberwatch", standalone_mode=False)
    except SystemExit:
        pass

show_help(["--help"])
for name in sorted(main.commands):
    show_help([name, "--help"])
    group = main.commands[name]
    for sub in sorted(getattr(group, "commands", {})):
        show_help([name, sub, "--help"])
print(json.dumps({"commands": sorted(main.commands), "modules": sorted(sys.modules)}))
"""


def test_cli_help_imports_no_heavy_library():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"scan", "train", "serve", "examples", "story"} <= set(out["commands"])
    loaded = {m.split(".")[0] for m in out["modules"]}
    assert not loaded & set(HEAVY), f"amberwatch --help imported {sorted(loaded & set(HEAVY))}"
