"""Multi-task rankers (course_lib.models.multitask): shapes, ESMM's product, MMoE's gates, and a
planted case of sample-selection bias that ESMM reduces."""

import numpy as np
import pytest
import torch

from course_lib.models.multitask import (
    ESMM,
    MMoE,
    MultiTaskConfig,
    SharedBottom,
    fit_multitask,
    make_multitask,
    predict_multitask,
)


def _tables(n_users=7, n_items=11, n_cat=3, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.dirichlet(np.ones(n_cat), n_users)
    cat = np.r_[-1, rng.integers(0, n_cat, n_items)]
    return MultiTaskConfig(n_users, n_items, n_cat, d_embed=4, hidden=8, tower=4, n_experts=3), mix, cat


@pytest.mark.parametrize("kind", ["shared-bottom", "mmoe", "esmm", "click", "cvr"])
def test_outputs_are_probabilities_of_the_right_shape(kind):
    cfg, mix, cat = _tables()
    torch.manual_seed(0)
    model = make_multitask(kind, cfg, mix, cat)
    users, items = torch.tensor([0, 3, 6, 6]), torch.tensor([1, 5, 11, 2])
    out = model(users, items)
    expected = {"esmm": {"click", "cvr", "purchase"}, "click": {"click"}, "cvr": {"cvr"}}
    expected = expected.get(kind, {"click", "purchase"})
    assert set(out) == expected
    for v in out.values():
        assert v.shape == (4,) and bool(((v > 0) & (v < 1)).all())


def test_esmm_purchase_is_click_times_cvr():
    cfg, mix, cat = _tables()
    torch.manual_seed(1)
    model = ESMM(cfg, mix, cat)
    users, items = torch.arange(7).repeat(3), torch.arange(1, 12).repeat(2)[:21]
    out = model(users, items)
    torch.testing.assert_close(out["purchase"], out["click"] * out["cvr"])
    # the two towers are separate networks on the same input: their outputs differ
    assert not torch.allclose(out["click"], out["cvr"])
    x = model.input(users, items)
    torch.testing.assert_close(out["cvr"], torch.sigmoid(model.cvr(x).squeeze(-1)))


def test_mmoe_gates_sum_to_one_and_mix_the_experts():
    cfg, mix, cat = _tables()
    torch.manual_seed(2)
    model = MMoE(cfg, mix, cat)
    users, items = torch.tensor([0, 1, 2, 5]), torch.tensor([3, 4, 9, 1])
    gates = model.gates(users, items)
    for g in gates.values():
        assert g.shape == (4, cfg.n_experts)
        torch.testing.assert_close(g.sum(-1), torch.ones(4))
        assert bool((g > 0).all())
    # from scratch: h_t = Σ_e w_{t,e} f_e(x), logit_t = tower_t(h_t)
    x = model.input(users, items)
    experts = [e(x) for e in model.experts]
    for t in model.tasks:
        h = sum(gates[t][:, e:e + 1] * experts[e] for e in range(cfg.n_experts))
        torch.testing.assert_close(model.logits(users, items)[t], model.towers[t](h).squeeze(-1))


def test_shared_bottom_shares_one_bottom():
    cfg, mix, cat = _tables()
    model = SharedBottom(cfg, mix, cat)
    assert set(model.towers) == {"click", "purchase"}
    assert isinstance(model.bottom, torch.nn.Sequential)


def test_bad_tables_are_refused():
    cfg, mix, cat = _tables()
    with pytest.raises(ValueError, match="user_mix"):
        ESMM(cfg, mix[:-1], cat)
    with pytest.raises(ValueError, match="item_category"):
        ESMM(cfg, mix, cat[1:])
    with pytest.raises(ValueError, match="unknown"):
        make_multitask("ple", cfg, mix, cat)
    with pytest.raises(ValueError, match="purchase without a click"):
        fit_multitask(ESMM(cfg, mix, cat), [0], [1], [0], [1], steps=1)


def test_training_lowers_the_loss_and_is_seeded():
    cfg, mix, cat = _tables(n_users=20, n_items=30)
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 20, 3000), rng.integers(1, 31, 3000)
    c = (rng.random(3000) < np.where(i % 2 == 0, 0.6, 0.05)).astype(float)
    b = c * (rng.random(3000) < 0.5)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = make_multitask("mmoe", cfg, mix, cat)
        res = fit_multitask(m, u, i, c, b, steps=150, batch_size=256, lr=1e-2, seed=0)
        runs.append(predict_multitask(m, u[:50], i[:50])["click"])
    assert np.mean(res["loss"][-20:]) < np.mean(res["loss"][:20])
    np.testing.assert_array_equal(runs[0], runs[1])


def _planted(seed=0, n_users=300, n_items=2000, n_cat=3, m=60_000):
    """Sparse items with a hidden quality ``z`` that raises both the click and the conversion
    probability; the models see item ids only. Most items get a handful of clicks, the poor ones
    almost none: the clicked impressions are the good items, so a CVR model trained on them alone
    has little to say about the rest and over-estimates their conversion."""
    rng = np.random.default_rng(seed)
    z = np.r_[0.0, rng.normal(size=n_items)]
    cat = np.r_[-1, rng.integers(0, n_cat, n_items)]
    mix = rng.dirichlet(np.ones(n_cat), n_users)
    u, i = rng.integers(0, n_users, m), rng.integers(1, n_items + 1, m)
    ctr = 1 / (1 + np.exp(2.5 - 1.5 * z[i]))
    cvr = 1 / (1 + np.exp(1.0 - 1.5 * z[i]))
    c = (rng.random(m) < ctr).astype(float)
    b = c * (rng.random(m) < cvr)
    return MultiTaskConfig(n_users, n_items, n_cat, d_embed=8, hidden=32, tower=16), mix, cat, u, i, c, b, cvr


def test_esmm_cvr_is_less_biased_than_a_clicked_only_cvr_model_on_all_impressions():
    cfg, mix, cat, u, i, c, b, cvr = _planted()
    assert cvr[c > 0].mean() > cvr.mean() + 0.2            # the clicked impressions are a selected sample
    torch.manual_seed(0)
    esmm = make_multitask("esmm", cfg, mix, cat)
    fit_multitask(esmm, u, i, c, b, steps=300, batch_size=1024, seed=0)
    torch.manual_seed(0)
    naive = make_multitask("cvr", cfg, mix, cat)
    fit_multitask(naive, u, i, c, b, steps=300, batch_size=1024, seed=0, click_only=True)
    p_esmm = predict_multitask(esmm, u, i)["cvr"]
    p_naive = predict_multitask(naive, u, i)["cvr"]
    bias_esmm, bias_naive = (p_esmm - cvr).mean(), (p_naive - cvr).mean()
    assert bias_naive > 0.05                                  # the clicked-only model over-estimates
    assert abs(bias_esmm) < bias_naive / 2
    assert np.abs(p_esmm - cvr).mean() < np.abs(p_naive - cvr).mean()
    # and the clicked-only model is fine where it was trained: on the clicked impressions
    clicked = c > 0
    assert abs((p_naive[clicked] - cvr[clicked]).mean()) < bias_naive
