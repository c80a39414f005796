"""Semantic IDs: items as short token sequences from their content embeddings (TIGER, Rajput
et al., NeurIPS 2023), and the prefix trie that keeps generation to real items.

An item ID such as ``4711`` says nothing; a **semantic ID** such as ``(12, 3, 40, 0)`` does:
items that share the first code are alike, those sharing two codes more so. Codes come from
**residual quantisation** of a content vector ``x`` (here all-MiniLM-L6-v2 of the item text)::

    r_0 = x
    c_l = argmin_k ‖r_l − C_l[k]‖          (level l's codebook C_l, K vectors)
    r_{l+1} = r_l − C_l[c_l]                (what is left for the next level)

Each level quantises what the previous ones missed, so ``C_0[c_0] + C_1[c_1] + …`` approximates
``x`` ever better. TIGER learns the codebooks with an RQ-VAE (an encoder, the residual
quantiser and a decoder trained together); the simple baseline here — the one this course
builds — is **residual k-means**: k-means on ``x``, then k-means on the residuals, and so on.
Two items can end with the same codes (a *collision*); a last **suffix** token ``0, 1, 2…``
numbers the items sharing a prefix, so every item gets a unique ID of ``levels + 1`` tokens.

Token layout used by :mod:`course_lib.models.tiger` (one vocabulary for all levels)::

    0 = padding, 1 = BOS, then level 0's K codes, level 1's K codes, …, then the suffix codes

A :class:`PrefixTrie` of the valid token tuples answers "which tokens may come next after this
prefix?", which is what constrained beam search needs (``prefix_allowed_tokens_fn``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

PAD_TOKEN = 0
BOS_TOKEN = 1
FIRST_CODE_TOKEN = 2


def residual_kmeans(x: np.ndarray, levels: int = 3, codebook_size: int = 64, *, seed: int = 0,
                    n_init: int = 1, max_iter: int = 100) -> tuple[np.ndarray, list[np.ndarray]]:
    """Residual k-means codes of ``(n, d)`` vectors.

    Returns:
        ``codes`` ``(n, levels)`` int64 in ``[0, codebook_size)`` and the ``levels`` codebooks,
        each ``(codebook_size, d)`` (fewer rows if ``n < codebook_size``).
    """
    from sklearn.cluster import KMeans

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"residual_kmeans needs an (n >= 2, d) array, got shape {x.shape}")
    if levels < 1 or codebook_size < 2:
        raise ValueError(f"need levels >= 1 and codebook_size >= 2, got {levels} and {codebook_size}")
    residual = x.copy()
    codes, books = [], []
    for level in range(levels):
        k = min(codebook_size, len(np.unique(residual.round(8), axis=0)))
        km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed + level).fit(residual)
        c = km.labels_.astype(np.int64)
        codes.append(c)
        books.append(km.cluster_centers_.astype(np.float32))
        residual = residual - km.cluster_centers_[c]
        log.info("level %d: %d codes used, residual norm %.4f", level, len(np.unique(c)),
                 float(np.linalg.norm(residual, axis=1).mean()))
    return np.stack(codes, axis=1), books


class RQVAE(torch.nn.Module):
    """A residual-quantised autoencoder (RQ-VAE), TIGER's quantiser, in its plainest form.

    ``x`` (``d_in``) → encoder MLP → ``z`` (``d_latent``) → ``L`` levels of residual quantisation
    of ``z`` (learned codebooks ``C_l``) → ``ẑ = Σ_l C_l[c_l]`` → decoder MLP → ``x̂``. The loss
    (van den Oord et al. 2017; Lee et al. 2022; Rajput et al. 2023)::

        ‖x − x̂‖² + Σ_l ( ‖sg(r_l) − C_l[c_l]‖² + β ‖r_l − sg(C_l[c_l])‖² )

    (``sg`` = stop-gradient; the first term trains encoder and decoder through the
    straight-through copy ``z + sg(ẑ − z)``, the second moves the codes towards the residuals,
    the third commits the encoder to its codes). The codebooks start from residual k-means of the
    first encodings, which keeps every code in use at the start (TIGER does the same).
    """

    def __init__(self, d_in: int, *, levels: int = 3, codebook_size: int = 64, d_latent: int = 32,
                 hidden: int = 256, beta: float = 0.25) -> None:
        super().__init__()
        self.levels, self.K, self.beta = levels, codebook_size, beta
        nn = torch.nn
        self.encoder = nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, d_latent))
        self.decoder = nn.Sequential(nn.Linear(d_latent, hidden), nn.SiLU(), nn.Linear(hidden, d_in))
        self.codebooks = torch.nn.Parameter(torch.randn(levels, codebook_size, d_latent) * 0.1)

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, seed: int = 0) -> None:
        """Codebooks ← residual k-means of ``encoder(x)``."""
        z = self.encoder(x).double().numpy()
        _, books = residual_kmeans(z, self.levels, self.K, seed=seed)
        for level, book in enumerate(books):
            self.codebooks[level, :len(book)] = torch.from_numpy(book)

    def quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(n, d_latent)`` → codes ``(n, L)``, ``ẑ`` ``(n, d_latent)`` and the codebook + commitment loss."""
        residual, z_hat, codes, vq_loss = z, torch.zeros_like(z), [], z.new_zeros(())
        for level in range(self.levels):
            book = self.codebooks[level]                                          # (K, d)
            c = torch.cdist(residual.detach(), book.detach()).argmin(1)           # nearest code
            q = book[c]
            vq_loss = vq_loss + ((residual.detach() - q) ** 2).sum(1).mean() \
                + self.beta * ((residual - q.detach()) ** 2).sum(1).mean()
            codes.append(c)
            z_hat = z_hat + q
            residual = residual - q.detach()
        return torch.stack(codes, 1), z_hat, vq_loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(n, d_in)`` → ``x̂``, codes ``(n, L)`` and the training loss (a scalar)."""
        z = self.encoder(x)
        codes, z_hat, vq_loss = self.quantise(z)
        x_hat = self.decoder(z + (z_hat - z).detach())                            # straight-through
        return x_hat, codes, ((x - x_hat) ** 2).sum(1).mean() + vq_loss

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor) -> np.ndarray:
        return self.quantise(self.encoder(x))[0].numpy()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> np.ndarray:
        """``x̂`` decoded from the codes alone (what the IDs keep of ``x``)."""
        _, z_hat, _ = self.quantise(self.encoder(x))
        return self.decoder(z_hat).numpy()


def rqvae_codes(x: np.ndarray, levels: int = 3, codebook_size: int = 64, *, d_latent: int = 32, hidden: int = 256,
                steps: int = 300, lr: float = 1e-3, batch_size: int = 512, seed: int = 0,
                warmup_steps: int = 50) -> tuple[np.ndarray, RQVAE, dict]:
    """Train an :class:`RQVAE` on ``(n, d)`` vectors; returns ``(n, levels)`` codes, the model and a record.

    The autoencoder trains alone (no quantiser) for ``warmup_steps``, then the codebooks start
    from residual k-means of the encodings and everything trains together for ``steps``.
    The record: ``"loss"`` (each step's training loss), ``"codes_at_start"`` and ``"error_at_start"``
    (the codes and the mean ``‖x − x̂‖`` right after the k-means start), ``"error"`` (the same at the end).
    """
    x_t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if x_t.ndim != 2 or len(x_t) < codebook_size:
        raise ValueError(f"rqvae_codes needs an (n >= codebook_size, d) array, got shape {tuple(x_t.shape)}")
    torch.manual_seed(seed)
    model = RQVAE(x_t.shape[1], levels=levels, codebook_size=codebook_size, d_latent=d_latent, hidden=hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)

    def error() -> float:
        return float(np.linalg.norm(x_t.numpy() - model.reconstruct(x_t), axis=1).mean())

    record: dict = {"loss": []}
    for step in range(steps + warmup_steps):
        if step == warmup_steps:
            model.init_codebooks(x_t, seed=seed)
            record["codes_at_start"], record["error_at_start"] = model.encode_codes(x_t), error()
        idx = torch.randperm(len(x_t), generator=gen)[:batch_size]
        if step < warmup_steps:
            loss = ((x_t[idx] - model.decoder(model.encoder(x_t[idx]))) ** 2).sum(1).mean()
        else:
            loss = model(x_t[idx])[2]
        opt.zero_grad()
        loss.backward()
        opt.step()
        record["loss"].append(loss.item())
    if steps == 0:
        model.init_codebooks(x_t, seed=seed)
        record["codes_at_start"], record["error_at_start"] = model.encode_codes(x_t), error()
    model.eval()
    record["error"] = error()
    return model.encode_codes(x_t), model, record


def reconstruct(codes: np.ndarray, codebooks: Sequence[np.ndarray]) -> np.ndarray:
    """``(n, levels)`` codes → ``(n, d)`` the sum of the chosen codebook vectors."""
    return sum(np.asarray(book)[codes[:, level]] for level, book in enumerate(codebooks))


def add_collision_suffix(codes: np.ndarray) -> np.ndarray:
    """``(n, L)`` codes → ``(n, L + 1)``: the last column numbers the items sharing a code tuple
    (0 for the first, in row order), so every row becomes unique."""
    codes = np.asarray(codes, dtype=np.int64)
    seen: dict[tuple, int] = defaultdict(int)
    suffix = np.empty(len(codes), dtype=np.int64)
    for i, row in enumerate(map(tuple, codes)):
        suffix[i] = seen[row]
        seen[row] += 1
    return np.concatenate([codes, suffix[:, None]], axis=1)


def codebook_usage(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """``(L,)`` the fraction of each level's ``codebook_size`` codes that some item uses."""
    return np.array([len(np.unique(codes[:, level])) / codebook_size for level in range(codes.shape[1])])


def collision_rate(codes: np.ndarray) -> float:
    """The fraction of items whose whole code tuple is shared with at least one other item."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.ravel()] > 1).mean())


def code_purity(codes: np.ndarray, labels: Sequence) -> float:
    """How well one level's codes keep a label (e.g. category): the share of items whose label
    is the most common label of their code (1 = every code holds one label only).

    Args:
        codes: ``(n,)`` the code of each item at one level (or ``(n, l)`` prefixes: each row a group).
        labels: ``(n,)`` the item labels.
    """
    codes = np.asarray(codes)
    groups = codes if codes.ndim == 1 else np.unique(codes, axis=0, return_inverse=True)[1].ravel()
    labels = np.asarray(labels)
    frame = np.stack([groups.astype(str), labels.astype(str)], axis=1)
    majority = 0
    for g in np.unique(groups):
        _, counts = np.unique(frame[groups == g, 1], return_counts=True)
        majority += counts.max()
    return majority / len(labels)


@dataclass
class SemanticIDs:
    """The semantic IDs of a catalogue and their token layout.

    Attributes:
        codes: ``(n_items + 1, L + 1)`` codes per internal item id (row 0, padding, is ``-1``),
            the last column the collision suffix.
        level_sizes: ``(L + 1,)`` how many values each column can take (codebook sizes, then
            the largest suffix + 1).
    """

    codes: np.ndarray
    level_sizes: np.ndarray

    @classmethod
    def from_codes(cls, codes: np.ndarray, codebook_size: int) -> "SemanticIDs":
        """``(n_items, L)`` codes of items ``1..n_items`` (no padding row) → with suffix and layout."""
        full = add_collision_suffix(codes)                                        # (n, L+1)
        sizes = np.array([codebook_size] * codes.shape[1] + [int(full[:, -1].max()) + 1])
        padded = np.vstack([np.full((1, full.shape[1]), -1, dtype=np.int64), full])
        return cls(codes=padded, level_sizes=sizes)

    @property
    def n_items(self) -> int:
        return len(self.codes) - 1

    @property
    def n_tokens_per_item(self) -> int:
        return self.codes.shape[1]

    @property
    def offsets(self) -> np.ndarray:
        """``(L + 1,)`` the first token id of each column's codes."""
        return FIRST_CODE_TOKEN + np.concatenate([[0], np.cumsum(self.level_sizes)[:-1]])

    @property
    def vocab_size(self) -> int:
        return int(FIRST_CODE_TOKEN + self.level_sizes.sum())

    def tokens(self, items: np.ndarray | torch.Tensor) -> np.ndarray:
        """Item ids of any shape ``S`` → tokens ``S + (L + 1,)`` (padding items → padding tokens)."""
        items = np.asarray(items.cpu() if isinstance(items, torch.Tensor) else items)
        tok = self.codes[items] + self.offsets                                    # (..., L+1)
        return np.where(items[..., None] == 0, PAD_TOKEN, tok)

    def item_of_tokens(self) -> dict[tuple[int, ...], int]:
        """``{token tuple: item id}`` for items ``1..n_items``."""
        tok = self.tokens(np.arange(1, self.n_items + 1))
        return {tuple(int(t) for t in row): i + 1 for i, row in enumerate(tok)}

    def trie(self, items: Sequence[int] | None = None) -> "PrefixTrie":
        """A :class:`PrefixTrie` of the token tuples of ``items`` (default: every item)."""
        items = np.arange(1, self.n_items + 1) if items is None else np.asarray(items)
        return PrefixTrie(self.tokens(items))

    def memory_bytes(self, codebooks: Sequence[np.ndarray] | None = None, *, bytes_per_code: int = 2) -> int:
        """Bytes to store the IDs (``n_items × (L+1)`` codes) plus the codebooks if given (float32)."""
        total = self.n_items * self.n_tokens_per_item * bytes_per_code
        return total + sum(int(np.asarray(b).size) * 4 for b in (codebooks or []))


class PrefixTrie:
    """The valid token tuples as a trie: :meth:`allowed` gives the tokens that may follow a prefix.

    >>> trie = PrefixTrie(np.array([[2, 5, 9], [2, 6, 9], [3, 5, 9]]))
    >>> trie.allowed(()), trie.allowed((2,)), trie.allowed((2, 6))
    ([2, 3], [5, 6], [9])
    """

    def __init__(self, sequences: np.ndarray) -> None:
        sequences = np.asarray(sequences)
        if sequences.ndim != 2:
            raise ValueError(f"PrefixTrie needs a (n, length) array of token ids, got shape {sequences.shape}")
        self.length = sequences.shape[1]
        children: dict[tuple[int, ...], set[int]] = defaultdict(set)
        for row in sequences.tolist():
            for depth in range(self.length):
                children[tuple(row[:depth])].add(row[depth])
        self._children = {prefix: sorted(tokens) for prefix, tokens in children.items()}
        self.sequences = {tuple(row) for row in sequences.tolist()}

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Tokens that extend ``prefix`` towards a valid tuple (``[]``: none, the prefix is invalid or complete)."""
        return self._children.get(tuple(int(t) for t in prefix), [])

    def __contains__(self, sequence: Sequence[int]) -> bool:
        return tuple(int(t) for t in sequence) in self.sequences

    def prefix_allowed_tokens_fn(self, prompt_length: int, fallback: int = PAD_TOKEN):
        """The ``prefix_allowed_tokens_fn(batch_id, input_ids)`` of ``transformers`` ``generate()``:
        the tokens generated after the first ``prompt_length`` ones must walk down the trie.

        When no token is allowed (a finished tuple), only ``fallback`` is (``generate`` stops at
        ``max_new_tokens = length`` anyway).
        """
        def fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            allowed = self.allowed(input_ids[prompt_length:].tolist())
            return allowed or [fallback]
        return fn


__all__ = ["BOS_TOKEN", "PAD_TOKEN", "PrefixTrie", "SemanticIDs", "add_collision_suffix", "code_purity",
           "codebook_usage", "collision_rate", "reconstruct", "residual_kmeans", "RQVAE", "rqvae_codes"]
