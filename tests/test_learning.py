"""Learning: the algorithms raise the exact likelihood, regularisers do what they say,
schedules apply per epoch, and the same seed gives the same bits."""

import numpy as np
import pytest
import torch

import harmonium as hm
from harmonium.learning import at_epoch

from conftest import N_HIDDEN, N_VISIBLE, bars_and_stripes

BARS = np.tile(bars_and_stripes(3), (10, 1))  # 14 patterns x 10
UNIFORM_LL = -np.log(14)  # -2.64: the best any model can do
BASE = dict(n_hidden=16, learning_rate=0.05, momentum=0.9, batch_size=14, l2=0.0, sample_v_states=True,
            metrics=["log_likelihood"])


def final_ll(est):
    return est.history_["train_log_likelihood"][-1]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("algo", ["cd1", "cd1-centered", "cd10"])
def test_bars_and_stripes_reaches_minus_four_nats(algo, seed):
    kw = dict(BASE, epochs=300, random_state=seed, metrics_every=300)
    if algo == "cd1-centered":
        kw["centering"] = True
    if algo == "cd10":
        kw.update(k=10, epochs=150, metrics_every=150)
    est = hm.RBM(**kw).fit(BARS)
    assert final_ll(est) >= -4.0, est.history_
    assert final_ll(est) <= UNIFORM_LL + 1e-6


def test_parallel_tempering_reaches_minus_four_nats():
    est = hm.RBM(**dict(BASE, momentum=0.5, epochs=400, n_temperatures=6, n_chains=14, random_state=0,
                        metrics=["log_likelihood", "swap_rate"], metrics_every=400)).fit(BARS)
    assert final_ll(est) >= -4.0
    rate, worst = est.history_["swap_rate"][-1], est.history_["swap_rate_min"][-1]
    assert 0 < worst <= rate <= 1


def test_swap_rates_count_every_neighbouring_pair_and_reset():
    """Even pairs on one update, odd pairs on the next: after two updates every pair has been tried
    n_chains times; the history records the mean and the worst pair, and the counts restart."""
    est = hm.RBM(**dict(BASE, epochs=1, batch_size=4, n_temperatures=5, n_chains=3, random_state=0,
                        metrics="swap_rate")).fit(BARS[:8])
    phase = est.trainer_.phase
    assert phase.swap_rates().isnan().all()  # reset when the epoch was recorded
    pos = est.model_.start(torch.as_tensor(BARS[:4], dtype=torch.float32), sample_h=True)
    for _ in range(2):
        phase.negative(est.model_, pos, 1, sample_v=True, sample_h=True, generator=None)
    assert phase._attempted.tolist() == [3.0] * 4
    rates = phase.swap_rates(reset=True)
    assert rates.shape == (4,) and ((rates >= 0) & (rates <= 1)).all()
    assert phase.swap_rates().isnan().all()
    assert set(est.history_) >= {"swap_rate", "swap_rate_min"}
    with pytest.raises(ValueError, match="swap_rate metric needs parallel tempering"):
        hm.RBM(**dict(BASE, epochs=1, metrics="swap_rate")).fit(BARS)


def test_persistent_chains_learn():
    untrained = -6.2  # about -6.24 for a near-zero model
    est = hm.RBM(**dict(BASE, momentum=0.5, epochs=150, persistent=True, n_chains=14, random_state=0,
                        metrics_every=150)).fit(BARS)
    assert final_ll(est) > untrained + 1.0


def test_same_seed_same_bits_and_global_rng_untouched(dtype):
    torch.manual_seed(123)
    np.random.seed(123)
    before_t, before_np = torch.get_rng_state(), np.random.get_state()[1].copy()
    kw = dict(n_hidden=N_HIDDEN, epochs=3, batch_size=4, persistent=True, n_chains=3, random_state=7,
              dtype=str(dtype)[6:], sample_v_states=True, dropout=0.2)
    X = BARS[:, :N_VISIBLE] if BARS.shape[1] >= N_VISIBLE else BARS
    a = hm.RBM(**kw).fit(X)
    b = hm.RBM(**kw).fit(X)
    assert torch.equal(a.model_.W, b.model_.W)
    assert torch.equal(a.model_.hidden.bias, b.model_.hidden.bias)
    assert np.array_equal(a.sample(3, 5), b.sample(3, 5))
    c = hm.RBM(**dict(kw, random_state=8)).fit(X)
    assert not torch.equal(a.model_.W, c.model_.W)
    assert torch.equal(torch.get_rng_state(), before_t)
    assert np.array_equal(np.random.get_state()[1], before_np)


