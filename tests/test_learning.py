"""Learning: the algorithms raise the exact likelihood, regularisers do what they say,
schedules apply per epoch, and the same seed gives the same bits."""

import numpy as np
import pytest
import torch

import harmonium as hm
from harmonium.learning import at_epoch
from harmonium.estimate import exact_log_likelihood

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


# -- ema_decay: the moving average of the parameters --------------------------------------------

def _natural(m):
    """(W, visible, hidden) natural parameters of a Bernoulli RBM (offsets folded into the biases)."""
    W, bv, bh = m.W.detach(), m.visible.bias.detach(), m.hidden.bias.detach()
    if m.visible_offset is not None:
        bv, bh = bv - W @ m.hidden_offset, bh - W.T @ m.visible_offset
    return [W.clone(), bv.clone(), bh.clone()]


def test_average_of_a_centred_rbm_is_the_average_of_its_natural_parameters(dtype):
    from harmonium.learning import ParameterAverage
    from conftest import make_model

    m = make_model(dtype=dtype, centered=True, seed=1)
    avg = ParameterAverage(m, decay=0.7)
    want = _natural(m)
    g = torch.Generator().manual_seed(5)
    for t in range(6):  # live parameters and offsets both move at every update
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype) * 0.3)
        mu, lam = (torch.rand(n, generator=g, dtype=torch.float64).to(dtype) for n in (N_VISIBLE, N_HIDDEN))
        m.set_offsets(mu, lam)
        avg.shadow.set_offsets(mu, lam)
        avg.update()
        d = min(0.7, (1 + t) / (10 + t))
        want = [d * a + (1 - d) * b for a, b in zip(want, _natural(m))]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for got, ref in zip(_natural(avg.shadow), want):
        torch.testing.assert_close(got, ref, **tol)


EMA_X = np.tile(bars_and_stripes(3), (2, 1))[:18]  # 9 visible units, 18 rows
EMA_KW = dict(n_hidden=N_HIDDEN, batch_size=4, persistent=True, n_chains=7, centering=True, learning_rate=0.1,
              random_state=4, metrics=("reconstruction_error",))


def test_an_average_without_memory_changes_nothing(dtype):
    """With ema_decay so small that 1 - d rounds to 1, the average is the live value: the same bits."""
    kw = dict(EMA_KW, epochs=3, dtype=str(dtype)[6:])
    plain = hm.RBM(**kw).fit(EMA_X)
    ema = hm.RBM(ema_decay=1e-17, **kw).fit(EMA_X)
    for k, v in plain.model_.state_dict().items():
        assert torch.equal(v, ema.model_.state_dict()[k]), k
    assert ema.history_ == plain.history_


@pytest.mark.parametrize("cls", ["rbm", "dbm"])
def test_training_follows_the_live_parameters_and_the_fit_is_their_average(cls):
    if cls == "rbm":
        make = lambda **kw: hm.RBM(epochs=3, **EMA_KW, **kw)  # noqa: E731
    else:
        make = lambda **kw: hm.DBM(n_hidden=(5, 3), batch_size=4, n_particles=7, pretrain_params={"epochs": 1},  # noqa: E731
                                   learning_rate=0.05, epochs=3, random_state=2, metrics=None, **kw)
    plain, ema = make().fit(EMA_X), make(ema_decay=0.9).fit(EMA_X)
    a = ema.trainer_.average
    assert a.swapped and a.updates == 3 * 5  # 18 rows in batches of 4: 5 updates per epoch
    live = dict(a.shadow.named_parameters())
    for k, p in plain.model_.named_parameters():
        assert torch.equal(live[k], p), k  # the live iterate is the unaveraged run's, bit for bit
        q = dict(ema.model_.named_parameters())[k]
        assert torch.isfinite(q).all() and not torch.equal(q, p), k  # the fitted model is the average


def test_the_average_is_resumed_exactly_from_checkpoints_and_model_files(tmp_path):
    kw = dict(EMA_KW, ema_decay=0.8)
    straight = hm.RBM(epochs=4, **kw).fit(EMA_X)
    path = tmp_path / "ck.safetensors"
    hm.RBM(epochs=2, checkpoint_path=path, **kw).fit(EMA_X)  # "killed" after two epochs
    resumed = hm.RBM(epochs=4, checkpoint_path=path, **kw).fit(EMA_X)
    again = hm.load(path)  # the final checkpoint, loaded and trained on from a model file
    for est in (resumed, again):
        for k, v in straight.model_.state_dict().items():
            assert torch.equal(v, est.model_.state_dict()[k]), k
    assert resumed.history_ == straight.history_
    longer = hm.RBM(epochs=5, **kw).fit(EMA_X)
    again.set_params(epochs=5, warm_start=True, checkpoint_path=None).fit(EMA_X)
    for k, v in longer.model_.state_dict().items():
        assert torch.equal(v, again.model_.state_dict()[k]), k


