"""RatingsRBM (collaborative filtering RBM): sparse statistics vs a dense reference, learning on
synthetic ratings, validation, reproducibility, recommend, save/load, and MovieLens 100K."""

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonium import io
from harmonium.collaborative import RatingsRBM, RatingsRBMModel, bias_baseline, cd_statistics


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


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


def _exact_cd2_negative_visible_means(model, r0):
    """E[neg_vb] of CD-2 for one case with every item rated (``r0``), by enumerating the chain
    h1 ~ p(h | r0), v1 ~ p(v | h1), h2 ~ p(h | v1) and averaging the reconstruction p(v | h2)."""
    W, b, c = model.W.detach(), model.vb.detach(), model.hb.detach()
    n_items, K, H = W.shape
    hs = [torch.tensor(h, dtype=torch.float64) for h in itertools.product([0, 1], repeat=H)]

    def p_h(v, h):
        p = torch.sigmoid(c + sum(W[i, v[i]] for i in range(n_items)))
        return torch.prod(torch.where(h > 0, p, 1 - p))

    out = torch.zeros(n_items, K, dtype=torch.float64)
    for h1 in hs:
        pv1 = torch.softmax(b + W @ h1, 1)
        for v1 in itertools.product(range(K), repeat=n_items):
            p_v1 = torch.prod(pv1[torch.arange(n_items), list(v1)])
            for h2 in hs:
                out += p_h(r0, h1) * p_v1 * p_h(v1, h2) * torch.softmax(b + W @ h2, 1)
    return out


def test_cd_chains_draw_the_ratings_they_continue_from():
    """CD-2 with sampling: the first sweep's ratings are drawn, not passed as probabilities, so the
    average reconstruction over 200,000 copies of one user matches the exact expectation (passing
    the softmax probabilities along misses it by about 9 standard errors)."""
    n_items, K, H, n = 3, 3, 2, 200_000
    model = RatingsRBMModel(n_items, K, H).double()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 1.5)
    r0 = [0, 2, 1]
    case = torch.arange(n).repeat_interleave(n_items)
    vis = torch.arange(n_items).repeat(n)
    with torch.no_grad():
        st = cd_statistics(model, case, vis, torch.tensor(r0).repeat(n), n, k=2,
                           generator=torch.Generator().manual_seed(5))
        exact = _exact_cd2_negative_visible_means(model, r0)
    se = 0.5 / n ** 0.5  # a bound on the standard error of a mean of probabilities
    assert ((st["neg_vb"] / n - exact).abs() < 4 * se).all(), (st["neg_vb"] / n, exact)


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


# ------------------------------------------------------------------ missing entries
def _dense_zero_filled_statistics(model, case, vis, rating, n_cases, k=1, generator=None):
    """A deliberately WRONG reference: a dense visible layer in which unrated items are all-zero
    softmax groups that the negative phase reconstructs like any other item (the classic mistake).
    Used only to show that the missing-entry checks below can fail."""
    n_items, K, H = model.W.shape
    W, b, c = model.W.detach(), model.vb.detach(), model.hb.detach()
    V = torch.zeros(n_cases, n_items, K, dtype=W.dtype)
    V[case, vis, rating] = 1
    ph0 = torch.sigmoid(c + torch.einsum("uik,ikj->uj", V, W))
    ph = ph0
    for _ in range(k):
        h = ph if generator is None else (torch.rand(ph.shape, generator=generator, dtype=W.dtype) < ph).to(W.dtype)
        pv = torch.softmax(b + torch.einsum("uj,ikj->uik", h, W), dim=2)  # every item, rated or not
        ph = torch.sigmoid(c + torch.einsum("uik,ikj->uj", pv, W))
    return {"pos_W": torch.einsum("uik,uj->ikj", V, ph0), "neg_W": torch.einsum("uik,uj->ikj", pv, ph),
            "pos_vb": V.sum(0), "neg_vb": pv.sum(0), "pos_hb": ph0.sum(0), "neg_hb": ph.sum(0)}


def _random_model(n_items, K, H, dtype, seed=0):
    model = RatingsRBMModel(n_items, K, H).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype))
    return model


