"""Cross-category helpers: domains, restriction to a domain, planted complements, category mix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib import domains as dm
from course_lib.data import leave_one_out, pad_sequences
from course_lib.data.shop import generate_shop


@pytest.fixture(scope="module")
def shop():
    ds = generate_shop(seed=7, n_users=250, n_items=200)
    return ds, leave_one_out(ds)


def test_item_domains_and_in_domain(shop):
    ds, split = shop
    doms, names = dm.item_domains(split)
    assert doms[0] == 0 and set(doms[1:]) == set(range(1, len(names) + 1)) and names == sorted(names)
    cat = split.items["category"].to_numpy()
    assert all(names[doms[i] - 1] == cat[i] for i in range(1, split.n_items + 1))
    keep = doms == 1
    h = pad_sequences([np.flatnonzero(keep)[:2].tolist() + np.flatnonzero(~keep)[1:3].tolist()], 6)
    seen = {}

    def fn(users, histories):
        seen["h"] = histories.clone()
        return torch.arange(split.n_items + 1, dtype=torch.float32).repeat(len(histories), 1)

    s = dm.in_domain(fn, keep, filter_history=True)(torch.tensor([0]), h)
    assert torch.isinf(s[0, ~torch.from_numpy(keep)]).all() and torch.isfinite(s[0, torch.from_numpy(keep)]).all()
    # only the domain's two items remain, left-padded
    assert seen["h"][0].tolist() == [0, 0, 0, 0] + np.flatnonzero(keep)[:2].tolist()


def test_complement_users_match_the_planted_events(shop):
    ds, split = shop
    users = dm.complement_users(ds, split)
    ev = ds.truth["events"]
    inter = ds.interactions
    cat = ds.items.set_index("item_id")["category"]
    # independently: the last interaction of each user, with its reason and anchor
    last = (inter.assign(reason=ev["reason"].to_numpy(), anchor=ev["anchor_item_id"].to_numpy())
            .groupby("user_id").tail(1))
    want = last[(last["reason"] == "complement")
                & (cat.reindex(last["anchor"]).to_numpy() != cat.reindex(last["item_id"]).to_numpy())]["user_id"]
    assert set(split.user_ids[users]) == set(want) and len(users) > 0


def test_category_mix_distance_by_hand():
    class S:
        user_ids = np.array([10, 11])

    doms = np.array([0, 1, 1, 2, 2])
    names = ["A", "B"]
    top = np.array([[1, 2], [1, 3]])                      # user 10: all A; user 11: half A, half B
    taste = pd.DataFrame({"A": [1.0, 0.0], "B": [0.0, 1.0]}, index=[10, 11])
    np.testing.assert_allclose(dm.category_mix_distance(top, doms, names, taste, S()), [0.0, 0.5])
