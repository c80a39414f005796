"""The recommendation service, run for real on loopback: answers, bad input, batching, bundles, CLI.

Every test talks HTTP to a real uvicorn server (in a thread of this process, or a separate
process started with ``python -m course_lib.serve``), never to a mock. Loads are small (a few
hundred requests); timings are not asserted here (they belong in benchmarks/).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from course_lib import infer as I
from course_lib import loadtest as L
from course_lib import serve as S
from course_lib.data import pad_sequences

N_ITEMS, D, MAX_LEN = 40, 8, 5


class Stand(nn.Module):
    """A stand-in sequential model: mean of item embeddings through a linear layer."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.item_emb = nn.Embedding(N_ITEMS + 1, D, padding_idx=0)
        self.lin = nn.Linear(D, D)
        self.delay_s = delay_s
        self.calls: list[int] = []

    @property
    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight

    def user_vector(self, h: torch.Tensor) -> torch.Tensor:
        m = (h != 0).unsqueeze(-1).to(self.item_emb.weight.dtype)
        return self.lin((self.item_emb(h) * m).sum(1) / m.sum(1).clamp_min(1))

    def score(self, h: torch.Tensor) -> torch.Tensor:
        if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):   # not while ONNX traces it
            self.calls.append(len(h))
        if self.delay_s:
            time.sleep(self.delay_s)           # a slow model: requests pile up while it runs
        return self.user_vector(h) @ self.item_emb.weight.T


def _catalogue() -> I.Catalogue:
    items = pd.DataFrame({"item_id": [None] + list(range(501, 501 + N_ITEMS)),
                          "title": ["<pad>"] + [f"product {i}" for i in range(N_ITEMS)],
                          "category": [None] + [["Books", "Toys"][i % 2] for i in range(N_ITEMS)],
                          "price": [np.nan] + [float(5 + i) for i in range(N_ITEMS)]})
    stock = np.ones(N_ITEMS + 1, dtype=bool)
    stock[1:8] = False
    return I.Catalogue(items, in_stock=stock, popularity=np.r_[0.0, np.arange(1, N_ITEMS + 1)])


USERS = [11, 12, 13, 14]
HISTORIES = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6, 7, 8, 9, 10, 11]), np.array([12, 13])]


def _service(model: nn.Module | None = None, **kwargs) -> S.RecommendationService:
    rec = I.Recommender(model or Stand().eval(), _catalogue(), max_len=MAX_LEN, cache_size=kwargs.pop("cache_size", 0))
    return S.RecommendationService(rec, user_ids=USERS, histories=[h.copy() for h in HISTORIES], **kwargs)


@pytest.fixture(scope="module")
def server():
    with S.ThreadedServer(S.create_app(_service(cache_size=100))) as srv:
        yield srv


def _post(url: str, body, **kw) -> httpx.Response:
    return httpx.post(f"{url}/recommend", json=body, timeout=10, **kw)


# ---------------------------------------------------------------------------- answers
def test_health_describes_what_is_served(server):
    h = httpx.get(f"{server.url}/health").json()
    assert h["status"] == "ok" and h["n_items"] == N_ITEMS and h["max_len"] == MAX_LEN
    assert h["item_id_type"] == "int" and h["categories"] == ["Books", "Toys"] and h["n_users"] == 4


def test_recommend_by_user_equals_the_library():
    rec = I.Recommender(Stand().eval(), _catalogue(), max_len=MAX_LEN)
    want = rec.recommend(HISTORIES[2], k=6)
    with S.ThreadedServer(S.create_app(_service())) as srv:
        r = _post(srv.url, {"user_id": 13, "k": 6})
    assert r.status_code == 200
    body = r.json()
    assert [it["item_id"] for it in body["items"]] == want["item_id"].tolist()
    np.testing.assert_allclose([it["score"] for it in body["items"]], want["score"], rtol=1e-6)
    assert body["source"] == "model" and body["history_length"] == 7
    seen = set(_catalogue().item_ids[HISTORIES[2]].tolist())
    assert not seen & {it["item_id"] for it in body["items"]}


