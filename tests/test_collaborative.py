"""RatingsRBM (collaborative filtering RBM): sparse statistics vs a dense reference, learning on
synthetic ratings, validation, reproducibility, recommend, save/load, and MovieLens 100K."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonium import io
from harmonium.collaborative import RatingsRBM, RatingsRBMModel, bias_baseline, cd_statistics


def synthetic(seed=0, n_users=60, n_items=40, density=0.5):
    """Two groups of users; group A rates items 0..19 high and 20..39 low, group B the opposite."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in range(n_items):
            if rng.random() < density:
                likes = (u < n_users // 2) == (i < n_items // 2)
                r = rng.choice([4, 5]) if likes else rng.choice([1, 2])
                rows.append((u + 1, i + 1, r))
    a = np.array(rows, dtype=np.int64)
    perm = rng.permutation(len(a))
    n_test = len(a) // 5
    return a[perm[n_test:]], a[perm[:n_test]]


def test_sparse_statistics_match_dense():
    torch.manual_seed(0)
    n_cases, n_items, K, H = 3, 5, 4, 7
    model = RatingsRBMModel(n_items, K, H).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    ratings = torch.randint(0, K, (n_cases, n_items), generator=g)
    case, vis = mask.nonzero(as_tuple=True)
    rating = ratings[case, vis]
    for k in (1, 3):
        st = cd_statistics(model, case, vis, rating, n_cases, k=k, generator=None)
        # dense reference with one-hot V and a mask over unrated items
        W, b, c = model.W.detach(), model.vb.detach(), model.hb.detach()
        M = mask[:, :, None].double()
        V = torch.nn.functional.one_hot(ratings, K).double() * M
        ph0 = torch.sigmoid(c + torch.einsum("uik,ikj->uj", V, W))
        ph = ph0
        for _ in range(k):
            pv = torch.softmax(b + torch.einsum("uj,ikj->uik", ph, W), dim=2) * M
            ph = torch.sigmoid(c + torch.einsum("uik,ikj->uj", pv, W))
        torch.testing.assert_close(st["pos_W"], torch.einsum("uik,uj->ikj", V, ph0))
        torch.testing.assert_close(st["neg_W"], torch.einsum("uik,uj->ikj", pv, ph))
        torch.testing.assert_close(st["pos_vb"], V.sum(0))
        torch.testing.assert_close(st["neg_vb"], pv.sum(0))
        torch.testing.assert_close(st["pos_hb"], ph0.sum(0))
        torch.testing.assert_close(st["neg_hb"], ph.sum(0))


@pytest.mark.parametrize("item_based", [False, True])
def test_learns_synthetic_groups(item_based):
    train, test = synthetic()
    m = RatingsRBM(20, item_based=item_based, learning_rate=0.05, epochs=60, batch_size=8,
                   random_state=0).fit(train)
    rmse_mean = np.sqrt(np.mean((test[:, 2] - train[:, 2].mean()) ** 2))
    rmse = m.score(test)
    assert rmse < 0.6 * rmse_mean, (rmse, rmse_mean)
    p = m.predict(test[:, :2])
    assert p.shape == (len(test),) and p.min() >= 1 and p.max() <= 5


def test_binary_variant_synthetic():
    train, test = synthetic(1)
    m = RatingsRBM(20, binary=True, learning_rate=0.05, epochs=40, batch_size=8, random_state=0).fit(train)
    p = m.predict(test)
    assert ((p >= 0) & (p <= 1)).all()
    assert m.binary_mae(test) < 0.1
    with pytest.raises(ValueError):
        RatingsRBM(5, epochs=1).fit(train).binary_mae(test)


def test_validation_errors():
    good = np.array([[1, 1, 3], [1, 2, 5], [2, 1, 1]])
    m = RatingsRBM(4, epochs=1, random_state=0)
    for bad in ([[1, 1, 6]], [[1, 1, 0]], [[1, 1, 2.5]], [[1, 1, np.nan]], np.zeros((0, 3)),
                [[1, 2]], [1, 2, 3], [[1, 1, 3], [1, 1, 4]], [["a", "b", "c"]]):
        with pytest.raises(ValueError):
            m.fit(np.asarray(bad, dtype=object) if isinstance(bad, list) and bad and isinstance(bad[0], list)
                  and isinstance(bad[0][0], str) else bad)
    for kwargs in ({"n_hidden": 0}, {"learning_rate": -1}, {"momentum": 1.0}, {"k": 0}, {"k": [1, 0]},
                   {"n_ratings": 1}, {"dtype": "int8"}, {"binary": "yes"}):
        with pytest.raises(ValueError):
            RatingsRBM(**{"epochs": 1, **kwargs}).fit(good)
    m.fit(good)
    with pytest.raises(ValueError):
        m.predict([[1.5, 1]])
    with pytest.raises(ValueError):
        m.predict(np.zeros((0, 2)))
    with pytest.raises(ValueError):
        m.score([[1, 1, 7]])


def test_reproducible_and_global_rng_untouched():
    train, test = synthetic(2)
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    kw = dict(n_hidden=10, epochs=5, k=[1, 1, 3], batch_size=8, random_state=7)
    p1 = RatingsRBM(**kw).fit(train).predict(test)
    p2 = RatingsRBM(**kw).fit(train).predict(test)
    np.testing.assert_array_equal(p1, p2)
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])
    p3 = RatingsRBM(**{**kw, "random_state": 8}).fit(train).predict(test)
    assert not np.array_equal(p1, p3)