def test_schedules_apply_per_epoch():
    assert at_epoch([0.1, 0.01], 0) == 0.1
    assert at_epoch([0.1, 0.01], 1) == 0.01
    assert at_epoch([0.1, 0.01], 7) == 0.01
    assert at_epoch(3, 5) == 3
    est = hm.RBM(n_hidden=3, epochs=3, learning_rate=[0.1, 0.02, 0.005], momentum=[0.5, 0.9], k=[1, 2],
                 random_state=0, metrics=None).fit(BARS)
    group = est.trainer_.optimizer.param_groups[0]
    assert group["lr"] == 0.005 and group["momentum"] == 0.9


def test_l2_shrinks_and_max_norm_bounds_weights():
    kw = dict(n_hidden=5, epochs=20, learning_rate=0.05, random_state=0, metrics=None, W_init=0.5)
    free = hm.RBM(**kw).fit(BARS)
    decayed = hm.RBM(**kw, l2=0.05).fit(BARS)
    assert np.linalg.norm(decayed.components_) < np.linalg.norm(free.components_)
    bounded = hm.RBM(**kw, max_norm=0.3).fit(BARS)
    assert np.linalg.norm(bounded.components_, axis=1).max() <= 0.3 + 1e-5


def test_sparsity_target_lowers_hidden_activity():
    kw = dict(n_hidden=8, epochs=30, learning_rate=0.05, random_state=0, metrics=None)
    plain = hm.RBM(**kw).fit(BARS)
    sparse = hm.RBM(**kw, sparsity_target=0.05, sparsity_cost=0.5).fit(BARS)
    assert sparse.transform(BARS).mean() < plain.transform(BARS).mean() - 0.1
    assert sparse.transform(BARS).mean() < 0.2


def test_any_torch_optimizer():
    est = hm.RBM(n_hidden=16, epochs=150, batch_size=14, random_state=0, metrics=["log_likelihood"],
                 metrics_every=150, optimizer=lambda p: torch.optim.Adam(p, lr=0.01)).fit(BARS)
    assert isinstance(est.trainer_.optimizer, torch.optim.Adam)
    assert final_ll(est) > -5.0


def test_metrics_history_records_train_and_validation():
    est = hm.RBM(n_hidden=4, epochs=4, metrics_every=2, random_state=0).fit(BARS[:100], X_val=BARS[100:])
    h = est.history_
    assert h["epoch"] == [2, 4]
    for key in ("train_reconstruction_error", "train_pseudo_log_likelihood", "val_pseudo_log_likelihood",
                "free_energy_gap", "train_log_likelihood", "val_log_likelihood"):
        assert len(h[key]) == 2 and all(np.isfinite(h[key])), key


def test_initialisation_options():
    X = BARS
    est = hm.RBM(n_hidden=N_HIDDEN, epochs=0, random_state=0, hb_init=-1.0).fit(X)
    p = X.mean(0).clip(1e-3, 1 - 1e-3)
    assert np.allclose(est.intercept_visible_, np.log(p / (1 - p)), atol=1e-5)
    assert np.allclose(est.intercept_hidden_, -1.0)
    W = np.arange(9 * N_HIDDEN, dtype=float).reshape(9, N_HIDDEN) / 100
    est2 = hm.RBM(n_hidden=N_HIDDEN, epochs=0, W_init=W, vb_init=0.5).fit(X)
    assert np.allclose(est2.components_, W.T) and np.allclose(est2.intercept_visible_, 0.5)
    est3 = hm.RBM(n_hidden=N_HIDDEN, epochs=0, W_init=est2).fit(X)
    assert np.allclose(est3.components_, W.T)
    with pytest.raises(ValueError, match="W_init must have shape"):
        hm.RBM(n_hidden=N_HIDDEN, epochs=0, W_init=W.T).fit(X)


