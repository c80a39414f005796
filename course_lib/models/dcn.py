"""DCN-v2: a deep & cross network for ranking candidates (Wang et al., WWW 2021).

A ranker scores a few hundred candidates per request, so it can afford features that
describe the *pair* (user, item), and explicit feature crosses. DCN-v2 stacks

    x_0     = [E_1[f_1], …, E_F[f_F], x_num]                      the embedded features (D,)
    x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l                         a cross layer (W_l is D × D)
    logit   = w · MLP(x_L) + b                                    deep layers on top

Each cross layer multiplies by ``x_0`` once more, so ``L`` layers hold every feature
interaction up to degree ``L + 1`` (``x_0 ⊙ W x_0`` has the pairwise products ``x_i x_j``
weighted by ``W_ij``: the "crosses" a person would otherwise write by hand); the residual
``+ x_l`` keeps the lower degrees. ``sigmoid(logit)`` is the click probability.

Shapes: ``B`` pairs, ``F`` categorical fields, ``F_n`` numeric features, ``D`` the input width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class DCNConfig:
    """Hyper-parameters of :class:`DCNv2`.

    Attributes:
        cardinalities: embedding rows of each categorical field.
        n_numeric: numeric inputs.
        d_field: embedding size per field.
        n_cross: cross layers ``L``.
        hidden: widths of the deep layers.
        dropout: dropout in the deep layers.
    """

    cardinalities: tuple[int, ...]
    n_numeric: int = 0
    d_field: int = 8
    n_cross: int = 2
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.cardinalities = tuple(int(c) for c in self.cardinalities)
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.cardinalities and not self.n_numeric:
            raise ValueError("DCNv2 needs at least one categorical field or numeric input")


class CrossLayer(nn.Module):
    """``x_{l+1} = x_0 ⊙ (W x_l + b) + x_l``."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d, d)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x


class DCNv2(nn.Module):
    """Deep & cross network (stacked: cross layers, then the deep MLP)."""

    def __init__(self, config: DCNConfig) -> None:
        super().__init__()
        self.config = c = config
        self.fields = nn.ModuleList(nn.Embedding(card, c.d_field) for card in c.cardinalities)
        for emb in self.fields:
            nn.init.normal_(emb.weight, std=0.05)
        d = c.d_field * len(c.cardinalities) + c.n_numeric
        self.cross = nn.ModuleList(CrossLayer(d) for _ in range(c.n_cross))
        layers, width = [], d
        for h in c.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(c.dropout)]
            width = h
        self.deep = nn.Sequential(*layers)
        self.out = nn.Linear(width, 1)

    def embed(self, cat: torch.Tensor, num: torch.Tensor | None) -> torch.Tensor:
        """``x_0`` ``(B, D)`` from categorical ids ``(B, F)`` and numeric inputs ``(B, F_n)``."""
        if cat.shape[1] != len(self.fields):
            raise ValueError(f"expected {len(self.fields)} categorical fields, got {cat.shape[1]}")
        parts = [emb(cat[:, j]) for j, emb in enumerate(self.fields)]
        if self.config.n_numeric:
            if num is None or num.shape[1] != self.config.n_numeric:
                raise ValueError(f"expected {self.config.n_numeric} numeric inputs, got "
                                 f"{None if num is None else num.shape[1]}")
            parts.append(num.float())
        return torch.cat(parts, dim=1)

    def forward(self, cat: torch.Tensor, num: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)`` logits (``sigmoid`` gives the click probability)."""
        x0 = self.embed(cat, num)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return self.out(self.deep(x)).squeeze(-1)


__all__ = ["CrossLayer", "DCNConfig", "DCNv2"]
