"""Device choice, seeding and an environment report.

``get_device()`` picks CUDA, then Apple MPS, then CPU. The environment variable
``COURSE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) overrides the choice. The
choice is printed once per process so a learner always knows where the work runs.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from typing import Any

import numpy as np
import torch

_ANNOUNCED: set[str] = set()


def _available(kind: str) -> bool:
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return False


def get_device(prefer: str | torch.device | None = None, *, verbose: bool = True) -> torch.device:
    """Return the device the course should compute on.

    Order of precedence: the ``prefer`` argument, then ``$COURSE_DEVICE``, then the best
    available of CUDA → MPS → CPU.

    Raises:
        ValueError: the requested device is not a known kind or is not available here.
    """
    if isinstance(prefer, torch.device):
        prefer = str(prefer)
    requested = prefer or os.environ.get("COURSE_DEVICE", "").strip() or None
    if requested is not None:
        kind = requested.split(":")[0].lower()
        if kind not in ("cpu", "cuda", "mps"):
            raise ValueError(
                f"unknown device {requested!r}; choose one of: cpu, cuda, cuda:N, mps "
                "(or unset COURSE_DEVICE to pick automatically)"
            )
        if not _available(kind):
            raise ValueError(
                f"device {requested!r} was requested but is not available on this machine; "
                "unset COURSE_DEVICE (or pass prefer=None) to fall back to the best available device"
            )
        device = torch.device(requested)
        reason = "requested"
    elif _available("cuda"):
        device, reason = torch.device("cuda"), "CUDA GPU found"
    elif _available("mps"):
        device, reason = torch.device("mps"), "Apple MPS found"
    else:
        device, reason = torch.device("cpu"), "no GPU found"
    key = str(device)
    if verbose and key not in _ANNOUNCED:
        _ANNOUNCED.add(key)
        print(f"course_lib: computing on {key} ({reason}; set COURSE_DEVICE to override)")
    return device


def set_seed(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices).

    With ``deterministic=True`` torch is asked to use deterministic algorithms where it has
    them (``warn_only``: an op without a deterministic version warns instead of failing).
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True


def environment_report(device: torch.device | None = None) -> dict[str, Any]:
    """Versions, device and thread counts, as a flat dict (for the welcome chapter)."""
    import matplotlib
    import pandas
    import sklearn
    import transformers

    device = device or get_device(verbose=False)
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "scikit-learn": sklearn.__version__,
        "matplotlib": matplotlib.__version__,
        "device": str(device),
        "cpu cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    return report
