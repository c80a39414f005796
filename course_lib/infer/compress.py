"""Compression and export: int8 and bf16 copies, ONNX export and its runtime, pruning, model size.

(The distillation loss, which trains a smaller model, lives with the other losses:
:func:`course_lib.losses.distillation_loss`.)
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data.protocol import PAD
from ..scoring import as_score_fn, check_users, mask_padding


# ============================================================================ compression
def _linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(name, mod) for name, mod in model.named_modules() if type(mod) is nn.Linear]


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` (and ``nn.GRU``/``nn.LSTM``) layers compute in int8.

    Dynamic quantisation: weights are stored as int8 with one scale per tensor
    (``w ≈ scale · q``, ``q`` in [-128, 127]); activations are quantised on the fly, batch by
    batch, and the int8 products accumulate in int32. Embedding tables (and so a score layer
    tied to them) stay float32: see :func:`quantize_rows_int8` for the item table. Uses
    ``torch.ao.quantization.quantize_dynamic`` (deprecated in favour of ``torchao``, still
    shipped with the course's torch; its deprecation warnings are silenced here). CPU only.
    """
    kinds = {nn.Linear, nn.GRU, nn.LSTM}
    if not any(type(m) in kinds for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no nn.Linear, nn.GRU or nn.LSTM layer to quantise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        present = {k for k in kinds if any(type(m) is k for m in model.modules())}
        q = quantize_dynamic(copy.deepcopy(model).cpu().eval(), present, dtype=torch.qint8)
    return q


def quantize_rows_int8(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 quantisation of an embedding table.

    For each row ``x``: ``scale = max|x| / 127``, ``q = round(x / scale)`` in [-127, 127]; the
    row is stored as ``q`` (1 byte per value) plus one float scale: ~4x smaller than float32.

    Returns ``(q, scale)``: ``(N, d)`` int8 and ``(N, 1)`` float32; ``q * scale`` approximates ``table``.
    """
    t = table.detach().float()
    scale = t.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
    q = torch.round(t / scale).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_rows_int8`: ``q * scale`` as float32."""
    return q.float() * scale


class CastScorer(nn.Module):
    """Run a model in another floating dtype (e.g. bfloat16) and return float32 scores.

    The wrapped copy keeps its weights in ``dtype`` (half the memory of float32 for bf16) and
    runs under ``torch.autocast`` for that dtype, so that a float32 tensor made inside the
    model (a mask turned into floats, say) does not clash with the low-precision weights.
    Integer inputs (item ids) pass unchanged.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.inner = copy.deepcopy(model).to(dtype).eval()
        self.dtype = dtype

    @property
    def n_items(self) -> int:
        return int(self.inner.n_items)

    def score(self, users: Any, histories: Any = None) -> torch.Tensor:
        """``score(users, histories)`` (or ``score(histories)``) of the wrapped model, as float32."""
        if histories is None:
            users, histories = None, users
        h = torch.as_tensor(histories)
        device_type = h.device.type if h.device.type in ("cpu", "cuda") else "cpu"
        with torch.autocast(device_type, dtype=self.dtype):
            return as_score_fn(self.inner)(users, h).float()

    def score_fn(self, users: torch.Tensor | None, histories: torch.Tensor) -> torch.Tensor:
        return self.score(users, histories)

    def forward(self, histories: torch.Tensor) -> torch.Tensor:
        return self.score(None, histories)


def to_bfloat16(model: nn.Module) -> CastScorer:
    """A bfloat16 copy of ``model`` (8 exponent bits like float32, 7 mantissa bits): see :class:`CastScorer`."""
    return CastScorer(model, torch.bfloat16)


class ScoreModule(nn.Module):
    """``forward(histories)`` = the model's scores, column 0 ``-inf``: the graph that :func:`export_onnx` traces.

    Models with :class:`~course_lib.scoring.ScorerMixin` are traced through their
    ``_static_scores`` (no input checks, no data-dependent shapes such as BERT4Rec's
    length buckets); other models through ``score(histories)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, histories: torch.Tensor) -> torch.Tensor:
        static = getattr(self.model, "_static_scores", None)
        scores = static(histories) if callable(static) else as_score_fn(self.model)(None, histories)
        return mask_padding(scores.float())


def export_onnx(model: nn.Module, path: str | os.PathLike, *, max_len: int, example_batch: int = 4,
                opset_version: int | None = None, n_items: int | None = None) -> Path:
    """Export ``model.score`` to ONNX with a dynamic batch dimension; returns the file's path.

    Uses ``torch.onnx.export(..., dynamo=True)`` (the exporter built on ``torch.export``; it
    needs ``onnxscript``). The graph takes ``histories`` ``(batch, max_len)`` int64 and returns
    ``scores`` ``(batch, n_items + 1)`` float32. Weights are stored inside the file (no
    external-data side files), so the one file is the whole model.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = ScoreModule(copy.deepcopy(model).cpu().float().eval()).eval()
    if n_items is None:
        with torch.no_grad():
            n_items = module(torch.ones((1, max_len), dtype=torch.long)).shape[1] - 1
    hi = int(n_items)
    gen = torch.Generator().manual_seed(0)
    example = torch.randint(1, max(2, hi + 1), (example_batch, max_len), generator=gen)
    example[0, : max_len // 2] = PAD                     # padding in the example, as in real input
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        import contextlib
        import logging

        quiet = logging.getLogger("torch.onnx")
        old = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                program = torch.onnx.export(module, (example,), dynamo=True, input_names=["histories"],
                                            output_names=["scores"], dynamic_shapes={"histories": {0: batch}},
                                            opset_version=opset_version, external_data=False)
                program.save(str(path), external_data=False)
        finally:
            quiet.setLevel(old)
    import onnx

    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    if not dim.dim_param:
        raise ValueError(f"the exported graph has a fixed batch size of {dim.dim_value}: the model's score() turns "
                         "the batch size into a Python number (len(h), int(h.shape[0]), a Python loop over rows); "
                         "use tensor operations that keep it symbolic")
    return path


class OnnxScorer:
    """Score with an exported ONNX model in ``onnxruntime`` (the :func:`export_onnx` format).

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime's intra-op threads (default: all cores).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.max_len = inp.shape[1] if isinstance(inp.shape[1], int) else None
        cols = self.session.get_outputs()[0].shape[-1]
        self.n_items: int | None = cols - 1 if isinstance(cols, int) else None

    def score(self, users: Any, histories: Any = None) -> torch.Tensor:
        """``score(users, histories)`` (users are not read) or ``score(histories)``: ``(B, max_len)``
        int64 histories → ``(B, n_items + 1)`` float32 scores (a torch tensor)."""
        if histories is None:
            users, histories = None, users
        check_users(users, len(histories))
        h = torch.as_tensor(histories).detach().cpu().numpy().astype(np.int64, copy=False)
        if h.ndim != 2:
            raise ValueError(f"histories must be 2-D (B, max_len), got shape {h.shape}")
        if self.max_len is not None and h.shape[1] != self.max_len:
            raise ValueError(f"this ONNX model takes histories of length {self.max_len}, got {h.shape[1]}")
        (out,) = self.session.run(None, {self.input_name: h})
        return torch.from_numpy(out)

    def score_fn(self, users: torch.Tensor | None, histories: torch.Tensor) -> torch.Tensor:
        return self.score(users, histories)

    __call__ = score_fn


def model_size_bytes(model: nn.Module | str | os.PathLike) -> int:
    """Bytes of a model's weights: ``numel × bytes per element`` over its ``state_dict`` (a file: its size).

    int8 weights count 1 byte, bfloat16 2, float32 4; the packed weights of dynamically
    quantised layers are included. Nothing else (pickle or graph overhead) is counted, so
    the numbers compare precisions fairly.
    """
    if isinstance(model, (str, os.PathLike)):
        return Path(model).stat().st_size

    def size(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, (tuple, list)):
            return sum(size(v) for v in value)
        return 0

    total = 0
    for key, value in model.state_dict().items():
        if "_packed_params" in key and not isinstance(value, torch.Tensor):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                weight, bias = value if isinstance(value, tuple) else (value, None)
                total += size(weight) + size(bias)
        else:
            total += size(value)
    return total


def prune_linear(model: nn.Module, amount: float) -> tuple[nn.Module, float]:
    """A copy of ``model`` with the smallest-magnitude ``amount`` of each ``nn.Linear`` weight set to 0.

    Unstructured L1 magnitude pruning (``torch.nn.utils.prune.l1_unstructured``), made
    permanent. Returns ``(pruned copy, share of zero weights among all Linear weights)``.
    Dense kernels do not skip zeros: the file compresses, the speed does not change.
    """
    from torch.nn.utils import prune

    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    pruned = copy.deepcopy(model)
    layers = _linear_layers(pruned)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to prune")
    zeros = total = 0
    for _, layer in layers:
        if amount > 0:
            prune.l1_unstructured(layer, name="weight", amount=amount)
            prune.remove(layer, "weight")
        zeros += int((layer.weight == 0).sum())
        total += layer.weight.numel()
    return pruned, zeros / total
