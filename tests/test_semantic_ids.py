"""Semantic IDs: residual k-means recovers planted clusters, suffixes make IDs unique, the trie is exact."""

import numpy as np
import pytest

from course_lib.semantic_ids import (
    PrefixTrie,
    SemanticIDs,
    add_collision_suffix,
    code_purity,
    codebook_usage,
    collision_rate,
    reconstruct,
    residual_kmeans,
)


def _planted(seed=0):
    """8 well-separated top clusters × 4 sub-clusters each, 10 points per sub-cluster."""
    rng = np.random.default_rng(seed)
    tops = rng.normal(0, 10, (8, 16))
    subs = rng.normal(0, 1, (8, 4, 16))
    x, top_label, sub_label = [], [], []
    for t in range(8):
        for s in range(4):
            x.append(tops[t] + subs[t, s] + rng.normal(0, 0.02, (10, 16)))
            top_label += [t] * 10
            sub_label += [t * 4 + s] * 10
    return np.concatenate(x), np.array(top_label), np.array(sub_label)


def test_first_level_recovers_the_planted_clusters():
    x, top, sub = _planted()
    codes, books = residual_kmeans(x, levels=2, codebook_size=8, seed=0)
    assert codes.shape == (320, 2) and len(books) == 2 and books[0].shape == (8, 16)
    assert code_purity(codes[:, 0], top) == 1.0                 # each level-0 code holds one planted cluster
    assert code_purity(codes[:, :2], sub) > 0.95                # two levels: the sub-clusters
    assert code_purity(np.zeros(320, int), top) == pytest.approx(1 / 8)


def test_each_level_shrinks_the_reconstruction_error():
    x, _, _ = _planted(1)
    codes, books = residual_kmeans(x, levels=3, codebook_size=8, seed=0)
    errors = [np.linalg.norm(x - reconstruct(codes[:, :l], books[:l]), axis=1).mean() for l in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


def test_suffix_numbers_collisions_and_makes_ids_unique():
    codes = np.array([[1, 2], [1, 2], [3, 0], [1, 2], [3, 0], [0, 0]])
    full = add_collision_suffix(codes)
    assert full[:, -1].tolist() == [0, 1, 0, 2, 1, 0]
    assert len({tuple(r) for r in full}) == len(full)
    assert collision_rate(codes) == pytest.approx(5 / 6)
    assert collision_rate(full) == 0.0
    np.testing.assert_allclose(codebook_usage(codes, 4), [3 / 4, 2 / 4])


def test_token_layout_and_round_trip():
    codes = np.array([[1, 2], [1, 2], [3, 0]])
    sem = SemanticIDs.from_codes(codes, codebook_size=4)
    assert sem.n_items == 3 and sem.n_tokens_per_item == 3
    assert sem.level_sizes.tolist() == [4, 4, 2]
    assert sem.offsets.tolist() == [2, 6, 10] and sem.vocab_size == 12
    assert sem.tokens(np.array([1, 2, 3])).tolist() == [[3, 8, 10], [3, 8, 11], [5, 6, 10]]
    assert sem.tokens(np.array([[0, 3]]))[0, 0].tolist() == [0, 0, 0]      # padding item → padding tokens
    assert sem.item_of_tokens() == {(3, 8, 10): 1, (3, 8, 11): 2, (5, 6, 10): 3}
    assert sem.memory_bytes() == 3 * 3 * 2


def test_trie_allows_exactly_the_valid_continuations():
    rng = np.random.default_rng(0)
    seqs = np.unique(rng.integers(0, 5, (40, 3)), axis=0)
    trie = PrefixTrie(seqs)
    valid = {tuple(s) for s in seqs.tolist()}
    for a in range(5):
        assert trie.allowed((a,)) == sorted({s[1] for s in valid if s[0] == a})
        for b in range(5):
            assert trie.allowed((a, b)) == sorted({s[2] for s in valid if s[:2] == (a, b)})
    assert trie.allowed(()) == sorted({s[0] for s in valid})
    assert trie.allowed(tuple(seqs[0])) == [] and tuple(seqs[0]) in trie
    import torch

    fn = trie.prefix_allowed_tokens_fn(prompt_length=2, fallback=99)
    assert fn(0, torch.tensor([7, 7, int(seqs[0, 0])])) == trie.allowed((seqs[0, 0],))
    assert fn(0, torch.tensor([7, 7, *seqs[0].tolist()])) == [99]


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match=r"\(n >= 2, d\)"):
        residual_kmeans(np.zeros(5))
    with pytest.raises(ValueError, match="codebook_size"):
        residual_kmeans(np.random.default_rng(0).normal(size=(10, 2)), codebook_size=1)


def test_rqvae_trains_quantises_and_keeps_the_planted_clusters():
    """The RQ-VAE's error falls, its codes are in range, level 0 keeps the planted top clusters,
    each level shrinks the latent residual, and the straight-through copy passes gradients to the encoder."""
    import torch

    from course_lib.semantic_ids import RQVAE, rqvae_codes

    x, top, _ = _planted(2)
    codes, model, record = rqvae_codes(x, levels=3, codebook_size=8, d_latent=8, hidden=64, steps=150,
                                       warmup_steps=50, lr=3e-3, seed=0)
    assert codes.shape == (320, 3) and codes.min() >= 0 and codes.max() < 8
    assert len(record["loss"]) == 200 and record["codes_at_start"].shape == (320, 3)
    assert record["error"] < record["error_at_start"]        # after the codebook start, training still helps
    direct = np.linalg.norm(x - model.reconstruct(torch.as_tensor(x, dtype=torch.float32)), axis=1).mean()
    assert record["error"] == pytest.approx(direct, rel=1e-5)
    assert code_purity(codes[:, 0], top) > 0.9
    x_t = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        z = model.encoder(x_t)
    books = [model.codebooks[level].detach().numpy() for level in range(3)]
    lat_err = [np.linalg.norm(z.numpy() - reconstruct(codes[:, :l], books[:l]), axis=1).mean() for l in (1, 2, 3)]
    assert lat_err[0] > lat_err[1] > lat_err[2]
    again, _, _ = rqvae_codes(x, levels=3, codebook_size=8, d_latent=8, hidden=64, steps=150, warmup_steps=50,
                              lr=3e-3, seed=0)
    np.testing.assert_array_equal(codes, again)               # seeded: same codes
    m = RQVAE(16, levels=2, codebook_size=4, d_latent=4, hidden=8)
    _, _, loss = m(torch.randn(10, 16))
    loss.backward()
    assert m.encoder[0].weight.grad.abs().sum() > 0 and m.codebooks.grad.abs().sum() > 0
