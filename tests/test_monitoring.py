"""Monitoring: PSI by hand, drift planted and found, and /metrics scraped from a running service."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from prometheus_client.parser import text_string_to_metric_families

from course_lib import infer as I
from course_lib import serve as S
from course_lib.monitoring import DriftMonitor, instrument, psi

N_ITEMS, D, MAX_LEN = 30, 8, 6


def test_psi_by_hand():
    r, c = np.array([50, 30, 20]), np.array([30, 30, 40])
    expected = (0.3 - 0.5) * np.log(0.3 / 0.5) + 0 + (0.4 - 0.2) * np.log(0.4 / 0.2)
    assert psi(r, c) == pytest.approx(expected)
    assert psi(r, r * 3) == pytest.approx(0.0)
    assert psi(r, c) == pytest.approx(psi(c, r))
    with pytest.raises(ValueError, match="same bins"):
        psi(r, c[:2])


def test_drift_monitor_finds_a_planted_shift_and_not_a_resample():
    rng = np.random.default_rng(0)
    pop = 1.0 / np.arange(1, 201) ** 1.1
    pop /= pop.sum()

    def histories(n, p, mean_len):
        return [rng.choice(200, size=max(1, int(rng.poisson(mean_len))), p=p) for _ in range(n)]

    mon = DriftMonitor(histories(3000, pop, 12))
    for h in histories(500, pop, 12):                 # same process: stable
        mon.observe(h)
    same = mon.report()
    assert same["item_popularity"] < 0.05 and same["history_length"] < 0.05 and not same["drifted"]
    mon.reset()
    tail = pop[::-1] / pop.sum()                      # users now buy the long tail, in longer sessions
    for h in histories(500, tail, 25):
        mon.observe(h)
    shifted = mon.report()
    assert shifted["item_popularity"] > 0.2 and shifted["history_length"] > 0.2 and shifted["drifted"]


class Stand(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.item_emb = nn.Embedding(N_ITEMS + 1, D, padding_idx=0)

    @property
    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight

    def score(self, h: torch.Tensor) -> torch.Tensor:
        return self.item_emb(h).mean(1) @ self.item_emb.weight.T


def _app():
    items = pd.DataFrame({"item_id": [None] + list(range(101, 101 + N_ITEMS)),
                          "title": ["<pad>"] + [f"p{i}" for i in range(N_ITEMS)],
                          "category": [None] + ["Books"] * N_ITEMS, "price": [np.nan] + [10.0] * N_ITEMS})
    cat = I.Catalogue(items, popularity=np.r_[0.0, np.arange(1, N_ITEMS + 1)])
    rec = I.Recommender(Stand().eval(), cat, max_len=MAX_LEN)
    service = S.RecommendationService(rec, user_ids=[1, 2], histories=[np.array([1, 2]), np.array([3])])
    drift = DriftMonitor([[101, 102, 103], [104, 105], [101, 102]])
    return instrument(S.create_app(service), n_items=N_ITEMS, drift=drift)


def test_metrics_endpoint_scraped_from_the_running_service():
    app = _app()
    recommended = set()
    with S.ThreadedServer(app) as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        for k, hist in [(3, [101, 102]), (5, [120, 121, 122]), (4, [105])]:
            r = client.post("/recommend", json={"history": hist, "k": k})
            assert r.status_code == 200
            recommended |= {it["item_id"] for it in r.json()["items"]}
        r = client.post("/recommend", json={"user_id": 1, "k": 2})
        assert r.status_code == 200
        recommended |= {it["item_id"] for it in r.json()["items"]}
        recommended |= {it["item_id"] for it in client.post("/recommend", json={"user_id": 2, "k": 2}).json()["items"]}
        assert client.post("/recommend", json={"k": 0, "history": [101]}).status_code == 422
        assert client.get("/no/such/route").status_code == 404
        r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    count = {(s.labels["path"], s.labels["status"]): s.value for s in families["recsys_requests"].samples
             if s.name.endswith("_total")}
    assert count[("/recommend", "200")] == 5 and count[("/recommend", "422")] == 1 and count[("other", "404")] == 1
    lat = [s.value for s in families["recsys_request_latency_seconds"].samples
           if s.name.endswith("_count") and s.labels["path"] == "/recommend"]
    assert lat == [6]
    coverage = families["recsys_recommendation_coverage"].samples[0].value
    assert coverage == pytest.approx(len(recommended) / N_ITEMS)        # the 5 answers' distinct items
    psi_item = {s.labels["feature"]: s.value for s in families["recsys_history_drift_psi"].samples}
    assert set(psi_item) == {"item_popularity", "history_length"} and psi_item["item_popularity"] > 0
    assert families["recsys_history_drift_observed"].samples[0].value == 3
