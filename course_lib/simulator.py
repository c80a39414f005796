"""The shop as a simulated online world: slates in, clicks, purchases and revenue out.

Offline metrics score a model on what users did *before*; an online test shows the model's
list to users and counts what they do *next*. The synthetic shop (``course_lib.data.shop``)
was drawn from a hidden model of its users, so that model can play the users:
:class:`ShopEnvironment` takes a slate of ``k`` items per visit and draws clicks and
purchases from the planted tastes, prices and the position of each item in the list.

>>> from course_lib.data import leave_one_out, load_dataset
>>> shop = load_dataset("shop"); split = leave_one_out(shop)
>>> env = ShopEnvironment(shop, split, seed=0)
>>> out = env.simulate(users, slates)          # users (V,), slates (V, k) internal item ids
>>> out.clicks.shape, out.revenue.mean()       # (V, k) 0/1, revenue per visit in dollars

The click model (parameters in ``datasets/shop/CARD.md``)
==========================================================

For user ``u`` and item ``i`` of category ``c(i)``, with the shop's own choice weight

    w(u, i) = taste_u(at)[c(i)] · pop_i · exp(-s_u · ρ_i),   ρ_i = log(price_i / type median),

(0 for items ``u`` already bought: nobody buys twice), the item's *attractiveness* is

    a(u, i) = 1 - exp(-α · N · w(u, i) / Σ_j w(u, j))                       (α = ``attraction``)

so an item of average appeal (share 1/N of the user's choice) has ``a ≈ α``, the user's
favourites approach 1. The *position-based model* (examination hypothesis) says a user
looks at position ``k`` (1-based) with probability ``θ_k = k^(-η)`` (η = ``position_bias``)
and clicks what they look at with probability ``a``:

    P(click at k) = θ_k · a(u, i_k),        independently for each position.

A click becomes a purchase with a conversion probability that falls with the price,

    P(buy | click) = cvr_i = min(1, cvr0 · (price_i / median price)^(-γ)),    (γ = ``price_elasticity``)

and a purchase earns ``price_i``. ``at`` in [0, 1] is where the users are on their drifting
taste (0: the taste they arrived with, 1: the taste they left with; default 1, "now", after
the logged histories). Everything is vectorised: 100,000 visits with slates of 10 take well
under a second once the ``(n_users, n_items + 1)`` attractiveness matrix is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data.core import Dataset
from .data.protocol import LeaveOneOutSplit
from .data.shop import CATALOGUE

log = logging.getLogger(__name__)

__all__ = ["ShopEnvironment", "VisitOutcome", "examination", "slate_metrics"]


def examination(k: int, position_bias: float = 1.0) -> np.ndarray:
    """``(k,)`` probabilities that a user looks at positions 1..k: ``θ_j = j^(-position_bias)``."""
    if k < 1:
        raise ValueError(f"a slate needs at least one position, got k={k}")
    if position_bias < 0:
        raise ValueError(f"position_bias must be >= 0 (0: no position effect), got {position_bias}")
    return np.arange(1, k + 1, dtype=np.float64) ** (-float(position_bias))


@dataclass
class VisitOutcome:
    """What happened in ``V`` visits with slates of ``k`` items.

    Attributes:
        users: ``(V,)`` internal user ids.
        slates: ``(V, k)`` internal item ids shown, position 1 first.
        clicks: ``(V, k)`` 0/1 clicks.
        purchases: ``(V, k)`` 0/1 purchases (only clicked items can be bought).
        revenue: ``(V,)`` dollars earned per visit.
        p_click: ``(V, k)`` the click probabilities the draws used (the simulator's truth).
    """

    users: np.ndarray
    slates: np.ndarray
    clicks: np.ndarray
    purchases: np.ndarray
    revenue: np.ndarray
    p_click: np.ndarray

    @property
    def clicked(self) -> np.ndarray:
        """``(V,)`` 1 where the visit had at least one click (per-visit CTR's outcome)."""
        return self.clicks.max(axis=1)

    @property
    def converted(self) -> np.ndarray:
        """``(V,)`` 1 where the visit ended in at least one purchase."""
        return self.purchases.max(axis=1)

    def summary(self) -> dict[str, float]:
        """Per-visit means: CTR (visits with a click), clicks, conversion, revenue."""
        return {"CTR": float(self.clicked.mean()), "clicks/visit": float(self.clicks.sum(1).mean()),
                "conversion": float(self.converted.mean()), "revenue/visit": float(self.revenue.mean())}


def slate_metrics(p_click: np.ndarray, cvr: np.ndarray, price: np.ndarray) -> dict[str, np.ndarray]:
    """Expected per-visit outcomes of slates, from their probabilities (no sampling).

    Args:
        p_click: ``(V, k)`` click probability of each position.
        cvr: ``(V, k)`` purchase-given-click probability of each position.
        price: ``(V, k)`` prices in dollars.

    Returns:
        ``{"CTR": (V,), "clicks/visit": (V,), "conversion": (V,), "revenue/visit": (V,)}``, where
        CTR = P(at least one click) = 1 - Π_k (1 - p_k) and conversion = 1 - Π_k (1 - p_k cvr_k).
    """
    buy = p_click * cvr
    return {"CTR": 1.0 - np.prod(1.0 - p_click, axis=1), "clicks/visit": p_click.sum(axis=1),
            "conversion": 1.0 - np.prod(1.0 - buy, axis=1), "revenue/visit": (buy * price).sum(axis=1)}


class ShopEnvironment:
    """Users of the synthetic shop, simulated from its planted model (see the module docstring).

    Works in the internal ids of ``split`` (users ``0..n_users-1``, items ``1..n_items``,
    0 = padding), so any model evaluated on the split can be served to it unchanged.

    Args:
        shop: the shop :class:`Dataset` (``load_dataset("shop")`` or ``generate_shop(...)``); it
            must carry ``truth``.
        split: a leave-one-out split of ``shop``; its users' full histories (train, valid and
            test items) count as already bought.
        attraction: α, the attractiveness of an item of average appeal.
        position_bias: η in ``θ_k = k^(-η)``.
        cvr0: purchase-given-click probability of an item at the median price.
        price_elasticity: γ, how fast conversion falls with price.
        at: position on the drifting taste, 0 (start) .. 1 (end, default).
        seed: seed of the generator that draws clicks and purchases.
    """

    def __init__(self, shop: Dataset, split: LeaveOneOutSplit, *, attraction: float = 0.005,
                 position_bias: float = 1.0, cvr0: float = 0.1, price_elasticity: float = 0.5,
                 at: float = 1.0, seed: int = 0) -> None:
        if shop.truth is None or "user_taste_start" not in shop.truth:
            raise ValueError(f"dataset {shop.name!r} has no planted truth; the simulator needs the shop "
                             "(load_dataset('shop') or generate_shop(...))")
        if not 0.0 <= at <= 1.0:
            raise ValueError(f"at must be in [0, 1] (0: taste at arrival, 1: taste now), got {at}")
        if attraction <= 0 or cvr0 <= 0 or price_elasticity < 0:
            raise ValueError("attraction and cvr0 must be > 0 and price_elasticity >= 0; "
                             f"got {attraction}, {cvr0}, {price_elasticity}")
        self.split = split
        self.attraction, self.position_bias = float(attraction), float(position_bias)
        self.cvr0, self.price_elasticity, self.at = float(cvr0), float(price_elasticity), float(at)
        self.rng = np.random.default_rng(seed)
        truth = shop.truth
        item_ids = np.asarray(split.item_ids[1:], dtype=np.int64)            # internal 1.. -> original
        user_ids = np.asarray(split.user_ids, dtype=np.int64)
        items = shop.items.set_index("item_id").loc[item_ids]
        medians = {t.name: t.price for c in CATALOGUE for t in c.types}
        categories = list(truth["categories"])
        n = len(item_ids) + 1
        self.n_users, self.n_items = len(user_ids), n - 1
        self.price = np.zeros(n)
        self.price[1:] = items["price"].to_numpy(float)
        self.category = np.full(n, -1)
        self.category[1:] = pd.Categorical(items["category"], categories=categories).codes
        rel_price = np.zeros(n)
        rel_price[1:] = np.log(self.price[1:] / items["product_type"].map(medians).to_numpy(float))
        pop = np.zeros(n)
        pop[1:] = truth["item_popularity"].reindex(item_ids).to_numpy(float)
        start = truth["user_taste_start"].reindex(user_ids).to_numpy(float)
        end = truth["user_taste_end"].reindex(user_ids).to_numpy(float)
        drift = float(truth["params"]["drift"])
        self.price_sensitivity = truth["user_price_sensitivity"].reindex(user_ids).to_numpy(float)
        self.item_popularity = pop
        self.rel_price = rel_price
        self._bought = full_histories(split)               # train + valid + test items: bought already
        self.set_taste((1.0 - drift * at) * start + drift * at * end)        # (U, C)
        ref = float(np.median(self.price[1:]))
        self.cvr = np.minimum(1.0, self.cvr0 * np.where(self.price > 0, self.price / ref, 1.0)
                              ** (-self.price_elasticity))
        self.cvr[0] = 0.0
        log.info("ShopEnvironment: %d users x %d items, mean attractiveness %.4f",
                 self.n_users, self.n_items, float(self.attractiveness[:, 1:].mean()))

    def set_taste(self, taste: np.ndarray) -> None:
        """Give the users new tastes ``(n_users, n_categories)`` (only each row's proportions matter:
        the choice weights are normalised per user) and recompute the attractiveness matrix: how
        drifting tastes are simulated (chapter 10's model updates). Prices, popularity, price
        sensitivity and what was bought stay as they are."""
        taste = np.asarray(taste, dtype=np.float64)
        if taste.ndim != 2 or taste.shape[0] != self.n_users or (hasattr(self, "taste")
                                                                and taste.shape != self.taste.shape):
            raise ValueError(f"taste must be (n_users, n_categories); got {taste.shape}")
        if (taste < 0).any() or (taste.sum(axis=1) <= 0).any():
            raise ValueError("tastes must be non-negative with a positive total per user")
        self.taste = taste
        # the choice weights and attractiveness, (U, N + 1), in float32 to keep them small
        w = (self.taste[:, np.maximum(self.category, 0)] * self.item_popularity[None, :]
             * np.exp(-self.price_sensitivity[:, None] * self.rel_price[None, :])).astype(np.float32)
        w[:, 0] = 0.0
        for u, hist in enumerate(self._bought):
            w[u, hist] = 0.0
        total = w.sum(axis=1, keepdims=True)
        share = w / np.where(total > 0, total, 1.0)        # a user who bought all they like: nothing attracts
        self.attractiveness = (1.0 - np.exp(-self.attraction * self.n_items * share)).astype(np.float32)

    # -- truth -----------------------------------------------------------------------
    def examination(self, k: int) -> np.ndarray:
        """``(k,)`` examination probabilities θ of positions 1..k."""
        return examination(k, self.position_bias)

    def click_probability(self, users: np.ndarray, slates: np.ndarray) -> np.ndarray:
        """``(V, k)`` probability of a click at each position: θ_k · a(u, i_k); 0 for padding (id 0)."""
        users, slates = self._check(users, slates)
        return self.examination(slates.shape[1])[None, :] * self.attractiveness[users[:, None], slates]

    def expected(self, users: np.ndarray, slates: np.ndarray) -> dict[str, np.ndarray]:
        """Expected per-visit CTR, clicks, conversion and revenue of each slate, ``(V,)`` each."""
        users, slates = self._check(users, slates)
        return slate_metrics(self.click_probability(users, slates), self.cvr[slates], self.price[slates])

    def oracle_scores(self, objective: str = "clicks") -> np.ndarray:
        """``(n_users, n_items + 1)`` the planted value of each item: attractiveness for
        ``"clicks"``, attractiveness × cvr × price for ``"revenue"``. Column 0 is -inf."""
        if objective == "clicks":
            s = self.attractiveness.astype(np.float64)
        elif objective == "revenue":
            s = self.attractiveness * (self.cvr * self.price)[None, :]
        else:
            raise ValueError(f"unknown objective {objective!r}; choose 'clicks' or 'revenue'")
        s = np.array(s, dtype=np.float64)
        s[:, 0] = -np.inf
        return s

    # -- sampling --------------------------------------------------------------------
    def simulate(self, users: np.ndarray, slates: np.ndarray, rng: np.random.Generator | None = None) -> VisitOutcome:
        """Draw clicks and purchases for ``V`` visits.

        Args:
            users: ``(V,)`` internal user ids (a user may visit many times).
            slates: ``(V, k)`` internal item ids in display order (0 = an empty slot).
            rng: draw with this generator instead of the environment's own (to give each of
                several policies its own reproducible stream).

        Returns:
            A :class:`VisitOutcome` with ``(V, k)`` clicks and purchases and ``(V,)`` revenue.
        """
        users, slates = self._check(users, slates)
        p = self.click_probability(users, slates)
        u = (self.rng if rng is None else rng).random(p.shape + (2,))
        clicks = (u[..., 0] < p).astype(np.int8)
        purchases = (clicks & (u[..., 1] < self.cvr[slates])).astype(np.int8)
        revenue = (purchases * self.price[slates]).sum(axis=1)
        return VisitOutcome(users=users, slates=slates, clicks=clicks, purchases=purchases, revenue=revenue,
                            p_click=p)

    def sample_users(self, n: int) -> np.ndarray:
        """``(n,)`` visiting users, uniformly at random with replacement."""
        return self.rng.integers(0, self.n_users, size=int(n))

    def _check(self, users, slates) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        slates = np.asarray(slates, dtype=np.int64)
        if slates.ndim != 2 or users.ndim != 1 or len(users) != len(slates):
            raise ValueError(f"expected users (V,) and slates (V, k); got {users.shape} and {slates.shape}")
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise ValueError(f"user ids must be internal ids in [0, {self.n_users}); got "
                             f"{users.min()}..{users.max()}")
        if slates.size and (slates.min() < 0 or slates.max() > self.n_items):
            raise ValueError(f"slate item ids must be internal ids in [0, {self.n_items}] (0 = empty slot); "
                             f"got {slates.min()}..{slates.max()}")
        return users, slates


def top_k_slates(scores: np.ndarray, k: int) -> np.ndarray:
    """``(V, k)`` the ``k`` highest-scoring item ids of each row of ``scores`` ``(V, N + 1)``, best first.

    Column 0 (padding) and ``-inf`` entries are never chosen while finite ones remain.
    """
    s = np.asarray(scores, dtype=np.float64).copy()
    s[:, 0] = -np.inf
    part = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def full_histories(split: LeaveOneOutSplit) -> list[np.ndarray]:
    """Each user's whole logged history (train, then the valid and test items): what the
    user has done before the simulated visits start."""
    return [np.concatenate([split.train[u], [split.valid[u], split.test[u]]]) for u in range(split.n_users)]


def serve_slates(score_fn, split: LeaveOneOutSplit, k: int, *, users: np.ndarray | None = None, max_len: int = 50,
                 batch_size: int = 1024, histories: list[np.ndarray] | None = None) -> np.ndarray:
    """``(V, k)`` each user's top-``k`` slate from a model, with every item of the history masked.

    Args:
        score_fn: ``score_fn(users (B,), histories (B, max_len)) -> (B, n_items + 1)`` (any model
            of the course: a baseline's ``score``, ``SASRec.score_fn``, ...).
        split: the split whose internal ids the model uses.
        k: slate length.
        users: ``(V,)`` internal user ids (default: every user once).
        max_len: columns of the left-padded histories passed to the model.
        batch_size: users scored at once.
        histories: per user, the items seen so far (default: :func:`full_histories`).
    """
    import torch

    from .data.protocol import pad_sequences

    users = np.arange(split.n_users) if users is None else np.asarray(users, dtype=np.int64)
    hist = full_histories(split) if histories is None else histories
    out = np.zeros((len(users), k), dtype=np.int64)
    for start in range(0, len(users), batch_size):
        b = users[start:start + batch_size]
        seqs = [hist[u] for u in b]
        with torch.no_grad():
            s = score_fn(torch.from_numpy(b), pad_sequences(seqs, max_len))
        s = s.float().cpu().numpy().astype(np.float64) if hasattr(s, "cpu") else np.array(s, dtype=np.float64)
        rows = np.repeat(np.arange(len(b)), [len(q) for q in seqs])
        s[rows, np.concatenate(seqs) if len(seqs) else []] = -np.inf
        out[start:start + len(b)] = top_k_slates(s, k)
    return out


__all__ += ["full_histories", "serve_slates", "top_k_slates"]


def offline_online_table(score_fns: dict, split: LeaveOneOutSplit, env: ShopEnvironment, *, k: int = 10,
                         visits: np.ndarray | None = None, max_len: int = 50, n_boot: int = 1000,
                         seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Score each model offline (full-ranking NDCG@k on the test item, bootstrap CI over users)
    and online (its top-``k`` slates shown to the simulated users).

    Args:
        score_fns: ``{name: score_fn(users, histories) -> (B, n_items + 1)}``, fitted for the test stage.
        split: the leave-one-out split the models were fitted on.
        env: the simulator built on the same split.
        k: slate length and metric cut-off.
        visits: ``(V,)`` users of the simulated test (default: every user once).
        max_len, n_boot, seed: history length passed to the models; bootstrap resamples; its seed.

    Returns:
        ``(table, slates)``: one row per model with ``NDCG@k`` and its CI, the *expected* online
        metrics over all users (``CTR``, ``clicks/visit``, ``conversion``, ``revenue/visit``), and
        the simulated visits' CTR and revenue per visit with 95% normal intervals; and
        ``{name: (n_users, k) slates}``.
    """
    from .analysis import bootstrap_ci
    from .evaluate import evaluate

    visits = np.arange(env.n_users) if visits is None else np.asarray(visits, dtype=np.int64)
    users = np.arange(env.n_users)
    rows, slates = [], {}
    for name, fn in score_fns.items():
        offline, per_user = evaluate(fn, split, "test", ks=(k,), max_len=max_len, per_user=True, device="cpu")
        ci = bootstrap_ci(per_user[f"NDCG@{k}"].to_numpy(), n_boot=n_boot, seed=seed)
        slates[name] = serve_slates(fn, split, k, max_len=max_len)
        expected = {m: float(v.mean()) for m, v in env.expected(users, slates[name]).items()}
        sim = env.simulate(visits, slates[name][visits])
        row = {"model": name, f"NDCG@{k}": offline[f"NDCG@{k}"], "NDCG low": ci["low"], "NDCG high": ci["high"],
               **expected}
        for col, x in [("sim CTR", sim.clicked), ("sim revenue/visit", sim.revenue)]:
            x = np.asarray(x, float)
            half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
            row.update({col: x.mean(), f"{col} low": x.mean() - half, f"{col} high": x.mean() + half})
        rows.append(row)
        log.info("%s: NDCG@%d %.4f, expected CTR %.4f", name, k, offline[f"NDCG@{k}"], expected["CTR"])
    for name, objective in [("oracle (clicks)", "clicks"), ("oracle (revenue)", "revenue")]:
        slates[name] = top_k_slates(env.oracle_scores(objective), k)
        rows.append({"model": name, **{m: float(v.mean()) for m, v in env.expected(users, slates[name]).items()}})
    return pd.DataFrame(rows).set_index("model"), slates


__all__.append("offline_online_table")


def trending_tastes(taste: np.ndarray, n_rounds: int, strength: float, seed: int = 0) -> list[np.ndarray]:
    """Tastes that drift with a shared trend (a season, a fashion), one ``(U, C)`` array per round.

    Every category ``c`` gets a trend ``g_c ~ N(0, 1)`` (seeded); in round ``r`` of ``n_rounds``
    each user's taste is re-weighted by ``exp(strength · r / n_rounds · g_c)`` and normalised:

        taste_r[u, c] ∝ taste[u, c] · exp(strength · (r / n_rounds) · g_c),     r = 0 .. n_rounds.

    Round 0 is ``taste`` itself; the categories with ``g_c > 0`` gain share in every user's
    taste, the others lose, steadily. Users keep their own mix of categories (a category
    a user never liked stays at 0): the trend moves the population, not the individuals.
    """
    if n_rounds < 1 or strength < 0:
        raise ValueError(f"need n_rounds >= 1 and strength >= 0; got {n_rounds}, {strength}")
    taste = np.asarray(taste, dtype=np.float64)
    g = np.random.default_rng(seed).standard_normal(taste.shape[1])
    out = []
    for r in range(n_rounds + 1):
        t = taste * np.exp(strength * r / n_rounds * g)[None, :]
        out.append(t / t.sum(axis=1, keepdims=True))
    return out


__all__.append("trending_tastes")
