"""What every benchmark records beside its figures: the machine, and the JSON file written safely.

Benchmarks are run as scripts (``python benchmarks/bench_x.py``), so this module is imported
from the script's own folder.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def machine() -> dict:
    """The facts that change a timing: cores, torch threads and version, platform, CPU vector unit."""
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "platform": platform.platform(terse=True), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def save_section(out: Path, section: str, payload: dict) -> None:
    """Set ``section`` of the JSON file ``out`` (other sections are kept), written atomically."""
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc["machine"] = machine()
    doc[section] = payload
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(out)                                   # a run interrupted mid-write leaves the old file whole
    print(f"-> {out.relative_to(Path(__file__).resolve().parents[1])} [{section}]")