def test_fallbacks_and_recommend():
    train, _ = synthetic(3)
    m = RatingsRBM(10, epochs=20, batch_size=8, learning_rate=0.05, random_state=0).fit(train)
    item_mean = train[train[:, 1] == 3, 2].mean()
    p = m.predict([[999, 3], [999, 999], [1, 999]])
    np.testing.assert_allclose(p, [item_mean, train[:, 2].mean(), train[:, 2].mean()])
    rated = set(train[train[:, 0] == 1, 1].tolist())
    rec = m.recommend(1, n=5)
    assert len(rec) == 5 and not rated & {i for i, _ in rec}
    scores = [s for _, s in rec]
    assert scores == sorted(scores, reverse=True)
    # user 1 is in group A: recommended unrated items should be from items 1..20
    assert all(i <= 20 for i, _ in rec[:3])
    rec_all = m.recommend(1, n=1000, exclude_rated=False)
    assert len(rec_all) == len(np.unique(train[:, 1]))
    assert len(m.recommend(12345, n=3)) == 3


def test_save_load_roundtrip(tmp_path):
    train, test = synthetic(4)
    for kw in ({}, {"item_based": True}, {"binary": True}):
        m = RatingsRBM(8, epochs=3, batch_size=8, random_state=0, **kw).fit(train)
        path = m.save(tmp_path / "m.safetensors")
        m2 = io.load(path)
        assert isinstance(m2, RatingsRBM) and m2.get_params() == m.get_params()
        np.testing.assert_allclose(m2.predict(test), m.predict(test), rtol=1e-6)
        assert m2.recommend(1, 4) == m.recommend(1, 4)


def test_bias_baseline_beats_global_mean():
    rng = np.random.default_rng(5)
    u, i = rng.integers(0, 80, 3000), rng.integers(0, 50, 3000)
    key = np.unique(u * 50 + i)
    u, i = key // 50, key % 50
    r = np.clip(np.round(3 + rng.normal(0, 1, 80)[u] + rng.normal(0, 1, 50)[i] + rng.normal(0, 0.3, len(u))), 1, 5)
    a = np.stack([u + 1, i + 1, r], 1).astype(np.int64)[rng.permutation(len(u))]
    train, test = a[: len(a) * 4 // 5], a[len(a) * 4 // 5:]
    rmse_mean = np.sqrt(np.mean((test[:, 2] - train[:, 2].mean()) ** 2))
    assert bias_baseline(train, test) < 0.7 * rmse_mean


def _movielens_or_skip():
    root = os.environ.get("HARMONIUM_DATA")
    if not root or not (Path(root) / "ml-100k" / "u1.base").is_file():
        pytest.skip("MovieLens 100K not available (set HARMONIUM_DATA)")
    from harmonium.datasets import load_movielens
    return load_movielens("100k", fold=1, download=False)


def test_movielens_fold1():
    train, test = _movielens_or_skip()
    base = bias_baseline(train, test)
    m = RatingsRBM(100, item_based=True, learning_rate=0.1, epochs=8, random_state=0).fit(train)
    rmse = m.score(test)
    assert rmse < 1.0 and rmse < base + 0.05, (rmse, base)


def test_movielens_binary():
    train, test = _movielens_or_skip()
    m = RatingsRBM(100, binary=True, learning_rate=0.1, epochs=5, random_state=0).fit(train)
    assert m.binary_mae(test) < 0.3


def test_transform_gives_the_training_users_hidden_features():
    rng = np.random.default_rng(0)
    users, items = np.meshgrid(np.arange(1, 13), np.arange(1, 8), indexing="ij")
    ratings = rng.integers(1, 6, users.shape)
    X = np.stack([users.ravel(), items.ravel(), ratings.ravel()], 1)
    X = X[rng.random(len(X)) < 0.7]
    from harmonium.collaborative import RatingsRBM
    m = RatingsRBM(n_hidden=5, epochs=3, random_state=0).fit(X)
    assert np.allclose(m.transform(X), m.hidden_probabilities(), atol=1e-6)
    one = m.transform(X[X[:, 0] == X[0, 0]])
    assert one.shape == (1, 5) and np.allclose(one[0], m.hidden_probabilities()[0], atol=1e-6)