def _check_missing_entries_ignored(stats_fn, dtype, k, sampled):
    """User 0 ("A") rates items 0, 2, 5 of 8.  Users 1 and 2 rate other items and item 2.  Checks:
    (1) A's own statistics are exactly zero on every item A did not rate;
    (2) on the items only A rated (0 and 5), the batch statistics are bit-identical to A's alone,
        however the other users' ratings (A's missing entries among them) are changed or extended;
    (3) the batch statistics are the sum of the per-user ones."""
    n_items, K, H = 8, 5, 6
    model = _random_model(n_items, K, H, dtype)
    A = [(0, 0, 4), (0, 2, 1), (0, 5, 3)]
    others = [(1, 1, 0), (1, 2, 4), (1, 3, 2), (1, 6, 1), (2, 4, 3), (2, 6, 0), (2, 2, 2)]
    others_changed = [(1, 1, 3), (1, 2, 0), (1, 3, 4), (1, 4, 2), (1, 6, 4), (1, 7, 1),
                      (2, 1, 1), (2, 3, 3), (2, 4, 0), (2, 6, 2), (2, 7, 4)]

    def stats(rows, n_cases=3):
        t = torch.tensor(rows, dtype=torch.int64)
        g = torch.Generator().manual_seed(123) if sampled else None
        return stats_fn(model, t[:, 0], t[:, 1], t[:, 2], n_cases, k=k, generator=g)

    alone = stats(A, n_cases=3)  # users 1 and 2 present with no ratings: same random draws per row
    unrated = [1, 3, 4, 6, 7]
    for key in ("pos_W", "neg_W", "pos_vb", "neg_vb"):
        assert torch.count_nonzero(alone[key][unrated]) == 0, f"{key}: A's statistics touch items A did not rate"
    for rows in (A + others, A + others_changed, others_changed + A):
        st = stats(rows)
        for key in ("pos_W", "neg_W", "pos_vb", "neg_vb"):
            assert torch.equal(st[key][[0, 5]], alone[key][[0, 5]]), f"{key} of A's items depends on other users"
    # additivity over users, each computed as a batch of one (sums in another order: the dtype's
    # tolerance); with sampling the random draws of a batch of one differ, so only mean-field
    if not sampled:
        st = stats(A + others_changed)
        parts = [stats([(0, i, r) for u, i, r in A + others_changed if u == user], n_cases=1) for user in range(3)]
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
        for key in st:
            torch.testing.assert_close(st[key], sum(p[key] for p in parts), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k,sampled", [(1, False), (3, False), (1, True), (3, True)])
def test_missing_entries_never_influence_the_statistics(dtype, k, sampled):
    _check_missing_entries_ignored(cd_statistics, dtype, k, sampled)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_missing_entry_check_catches_a_zero_filled_dense_layer(dtype):
    with pytest.raises(AssertionError, match="did not rate"):
        _check_missing_entries_ignored(_dense_zero_filled_statistics, dtype, 1, False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("item_based", [False, True])
def test_fit_update_ignores_other_users_ratings(dtype, item_based):
    """Through ``fit`` (one batch holding every user, so a single update from the initial weights):
    user 1 rates items 1..3, which nobody else rates; the weights, visible biases and velocities of
    those items come out bit-identical whatever the other users' ratings of the other items (user
    1's missing entries) are, while those other items' rows do change.  A dense layer that
    reconstructed user 1's unrated items would fail: their visible biases start from the other
    users' rating counts.  For the I-RBM the same data is given with the user and item columns
    swapped, which must leave the same rows invariant."""
    rng = np.random.default_rng(0)
    n_users, n_items = 9, 12
    only_a = [0, 1, 2]  # items rated by user 1 alone
    rows = [(1, i + 1, int(rng.integers(1, 6))) for i in only_a]
    for u in range(2, n_users + 1):
        for i in range(3, n_items):
            if rng.random() < 0.6 or i == 5:
                rows.append((u, i + 1, int(rng.integers(1, 6))))
    X = np.array(rows)
    others = X[:, 0] != 1
    Y = X.copy()
    Y[others, 2] = rng.integers(1, 6, others.sum())  # every other user's ratings changed
    if item_based:
        X, Y = X[:, [1, 0, 2]], Y[:, [1, 0, 2]]
    kw = dict(n_hidden=7, epochs=1, batch_size=100, k=2, learning_rate=0.1, momentum=0.5, l2=0.01,
              item_based=item_based, dtype=dtype, random_state=3)
    a, b = RatingsRBM(**kw).fit(X), RatingsRBM(**kw).fit(Y)
    assert a.model_.W.shape[0] == n_items
    for pa, pb in zip((a.model_.W, a.model_.vb, *a._vel[:2]), (b.model_.W, b.model_.vb, *b._vel[:2])):
        assert torch.equal(pa[only_a], pb[only_a])
        assert not torch.equal(pa[5], pb[5])  # a shared item does change


# ------------------------------------------------------------------ resume
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", [{}, {"item_based": True}, {"binary": True}])
def test_resume_from_model_file_is_bit_identical(tmp_path, dtype, kind):
    """4 epochs == 2 epochs, save, load, 2 more (weights, momentum buffers, random stream, schedules)."""
    train, test = synthetic(4)
    kw = dict(n_hidden=8, batch_size=8, k=[1, 2, 3, 1], learning_rate=[0.05, 0.04, 0.03, 0.02],
              momentum=0.9, l2=0.001, dtype=dtype, random_state=0, **kind)
    full = RatingsRBM(epochs=4, **kw).fit(train)
    half = RatingsRBM(epochs=2, **kw).fit(train)
    assert half.epochs_trained_ == 2
    path = half.save(tmp_path / "half.safetensors")
    resumed = io.load(path)
    assert resumed.epochs_trained_ == 2
    assert all(torch.equal(a, b) for a, b in zip(resumed._vel, half._vel))
    resumed.set_params(epochs=4, warm_start=True).fit(train)
    assert resumed.epochs_trained_ == 4 and resumed.history_["epoch"] == [1, 2, 3, 4]
    for a, b in zip((*full.model_.parameters(), *full._vel), (*resumed.model_.parameters(), *resumed._vel)):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(full.predict(test), resumed.predict(test))
    # warm start in memory too, and a second save/load of the resumed model
    half.set_params(epochs=4, warm_start=True).fit(train)
    assert all(torch.equal(a, b) for a, b in zip(full.model_.parameters(), half.model_.parameters()))
    again = io.load(resumed.save(tmp_path / "full.safetensors"))
    assert again.epochs_trained_ == 4
    assert all(torch.equal(a, b) for a, b in zip(again._vel, full._vel))


def test_resume_needs_the_same_ids_and_a_fit_without_warm_start_restarts():
    train, _ = synthetic(4)
    m = RatingsRBM(4, epochs=2, batch_size=8, random_state=0).fit(train)
    with pytest.raises(ValueError, match="same user and item ids"):
        m.set_params(warm_start=True, epochs=3).fit(train[train[:, 0] != 1])
    fresh = RatingsRBM(4, epochs=2, batch_size=8, random_state=0).fit(train)
    m.set_params(warm_start=False, epochs=2).fit(train)
    assert m.epochs_trained_ == 2
    assert all(torch.equal(a, b) for a, b in zip(m.model_.parameters(), fresh.model_.parameters()))


def test_model_file_velocities_are_validated(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    train, _ = synthetic(4)
    path = RatingsRBM(4, epochs=1, batch_size=8, random_state=0).fit(train).save(tmp_path / "m.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    tensors["trainer.velocity.hb"] = torch.full_like(tensors["trainer.velocity.hb"], float("nan"))
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="velocity"):
        io.load(tmp_path / "bad.safetensors")
    del tensors["trainer.velocity.hb"]
    save_file(tensors, str(tmp_path / "bad2.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="velocities"):
        io.load(tmp_path / "bad2.safetensors")


# ------------------------------------------------------------------ fold-in and the six-movie toy
def test_recommend_for_a_new_users_ratings():
    train, _ = synthetic(3)
    m = RatingsRBM(10, epochs=20, batch_size=8, learning_rate=0.05, random_state=0).fit(train)
    # a user's own training ratings give the same predictions as the fitted user
    own = train[train[:, 0] == 1][:, 1:]
    fold_in = m.recommend(None, n=1000, exclude_rated=False, ratings=own)
    fitted = m.recommend(1, n=1000, exclude_rated=False)
    assert [i for i, _ in fold_in] == [i for i, _ in fitted]
    np.testing.assert_allclose([s for _, s in fold_in], [s for _, s in fitted], rtol=1e-6)
    # a new group-B fan (likes items 21..25) gets group-B items, never the rated ones
    rec = m.recommend(None, n=5, ratings=[(i, 5) for i in range(21, 26)] + [(999, 1)])
    assert all(21 <= i <= 40 and i > 25 for i, _ in rec)
    with pytest.raises(ValueError):
        m.recommend(None, ratings=[(1, 6)])
    with pytest.raises(ValueError):
        m.recommend(None, ratings=[(1, 5), (1, 4)])
    with pytest.raises(ValueError, match="user-based"):
        RatingsRBM(4, item_based=True, epochs=1, random_state=0).fit(train).recommend(None, ratings=[(1, 5)])


def _six_movies():
    import runpy

    path = Path(__file__).resolve().parents[1] / "examples" / "six_movies.py"
    return runpy.run_path(str(path))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_six_movie_example(seed):
    """Each group of fans turns on its own hidden unit (every fan of one group above 0.5 and every
    fan of the other below, on each unit); a new user who likes Harry Potter and LOTR 3 gets Avatar
    first with p(like) > 0.5 and every other movie < 0.5; an Oscar fan gets Titanic."""
    out = _six_movies()["main"](seed, verbose=False)
    h, groups = out["hidden"], np.array(out["groups"])
    fantasy, oscar = h[groups == "fantasy"], h[groups == "oscar"]
    j = int(np.argmax(fantasy.mean(0) - oscar.mean(0)))
    assert fantasy[:, j].min() > 0.5 > oscar[:, j].max()
    assert oscar[:, 1 - j].min() > 0.5 > fantasy[:, 1 - j].max()
    for rec, first in ((out["fantasy_fan"], "Avatar"), (out["oscar_fan"], "Titanic")):
        assert len(rec) == 4 and rec[0][0] == first
        assert rec[0][1] > 0.5 > max(p for _, p in rec[1:])
        assert rec[-1][0] == "Glitter" or rec[-1][1] < 0.1


# ------------------------------------------------------------------ the experiment
def test_movielens_experiment_quick(tmp_path):
    _movielens_or_skip()
    import json
    import time

    from harmonium.experiments import EXPERIMENTS, run

    assert "movielens" in EXPERIMENTS
    t = time.perf_counter()
    res = run("movielens", tmp_path, quick=True)
    assert time.perf_counter() - t < 30
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "movielens" and saved["quick"] is True
    s = res["results"]["summary"]
    assert set(s) >= {"global mean", "bias", "always like", "U-RBM", "I-RBM", "binary"}
    assert s["bias"]["rmse"]["mean"] < s["global mean"]["rmse"]["mean"] < 1.3
    for name in ("U-RBM", "I-RBM"):
        assert 0.85 < s[name]["rmse"]["mean"] < 1.15 and 0 < s[name]["mae"]["mean"] < s[name]["rmse"]["mean"]
    assert 0 < s["binary"]["binary_mae"]["mean"] < 0.3
    assert res["results"]["folds"][0]["fold"] == "u1" and res["results"]["folds"][0]["n_test"] == 20000


def test_movielens_experiment_on_the_command_line(tmp_path, capsys):
    _movielens_or_skip()
    from harmonium import cli

    assert cli.main(["experiment", "movielens", "--quick", "--out", str(tmp_path / "ml")]) == 0
    out = capsys.readouterr().out
    assert "I-RBM" in out and "U-RBM" in out and "binary MAE" in out
    assert (tmp_path / "ml" / "results.json").exists()