def test_turning_the_average_off_goes_back_to_the_live_parameters():
    kw = dict(EMA_KW, epochs=2)
    est = hm.RBM(ema_decay=0.9, **kw).fit(EMA_X).set_params(ema_decay=0.0, epochs=3, warm_start=True).fit(EMA_X)
    plain = hm.RBM(**dict(kw, epochs=3)).fit(EMA_X)
    assert est.trainer_.average is None
    for k, v in plain.model_.state_dict().items():
        assert torch.equal(v, est.model_.state_dict()[k]), k


@pytest.mark.parametrize("bad", [1.0, -0.1, True, "0.9", float("nan")])
def test_ema_decay_must_be_in_the_unit_interval(bad):
    for est in (hm.RBM(n_hidden=3, epochs=1, ema_decay=bad), hm.DBM(n_hidden=(3, 2), epochs=1, ema_decay=bad)):
        with pytest.raises(ValueError, match="ema_decay must be"):
            est.fit(EMA_X)


def test_a_centred_fit_returns_the_average_of_the_live_natural_parameters(monkeypatch):
    from harmonium import learning

    seen = []
    step = learning.Trainer.step

    def recording_step(self, *a, **kw):
        step(self, *a, **kw)
        seen.append(_natural(self.model))

    monkeypatch.setattr(learning.Trainer, "step", recording_step)
    kw = dict(EMA_KW, dtype="float64", ema_decay=0.6)
    want = _natural(hm.RBM(epochs=0, **kw).fit(EMA_X).model_)  # the average starts where training does
    est = hm.RBM(epochs=2, **kw).fit(EMA_X)
    assert len(seen) == 10
    for t, nat in enumerate(seen):
        d = min(0.6, (1 + t) / (10 + t))
        want = [d * a + (1 - d) * b for a, b in zip(want, nat)]
    for got, ref in zip(_natural(est.model_), want):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ema_decay", [0.0, 0.8])
def test_centering_can_be_turned_on_in_a_warm_start(dtype, ema_decay):
    """A model trained uncentred and continued with centering=True gets offsets at the data means
    without a change of distribution (the exact log-likelihoods stay put), in its average too, and
    trains on from there."""
    kw = dict(EMA_KW, centering=False, dtype=str(dtype)[6:], ema_decay=ema_decay)
    est = hm.RBM(epochs=2, **kw).fit(EMA_X)
    X = torch.as_tensor(EMA_X, dtype=dtype)
    trainer = est.trainer_
    with trainer.averaged():
        averaged = exact_log_likelihood(est.model_, X)
    trainer.use_live()
    live = exact_log_likelihood(est.model_, X)
    trainer._init_offsets(X)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    assert est.model_.centered
    torch.testing.assert_close(est.model_.visible_offset, X.mean(0))
    torch.testing.assert_close(exact_log_likelihood(est.model_, X), live, **tol)
    with trainer.averaged():
        assert est.model_.centered
        torch.testing.assert_close(exact_log_likelihood(est.model_, X), averaged, **tol)

    est = hm.RBM(epochs=2, **kw).fit(EMA_X).set_params(centering=True, warm_start=True, epochs=3).fit(EMA_X)
    assert est.model_.centered and all(torch.isfinite(p).all() for p in est.model_.parameters())
    if ema_decay:
        torch.testing.assert_close(est.trainer_.average.shadow.visible_offset, est.model_.visible_offset,
                                   rtol=0, atol=0)


WARM_CHANGES = [  # (first fit, then set_params before a warm start)
    (dict(), dict(persistent=True, n_chains=6)),
    (dict(persistent=True, n_chains=6), dict(persistent=False)),
    (dict(persistent=True, n_chains=6), dict(n_temperatures=3)),
    (dict(persistent=True, n_chains=6, n_temperatures=3), dict(n_temperatures=1)),
    (dict(persistent=True, n_chains=6, n_temperatures=3), dict(n_temperatures=4, n_chains=2)),
    (dict(persistent=True), dict(batch_size=3)),  # the chains follow the batch size
    (dict(), dict(optimizer="adam")),
    (dict(optimizer="adam"), dict(optimizer="sgd")),
]


def _sampler_of(est):
    """(optimizer class, phase class, rows of the persistent chains or None) of a fitted RBM."""
    t = est._trainer()
    h = t.phase.state_dict().get("h")
    return type(t.optimizer).__name__, type(t.phase).__name__, None if h is None else h.shape[0]