@pytest.mark.parametrize("cache_size, micro_batching", [(0, False), (100, True)])
def test_sasrec_service_fast_path_and_cache_equal_the_full_forward(cache_size, micro_batching):
    """The service scores SASRec through encode_last (and, with the cache, stored user vectors):
    every answer must be the plain one — pad to max_len, the full forward pass, mask, top-k."""
    from course_lib.models.sasrec import SASRec, SASRecConfig

    torch.manual_seed(3)
    m = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=16, n_heads=2, init_std=0.3)).eval()
    rec = I.Recommender(m, _catalogue(), max_len=MAX_LEN, cache_size=cache_size)
    svc = S.RecommendationService(rec, user_ids=USERS, histories=[h.copy() for h in HISTORIES],
                                  micro_batching=micro_batching)
    extra = [np.array([3, 9, 27, 14, 2]), np.array([40, 1])]
    bodies = [{"user_id": u, "k": 5} for u in USERS] * 2 + [{"history": (500 + h).tolist(), "k": 5} for h in extra]
    with S.ThreadedServer(S.create_app(svc)) as srv:
        answers = asyncio.run(_concurrent(srv.url, bodies[:len(USERS)]))      # first round: computed
        answers += asyncio.run(_concurrent(srv.url, bodies[len(USERS):]))     # again, and two new histories
        health = httpx.get(f"{srv.url}/health").json()
    if cache_size:
        assert rec._retrieval is True and health["cache"]["hits"] >= len(USERS)   # the second round: stored vectors
    else:
        assert rec.fast_path is True
    histories = HISTORIES * 2 + extra
    with torch.no_grad():
        scores = m.score(pad_sequences(histories, MAX_LEN))           # the full forward pass at max_len
    for r, (answer, h) in enumerate(zip(answers, histories)):
        row = scores[r].clone()
        row[h] = float("-inf")
        top = torch.topk(row, 5)
        assert [it["item_id"] for it in answer["items"]] == (500 + top.indices).tolist()
        np.testing.assert_allclose([it["score"] for it in answer["items"]], top.values.numpy(), rtol=1e-5, atol=1e-5)


def test_filters_are_obeyed_over_http(server):
    body = {"history": [501, 502], "k": 10, "filters": {"categories": ["Toys"], "min_price": 10, "max_price": 30,
                                                         "in_stock": True}}
    r = _post(server.url, body)
    assert r.status_code == 200
    items = r.json()["items"]
    assert items and all(it["category"] == "Toys" and 10 <= it["price"] <= 30 and it["in_stock"] for it in items)
    # and when they leave fewer than k items, the answer says so instead of padding the list
    r = _post(server.url, {"history": [501], "k": 10, "filters": {"categories": ["Toys"], "max_price": 12}})
    assert r.status_code == 200 and r.json()["n_items"] < 10 and "relax the filters" in r.json()["note"]


def test_exclude_seen_and_empty_history(server):
    shown = _post(server.url, {"history": [501, 502, 503], "k": N_ITEMS, "exclude_seen": False}).json()
    assert {501, 502, 503} <= {it["item_id"] for it in shown["items"]}
    empty = _post(server.url, {"history": [], "k": 3}).json()
    assert empty["source"] == "popularity" and [it["item_id"] for it in empty["items"]] == [540, 539, 538]


def test_items_endpoint(server):
    r = httpx.get(f"{server.url}/items/503")
    assert r.status_code == 200 and r.json()["title"] == "product 2" and r.json()["price"] == 7.0
    r = httpx.get(f"{server.url}/items/9")
    assert r.status_code == 404 and "unknown item id" in r.json()["error"]


def test_a_new_event_invalidates_the_cached_answer(server):
    first = _post(server.url, {"user_id": 12, "k": 5}).json()["items"]
    again = _post(server.url, {"user_id": 12, "k": 5}).json()["items"]
    assert first == again
    stale_before = httpx.get(f"{server.url}/health").json()["cache"]["stale"]
    bought = first[0]["item_id"]
    r = httpx.post(f"{server.url}/users/12/events", json={"item_id": bought})
    assert r.status_code == 200 and r.json()["history_length"] == 2
    after = _post(server.url, {"user_id": 12, "k": 5}).json()
    assert bought not in [it["item_id"] for it in after["items"]] and after["history_length"] == 2
    assert httpx.get(f"{server.url}/health").json()["cache"]["stale"] == stale_before + 1