def test_gaussian_bernoulli_learns_a_mixture():
    """Two Gaussian clusters in 7-D: the hidden features separate them after training."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2, N_VISIBLE)) * 2
    labels = rng.integers(0, 2, 400)
    X = centers[labels] + rng.normal(size=(400, N_VISIBLE)) * 0.5
    est = hm.GaussianBernoulliRBM(n_hidden=N_HIDDEN, epochs=30, learning_rate=0.01, random_state=0,
                                  metrics=["pseudo_log_likelihood"]).fit(X)
    H = est.transform(X)
    from sklearn.linear_model import LogisticRegression
    assert LogisticRegression().fit(H, labels).score(H, labels) > 0.95
    assert est.history_["train_pseudo_log_likelihood"][-1] > est.history_["train_pseudo_log_likelihood"][0] - 1e-9


def test_learned_sigma_moves_towards_data_scale():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, N_VISIBLE)) * 3.0
    est = hm.RBM(n_hidden=N_HIDDEN, visible={"name": "gaussian", "learn_sigma": True}, epochs=40,
                 learning_rate=0.01, random_state=0, metrics=None).fit(X)
    sigma = est.model_.visible.sigma.detach().numpy()
    assert (sigma > 1.5).all(), sigma


def _fed_rows(monkeypatch, n_visible):
    """Spy on every update's positive-phase rows of width ``n_visible`` (RBM and DBM updates alike)."""
    from harmonium.dbm import DBMModel
    from harmonium.rbm import RBMModel

    seen = []
    rbm_write, dbm_write = RBMModel.write_gradient, DBMModel.write_gradient

    def rbm_spy(self, v_pos, *args, **kwargs):
        if v_pos.shape[1] == n_visible:
            seen.append(v_pos.detach().clone())
        return rbm_write(self, v_pos, *args, **kwargs)

    def dbm_spy(self, pos, *args, **kwargs):
        seen.append(pos[0].detach().clone())
        return dbm_write(self, pos, *args, **kwargs)

    monkeypatch.setattr(RBMModel, "write_gradient", rbm_spy)
    monkeypatch.setattr(DBMModel, "write_gradient", dbm_spy)
    return seen


@pytest.mark.parametrize("model", ["rbm", "dbm"])
def test_sample_data_trains_on_fresh_draws_with_the_rows_as_means(model, dtype, monkeypatch):
    """``sample_data``: every update sees 0/1 draws whose mean is the grey row, new at every use (the
    DBM's first pretraining RBM included); without it the rows themselves; binary rows are unchanged."""
    rng = np.random.default_rng(0)
    grey = rng.uniform(0.1, 0.9, size=(11, N_VISIBLE))
    kw = dict(batch_size=11, random_state=0, dtype=str(dtype)[6:], metrics=None)

    def fit(X, epochs, **more):
        if model == "rbm":
            return hm.RBM(n_hidden=N_HIDDEN, epochs=epochs, **kw, **more).fit(X)
        return hm.DBM(n_hidden=(N_HIDDEN, 3), n_particles=11, max_mf_updates=3, epochs=epochs,
                      pretrain_params={"epochs": epochs}, **kw, **more).fit(X)

    seen = _fed_rows(monkeypatch, N_VISIBLE)
    fit(grey, 300, sample_data=True)
    V = torch.stack(seen).double()  # (updates, 11, 7); a batch holds every row, shuffled
    assert len(seen) == (300 if model == "rbm" else 600)  # the DBM: 300 pretraining + 300 joint updates
    assert torch.all((V == 0) | (V == 1))
    assert len({tuple(v.flatten().tolist()) for v in V}) > 250  # fresh draws, not one binarisation
    # the column means over updates estimate the rows' column means (sd about 0.008 each)
    np.testing.assert_allclose(V.mean(dim=(0, 1)).numpy(), grey.mean(0), atol=0.04)

    seen.clear()
    fit(grey, 3)
    for v in seen:
        np.testing.assert_allclose(v.double().mean(0).numpy(), grey.mean(0), rtol=1e-5)

    seen.clear()
    binary = (grey > 0.5).astype(float)
    fit(binary, 3, sample_data=True)
    assert seen
    for v in seen:
        np.testing.assert_array_equal(v.double().mean(0).numpy(), binary.mean(0))


@pytest.mark.parametrize("cls", [hm.RBM, hm.DBM])
def test_sample_data_must_be_a_bool(cls):
    with pytest.raises(ValueError, match="sample_data must be True or False"):
        cls(sample_data="yes").fit(BARS)