@pytest.mark.parametrize("first, then", WARM_CHANGES)
def test_a_changed_sampler_or_optimizer_is_used_after_a_warm_start_and_saved_consistently(first, then, tmp_path):
    """set_params between fits: the next fit uses the new sampler and optimizer (chains and optimizer
    state restart when they no longer fit), in memory, from a model file and from a checkpoint, and
    every file saved on the way loads and trains on.  Expected: what a fresh fit with `then` has."""
    kw = dict(n_hidden=N_HIDDEN, batch_size=4, random_state=0, metrics=None)
    want = _sampler_of(hm.RBM(epochs=1, **kw, **first).set_params(**then).fit(EMA_X))
    in_memory = hm.RBM(epochs=1, **kw, **first).fit(EMA_X).set_params(warm_start=True, epochs=2, **then)
    assert _sampler_of(in_memory.fit(EMA_X)) == want
    path = tmp_path / "m.safetensors"
    hm.RBM(epochs=1, **kw, **first).fit(EMA_X).save(path)
    from_file = hm.load(path).set_params(epochs=2, **then)
    from_file.save(tmp_path / "unfitted-change.safetensors")  # saved before any fit: still consistent
    assert _sampler_of(from_file.fit(EMA_X)) == want
    again = hm.load(tmp_path / "unfitted-change.safetensors").set_params(epochs=2)
    assert _sampler_of(again.fit(EMA_X)) == want
    ck = tmp_path / "ck.safetensors"
    hm.RBM(epochs=1, checkpoint_path=ck, **kw, **first).fit(EMA_X)
    resumed = hm.RBM(epochs=2, checkpoint_path=ck, **kw, **first).set_params(**then).fit(EMA_X)
    assert _sampler_of(resumed) == want and _sampler_of(hm.load(ck)) == want


def test_unchanged_settings_keep_the_chains_and_a_dbm_follows_n_particles():
    est = hm.RBM(n_hidden=N_HIDDEN, batch_size=4, persistent=True, n_chains=6, epochs=1, random_state=0,
                 metrics=None).fit(EMA_X)
    chains = est.trainer_.phase.h
    est.set_params(learning_rate=0.01, warm_start=True, epochs=1)._trainer()
    assert est.trainer_.phase.h is chains  # a new rate is no reason to restart the chains
    dbm = hm.DBM(n_hidden=(5, 3), batch_size=4, n_particles=7, pretrain_params={"epochs": 1}, epochs=1,
                 random_state=0, metrics=None).fit(EMA_X)
    dbm.set_params(n_particles=13, warm_start=True, epochs=2).fit(EMA_X)
    assert [x.shape[0] for x in dbm.trainer_.particles] == [13, 13, 13]


@pytest.mark.parametrize("change", [dict(n_hidden=4), dict(dtype="float64"), dict(visible="gaussian"),
                                    dict(hidden={"name": "softmax", "group_size": 5})])
def test_a_warm_start_refuses_hyperparameters_that_no_longer_describe_the_model(change, tmp_path):
    est = hm.RBM(n_hidden=N_HIDDEN, batch_size=4, epochs=1, random_state=0, metrics=None).fit(EMA_X)
    path = est.save(tmp_path / "m.safetensors")
    before = est.model_.W.clone()
    for call in ("fit", "partial_fit"):
        with pytest.raises(ValueError, match="warm_start: the fitted model has layers"):
            getattr(est.set_params(warm_start=True, epochs=2, **change), call)(EMA_X)
        assert torch.equal(est.model_.W, before)
    with pytest.raises(ValueError, match="warm_start: the fitted model has layers"):
        hm.load(path).set_params(warm_start=True, epochs=2, **change).fit(EMA_X)
    ck = tmp_path / "ck.safetensors"
    hm.RBM(n_hidden=N_HIDDEN, batch_size=4, epochs=1, checkpoint_path=ck, random_state=0).fit(EMA_X)
    with pytest.raises(ValueError, match="n_hidden=|warm_start: the fitted"):  # resuming a checkpoint
        hm.RBM(**{"n_hidden": N_HIDDEN, "batch_size": 4, "epochs": 2, "checkpoint_path": ck, **change}).fit(EMA_X)
    dbm = hm.DBM(n_hidden=(5, 3), batch_size=4, pretrain_params={"epochs": 1}, epochs=1, metrics=None).fit(EMA_X)
    with pytest.raises(ValueError, match="warm_start: the fitted model has layers"):
        dbm.set_params(n_hidden=(5, 4), warm_start=True, epochs=2).fit(EMA_X)
