#!/usr/bin/env python
"""Draw the course's diagrams with matplotlib into notebooks/figures/ (SVG + PNG).

    python scripts/make_figures.py            # all figures
    python scripts/make_figures.py --check    # exit 1 if a committed figure differs from a fresh draw

The diagrams are code, so they can be corrected, regenerated and translated (every label is a
string below; the SVGs keep text as text). They live under notebooks/ because JupyterLab serves
only files below the folder it opens, and the chapters show them with
``![...](figures/NAME.png)``. The output is deterministic (fixed SVG hash salt, no dates), so
``--check`` (run by the tests) catches a figure edited by hand or not regenerated.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks" / "figures"

plt.rcParams.update({"svg.hashsalt": "course", "svg.fonttype": "none", "font.size": 10,
                     "font.family": "DejaVu Sans"})

BLUE, ORANGE, GREEN, GREY, RED, PURPLE = "#dbe9f6", "#fde3c8", "#d9f0d3", "#eeeeee", "#f8d0d0", "#e6dcf2"


def _box(ax, x, y, w, h, text, color=BLUE, size=10, weight="normal"):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=color, ec="#333333", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, weight=weight, wrap=True)


def _arrow(ax, a, b, text="", color="#333333", style="-|>", rad=0.0, text_offset=(0.0, 0.0), size=9):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=12, lw=1.2, color=color,
                                 connectionstyle=f"arc3,rad={rad}"))
    if text:
        mx, my = (a[0] + b[0]) / 2 + text_offset[0], (a[1] + b[1]) / 2 + text_offset[1]
        ax.text(mx, my, text, ha="center", va="center", fontsize=size, color=color,
                bbox=dict(fc="white", ec="none", pad=1.0))


def _canvas(w, h, xlim, ylim, title):
    fig, ax = plt.subplots(figsize=(w, h))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    ax.set_title(title, fontsize=12, weight="bold")
    return fig, ax


def transformer_block():
    """The pre-norm transformer block SASRec stacks (chapters 03 and 04)."""
    fig, ax = _canvas(6.4, 7.4, (0, 13), (0, 14), "A transformer block (pre-norm), as SASRec stacks it")
    x = 5.5
    _box(ax, x, 1.0, 6.0, 1.0, "input  x  (B, T, d)\nitem embedding · √d + position", GREY, 9)
    _box(ax, x, 3.0, 3.6, 0.8, "LayerNorm", ORANGE)
    _box(ax, x, 4.6, 5.0, 1.1, "multi-head self-attention\nsoftmax(QKᵀ/√d_k + mask) V", BLUE, 9)
    _box(ax, x, 6.4, 0.9, 0.8, "+", GREEN, 14, "bold")
    _box(ax, x, 8.0, 3.6, 0.8, "LayerNorm", ORANGE)
    _box(ax, x, 9.6, 5.0, 1.0, "feed-forward  W₂ GELU(W₁ h)", BLUE, 9)
    _box(ax, x, 11.3, 0.9, 0.8, "+", GREEN, 14, "bold")
    _box(ax, x, 13.0, 6.0, 1.0, "output (B, T, d) → next block;\nthe last position scores every item", GREY, 9)
    for a, b in [(1.5, 2.6), (3.4, 4.05), (5.15, 6.0), (6.8, 7.6), (8.4, 9.1), (10.1, 10.9), (11.7, 12.5)]:
        _arrow(ax, (x, a), (x, b))
    # residual paths: around each sub-layer, straight into the sum
    for y0, y1 in [(2.0, 6.4), (6.9, 11.3)]:
        ax.plot([x, 1.6, 1.6], [y0, y0, y1], color="#333333", lw=1.2)
        _arrow(ax, (1.6, y1), (x - 0.45, y1))
        ax.text(1.3, (y0 + y1) / 2, "residual", rotation=90, ha="center", va="center", fontsize=9)
    ax.text(10.8, 4.6, "causal mask:\nposition t sees\nitems 1..t only", fontsize=8, ha="center", va="center",
            color="#1f4e79")
    ax.text(10.8, 9.6, "dropout on\nevery branch", fontsize=8, ha="center", va="center", color="#1f4e79")
    return fig


def masks_causal_vs_bidirectional():
    """Which positions may attend to which: SASRec (causal) against BERT4Rec (bidirectional, masked items)."""
    T = 6
    items = ["phone", "case", "charger", "[MASK]", "cable", "earbuds"]
    fig, axes = plt.subplots(1, 2, figsize=(9.2, 4.4))
    causal = np.tril(np.ones((T, T)))
    bidir = np.ones((T, T))
    for ax, m, title in [(axes[0], causal, "SASRec / GPT: causal (left-to-right)"),
                         (axes[1], bidir, "BERT4Rec: bidirectional, predicts [MASK]")]:
        ax.imshow(m, cmap="Blues", vmin=0, vmax=3.0)
        ax.set_xticks(range(T), [f"{i + 1}" for i in range(T)])
        ax.set_yticks(range(T), [f"{i + 1}" for i in range(T)])
        ax.set_xlabel("key position (attended to)")
        ax.set_ylabel("query position (attending)")
        ax.set_title(title, fontsize=11)
        for i in range(T):
            for j in range(T):
                ax.text(j, i, "✓" if m[i, j] else "·", ha="center", va="center",
                        color="#08306b" if m[i, j] else "#999999", fontsize=10)
    axes[0].text(2.5, T + 0.6, "history: " + " → ".join(items[:3] + items[4:]), ha="center", fontsize=8,
                 clip_on=False)
    axes[1].text(2.5, T + 0.6, "input: " + " ".join(items), ha="center", fontsize=8, clip_on=False)
    fig.suptitle("Attention masks: who may look at whom", fontsize=12, weight="bold")
    fig.tight_layout()
    return fig


def training_loop():
    """The loop of chapter 05: batch → loss → backward → clip → step → schedule, with validation."""
    fig, ax = _canvas(8.0, 5.4, (0, 16), (0, 10.5), "The training loop (chapter 05)")
    steps = [(3, 8.5, "next batch\n(length buckets)", GREY),
             (8, 8.5, "forward + loss\n(full CE, bf16 if native)", BLUE),
             (13, 8.5, "backward\n(gradients)", BLUE), (13, 5.0, "clip gradient\nnorm ≤ 1", ORANGE),
             (8, 5.0, "AdamW step\n+ weight decay", ORANGE), (3, 5.0, "LR schedule\nwarm-up → cosine", ORANGE)]
    for x, y, t, c in steps:
        _box(ax, x, y, 3.8, 1.5, t, c, 9)
    _arrow(ax, (4.9, 8.5), (6.1, 8.5))
    _arrow(ax, (9.9, 8.5), (11.1, 8.5))
    _arrow(ax, (13, 7.75), (13, 5.75))
    _arrow(ax, (11.1, 5.0), (9.9, 5.0))
    _arrow(ax, (6.1, 5.0), (4.9, 5.0))
    _arrow(ax, (3, 5.75), (3, 7.75), "repeat", text_offset=(-0.9, 0))
    _box(ax, 4.6, 1.6, 6.4, 1.5, "every N steps: validation NDCG@10\n(full ranking, seen items masked)", GREEN, 9)
    _box(ax, 12.4, 1.6, 6.4, 1.5, "best so far? → checkpoint (atomic)\nno gain for P evals → stop early", GREEN, 9)
    _arrow(ax, (3, 4.25), (4.0, 2.4), rad=0.2)
    _arrow(ax, (7.8, 1.6), (9.2, 1.6))
    return fig


def serving_cascade():
    """Retrieval → ranking → re-ranking, with candidate counts and a latency budget (chapters 07 and 12)."""
    fig, ax = _canvas(10.4, 4.4, (0, 22), (0, 9), "The serving cascade: from millions of items to ten")
    stages = [(2.2, "catalogue\n10⁶–10⁸ items", GREY, "—"),
              (6.9, "retrieval\ntwo tower / ANN (faiss)\n→ ~1,000 candidates", BLUE, "≈ 10 ms"),
              (11.9, "ranking\nfeature-aware model\n→ ~100", ORANGE, "≈ 20 ms"),
              (16.9, "re-ranking\nfilters, diversity, fairness\n→ 10 shown", GREEN, "≈ 5 ms")]
    widths = [3.4, 4.6, 4.6, 4.6]
    heights = [5.5, 4.2, 3.0, 2.0]
    for (x, t, c, budget), w, h in zip(stages, widths, heights):
        _box(ax, x, 5.0, w, h, t, c, 9)
        ax.text(x, 1.4, budget, ha="center", fontsize=9, color="#1f4e79")
    for a, b in [(3.9, 4.6), (9.2, 9.6), (14.2, 14.6)]:
        _arrow(ax, (a, 5.0), (b, 5.0))
    _arrow(ax, (19.2, 5.0), (21.2, 5.0), "user", text_offset=(0, 0.6))
    ax.text(11.0, 0.4, "latency budget per stage (the whole request: p99 ≤ 50 ms)", ha="center", fontsize=9,
            color="#1f4e79")
    return fig


def feedback_loop():
    """The online loop of chapter 10: the model decides what users see, which decides what it learns."""
    fig, ax = _canvas(7.0, 6.0, (0, 14), (0, 12), "The feedback loop (chapter 10)")
    _box(ax, 7, 10.2, 5.0, 1.4, "model\n(trained on logged clicks)", BLUE)
    _box(ax, 12.0, 6.0, 3.6, 1.5, "slate shown\n(top-k, positions)", ORANGE, 9)
    _box(ax, 7, 1.8, 4.6, 1.4, "users click / buy\n(taste × position bias)", GREEN)
    _box(ax, 2.0, 6.0, 4.0, 1.5, "logs\n(only what was shown)", GREY, 9)
    _arrow(ax, (9.3, 9.8), (11.6, 6.8), "recommend", rad=-0.2, text_offset=(0.9, 0.4))
    _arrow(ax, (11.6, 5.2), (9.3, 2.2), "exposure", rad=-0.2, text_offset=(0.9, -0.4))
    _arrow(ax, (4.7, 2.2), (2.4, 5.2), "record", rad=-0.2, text_offset=(-0.9, -0.4))
    _arrow(ax, (2.4, 6.8), (4.7, 9.8), "retrain", rad=-0.2, text_offset=(-0.9, 0.4))
    ax.text(7, 6.0, "popular items get shown,\nso they get clicked,\nso they get shown more:\n"
                    "exploration and off-policy\ncorrection break the loop", ha="center", va="center", fontsize=9,
            color="#7f0000")
    return fig


FIGURES: dict[str, Callable[[], plt.Figure]] = {
    "transformer_block": transformer_block,
    "masks_causal_vs_bidirectional": masks_causal_vs_bidirectional,
    "training_loop": training_loop,
    "serving_cascade": serving_cascade,
    "feedback_loop": feedback_loop,
}


def render(name: str) -> tuple[bytes, bytes]:
    """(svg, png) bytes of one figure."""
    fig = FIGURES[name]()
    svg, png = io.BytesIO(), io.BytesIO()
    fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    fig.savefig(png, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return svg.getvalue(), png.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed SVGs instead of writing")
    parser.add_argument("names", nargs="*", default=list(FIGURES))
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name in args.names:
        svg, png = render(name)
        if args.check:
            committed = OUT / f"{name}.svg"
            if not committed.exists() or committed.read_bytes() != svg:
                stale.append(name)
            continue
        (OUT / f"{name}.svg").write_bytes(svg)
        (OUT / f"{name}.png").write_bytes(png)
        print(f"notebooks/figures/{name}.svg/.png")
    if stale:
        print(f"stale figures (run `python scripts/make_figures.py`): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