# ---------------------------------------------------------------------------- bad input
def test_every_bad_input_gets_the_right_4xx_and_a_message(server):
    health = httpx.get(f"{server.url}/health").json()
    cases = L.bad_input_cases(health)
    assert len(cases) >= 30
    table = L.run_cases(server.url, cases)
    wrong = table[~table["ok"]]
    assert wrong.empty, wrong.to_string()
    assert (table["got"] < 500).all()
    bad = table[table["expected"] >= 400]
    assert bad["message"].str.len().gt(15).all(), bad[bad["message"].str.len() <= 15].to_string()
    # the messages name the problem
    msg = dict(zip(table["case"], table["message"]))
    assert "k" in msg["k = 0"] and "greater than or equal to 1" in msg["k = 0"]
    assert f"max_len={MAX_LEN}" in msg["history longer than max_len"]
    assert "unknown item id" in msg["unknown item in history"] and "1000000007" in msg["unknown item in history"]
    assert "choose from: Books, Toys" in msg["unknown category"]
    assert "malformed JSON" in msg["malformed JSON"]


def test_string_user_id_for_integer_users_is_refused(server):
    r = _post(server.url, {"user_id": "11"})
    assert r.status_code == 422 and "must be an integer" in r.json()["error"]


# ---------------------------------------------------------------------------- batching and load
async def _concurrent(url: str, bodies: list[dict]) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        responses = await asyncio.gather(*(client.post("/recommend", json=b) for b in bodies))
    assert all(r.status_code == 200 for r in responses)
    return [r.json() for r in responses]


