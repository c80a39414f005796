"""What every benchmark records beside its figures: the machine, and the JSON file written safely.

Benchmarks are run as scripts (``python benchmarks/bench_x.py``), so this module is imported
from the script's own folder.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from course_lib.train.trainer import bf16_supported


def cpu_model() -> str:
    """The CPU's model name (Linux), '' elsewhere."""
    try:
        return next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name")), "")
    except OSError:
        return ""


def machine() -> dict:
    """The facts that change a timing: cores, torch threads and version, platform, CPU model and vector unit, and
    whether the CPU runs bf16 natively (then ``precision="auto"`` trains in bf16 autocast)."""
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "platform": platform.platform(terse=True), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_model": cpu_model(), "bf16_native": bf16_supported(torch.device("cpu"))}


def save_section(out: Path, section: str, payload: dict, top_machine: bool = True) -> None:
    """Set ``section`` of the JSON file ``out`` (other sections are kept), written atomically.

    The file's top-level ``machine`` is set to this one's, unless ``top_machine`` is False: sections whose
    entries each record their own machine (long quality runs, plateau probes, run on different days and
    CPUs) pass False, so that adding one run does not re-label the sections measured as a whole.
    """
    doc = json.loads(out.read_text()) if out.exists() else {}
    if top_machine or "machine" not in doc:
        doc["machine"] = machine()
    doc[section] = payload
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(out)                                   # a run interrupted mid-write leaves the old file whole
    root = Path(__file__).resolve().parents[1]
    shown = out.resolve().relative_to(root) if out.resolve().is_relative_to(root) else out   # a scratch file: as given
    print(f"-> {shown} [{section}]")


def interleaved_rounds(runners: list[tuple[str, Callable[[int], tuple[int, float]]]], rounds: int,
                       batches_per_round: int) -> dict[str, list[float]]:
    """Sequences/s of each ``(name, run)`` runner, measured round-robin so that a change of load hits all alike.

    ``run(n_batches)`` trains ``n_batches`` and returns ``(sequences, seconds)``. Returns each
    runner's per-round figures (take their median); prints the running medians after each round.
    """
    per = {name: [] for name, _ in runners}
    for r in range(rounds):
        for name, run in runners:
            seqs, secs = run(batches_per_round)
            per[name].append(seqs / secs)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{statistics.median(v):.0f}" for v in per.values()),
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
    return per