def test_micro_batching_batches_and_gives_the_same_answers():
    bodies = [{"user_id": u, "k": 4} for u in USERS] * 4 + [
        {"history": [501 + i], "k": 3, "filters": {"categories": ["Books"]}} for i in range(8)]
    slow = Stand(delay_s=0.03).eval()
    with S.ThreadedServer(S.create_app(_service(slow, micro_batching=True))) as srv:
        batched = asyncio.run(_concurrent(srv.url, bodies))
        health = httpx.get(f"{srv.url}/health").json()
    assert health["largest_batch"] > 1 and health["batches"] < len(bodies)
    assert max(slow.calls) > 1
    with S.ThreadedServer(S.create_app(_service(Stand().eval(), micro_batching=False))) as srv:
        single = asyncio.run(_concurrent(srv.url, bodies))
        health = httpx.get(f"{srv.url}/health").json()
    assert health["largest_batch"] == 1 and health["batches"] == len(bodies)
    for a, b in zip(batched, single):
        assert [it["item_id"] for it in a["items"]] == [it["item_id"] for it in b["items"]]
        np.testing.assert_allclose([it["score"] for it in a["items"]], [it["score"] for it in b["items"]],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("client", L.CLIENTS)
def test_small_load_has_no_server_errors(server, client):
    payloads = [{"user_id": u, "k": 10} for u in USERS] + [{"history": [501, 510], "k": 5}]
    result = L.load_test(server.url, payloads, concurrency=8, n_requests=200, time_limit_s=30, client=client)
    assert result.requests == 200 and result.status_counts == {200: 200} and result.n_5xx == 0
    assert result.transport_errors == 0
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert result.throughput_rps > 0 and len(result.latencies_ms) == 200


@pytest.mark.parametrize("client", L.CLIENTS)
def test_warm_up_requests_are_sent_but_not_measured(server, client):
    """The warm-up runs first on the same connections: the server answers warm-up + measured requests, the
    result holds only the measured ones (a warm-up of bad requests leaves no 422 in it)."""
    before = httpx.get(f"{server.url}/health").json()["requests"]
    payloads = [{"user_id": USERS[0], "k": 0}] * 20 + [{"user_id": USERS[i % len(USERS)], "k": 10} for i in range(30)]
    result = L.load_test(server.url, payloads, concurrency=4, n_requests=30, warmup=20, client=client)
    after = httpx.get(f"{server.url}/health").json()["requests"]
    assert result.requests == 30 and len(result.latencies_ms) == 30
    assert set(result.status_counts) == {200} and sum(result.status_counts.values()) == 30   # bad ones were warm-up
    assert after - before == 30                            # the 20 bad warm-up requests never reached the model
    assert result.throughput_rps > 0 and result.wall_s > 0
    with pytest.raises(ValueError, match="warmup"):
        L.load_test(server.url, payloads, concurrency=1, n_requests=1, warmup=-1)


@pytest.mark.parametrize("client", L.CLIENTS)
def test_load_test_counts_status_codes_and_refused_connections(server, client):
    """Both clients send the same JSON bodies: a bad one gets its 4xx, and a closed port counts as
    transport errors, not as answers."""
    payloads = [{"user_id": USERS[0], "k": 10}, {"user_id": USERS[0], "k": 0}, {"k": 10}]
    result = L.load_test(server.url, payloads, concurrency=3, n_requests=30, client=client)
    assert result.status_counts == {200: 10, 422: 20} and result.transport_errors == 0
    closed = S.free_port("127.0.0.1")
    refused = L.load_test(f"http://127.0.0.1:{closed}", payloads, concurrency=2, n_requests=6, client=client)
    assert refused.requests == 0 and refused.transport_errors == 6 and refused.status_counts == {}


def test_load_test_refuses_other_hosts_and_unbounded_runs():
    with pytest.raises(ValueError, match="only target this machine"):
        L.load_test("http://example.com:80", [{}], concurrency=1, n_requests=1)
    with pytest.raises(ValueError, match="only target this machine"):
        L.run_cases("http://10.0.0.1:8000", [])
    with pytest.raises(ValueError, match="n_requests"):
        L.load_test("http://127.0.0.1:1", [{}], concurrency=1, n_requests=L.MAX_REQUESTS + 1)
    with pytest.raises(ValueError, match="time_limit_s"):
        L.load_test("http://127.0.0.1:1", [{}], concurrency=1, n_requests=1, time_limit_s=10_000)
    with pytest.raises(ValueError, match="client"):
        L.load_test("http://127.0.0.1:1", [{}], concurrency=1, n_requests=1, client="curl")
    with pytest.raises(ValueError, match="loopback"):
        S.ServerProcess("anything", host="0.0.0.0")


def test_load_test_stops_at_its_time_limit(server):
    slow = [{"user_id": u, "k": 10} for u in USERS]
    start = time.perf_counter()
    result = L.load_test(server.url, slow, concurrency=2, n_requests=L.MAX_REQUESTS, time_limit_s=0.5)
    assert time.perf_counter() - start < 5 and result.requests < L.MAX_REQUESTS


def test_percentile_by_hand():
    assert L.percentile([1, 2, 3, 4], 50) == 2.5 and L.percentile(list(range(101)), 99) == 99.0


def test_a_failing_model_fails_its_batch_not_the_server():
    async def scenario():
        def run_batch(jobs):
            if any(j.k == 13 for j in jobs):
                raise RuntimeError("model exploded")
            return [j.k for j in jobs]

        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            b = S.MicroBatcher(run_batch, pool, max_batch=4)
            b.start()
            job = lambda k: S.Job(history=np.array([1]), k=k, filters=None, exclude_seen=True, key=None)
            ok = await b.submit(job(3))
            with pytest.raises(RuntimeError, match="exploded"):
                await b.submit(job(13))
            again = await b.submit(job(5))
            await b.stop()
            return ok, again

    assert asyncio.run(scenario()) == (3, 5)


# ---------------------------------------------------------------------------- bundles and the CLI
@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle")
    S.save_bundle(path, Stand().eval(), _catalogue(), max_len=MAX_LEN, user_ids=USERS, histories=HISTORIES,
                  name="stand-in")
    return path


def test_bundle_round_trip_and_checksums(onnx_bundle, tmp_path):
    meta = json.loads((onnx_bundle / "bundle.json").read_text())
    assert meta["backends"] == ["onnx"] and meta["n_items"] == N_ITEMS and meta["max_len"] == MAX_LEN
    b = S.load_bundle(onnx_bundle)
    assert b.backend == "onnx" and b.user_ids == USERS
    assert [h.tolist() for h in b.histories] == [h.tolist() for h in HISTORIES]
    assert b.catalogue.item_ids[1:].tolist() == _catalogue().item_ids[1:].tolist()
    assert b.catalogue.in_stock.tolist() == _catalogue().in_stock.tolist()
    with pytest.raises(S.BundleError, match="no torch model"):
        S.load_bundle(onnx_bundle, backend="torch")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(onnx_bundle, broken)
    (broken / "items.json").write_text((broken / "items.json").read_text().replace("product 1", "product X"))
    with pytest.raises(S.BundleError, match="items.json does not match its recorded SHA-256"):
        S.load_bundle(broken)
    with pytest.raises(S.BundleError, match="bundle.json is missing"):
        S.load_bundle(tmp_path)


def test_torch_bundle_of_a_course_model_round_trips(tmp_path):
    from course_lib.models.gru4rec import GRU4Rec, GRU4RecConfig

    model = GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=8, hidden_size=8)).eval()
    S.save_bundle(tmp_path, model, _catalogue(), max_len=MAX_LEN, onnx=False)
    b = S.load_bundle(tmp_path)
    assert b.backend == "torch" and type(b.model) is GRU4Rec
    h = pad_sequences([[1, 2, 3], [4]], MAX_LEN)
    torch.testing.assert_close(b.model.score(h), model.score(h).detach())
    q = S.load_bundle(tmp_path, precision="int8")
    assert q.backend == "torch/int8"
    assert torch.equal(q.model.score(h)[:, 1:].argmax(1), model.score(h).detach()[:, 1:].argmax(1))
    spec = json.loads((tmp_path / "model.json").read_text())
    spec["module"] = "os"
    (tmp_path / "model.json").write_text(json.dumps(spec))
    meta = json.loads((tmp_path / "bundle.json").read_text())
    meta["sha256"]["model.json"] = S._sha256(tmp_path / "model.json")
    (tmp_path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(S.BundleError, match="refusing to import 'os'"):
        S.load_bundle(tmp_path)


def test_cli_serves_the_bundle_in_another_process(onnx_bundle):
    rec = I.Recommender(Stand().eval(), _catalogue(), max_len=MAX_LEN)
    want = rec.recommend(HISTORIES[0], k=5)["item_id"].tolist()
    with S.ServerProcess(onnx_bundle, backend="onnx", threads=1) as srv:
        assert srv.info["backend"] == "onnx" and srv.info["model"] == "stand-in"
        assert srv.url.startswith("http://127.0.0.1:")
        r = _post(srv.url, {"user_id": 11, "k": 5})
        assert r.status_code == 200 and [it["item_id"] for it in r.json()["items"]] == want
        result = L.load_test(srv.url, [{"user_id": u} for u in USERS], concurrency=4, n_requests=100)
        assert result.n_5xx == 0 and result.status_counts == {200: 100}
        process = srv.process
    assert process.poll() is not None and not srv.running


def test_cli_explains_a_missing_bundle(tmp_path):
    out = subprocess.run([sys.executable, "-m", "course_lib.serve", "--checkpoint", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no serving bundle" in out.stderr


class Exploding(Stand):
    """A model with a bug that shows only on some inputs (item 9 in the history)."""

    def score(self, h: torch.Tensor) -> torch.Tensor:
        if bool((h == 9).any()):
            raise RuntimeError("a bug in the model")
        return super().score(h)


def test_a_bug_is_a_logged_500_with_a_json_body_and_the_server_lives_on():
    with S.ThreadedServer(S.create_app(_service(Exploding().eval()))) as srv:
        bad = _post(srv.url, {"user_id": 13, "k": 3})            # user 13's history holds item 9
        good = _post(srv.url, {"user_id": 11, "k": 3})
    assert bad.status_code == 500 and bad.json() == {"error": "internal error; the service logged it"}
    assert "a bug in the model" not in bad.text, "internals are not sent to the client"
    assert good.status_code == 200 and len(good.json()["items"]) == 3


def test_answers_read_the_stock_at_answer_time():
    svc = _service()
    with S.ThreadedServer(S.create_app(svc)) as srv:
        first = _post(srv.url, {"user_id": 11, "k": 5}).json()["items"]
        top = first[0]["item_id"]
        svc.catalogue.in_stock[svc.catalogue.lookup([top])[0][0]] = not first[0]["in_stock"]
        again = _post(srv.url, {"user_id": 11, "k": 5}).json()["items"]
    assert [it["item_id"] for it in again] == [it["item_id"] for it in first]
    assert again[0]["in_stock"] == (not first[0]["in_stock"]) and again[1:] == first[1:]
    assert list(first[0]) == ["item_id", "title", "category", "price", "in_stock", "score"]
