"""The scikit-learn interface: conventions, methods, bad input, check_estimator."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import harmonium as hm

from conftest import N_HIDDEN, N_SAMPLES, N_VISIBLE

RNG = np.random.default_rng(0)
X01 = (RNG.random((N_SAMPLES * 5, N_VISIBLE)) < 0.4).astype(np.float64)


def fitted(**kw):
    return hm.RBM(**dict(dict(n_hidden=N_HIDDEN, epochs=2, random_state=0, metrics=None), **kw)).fit(X01)


# -- check_estimator -------------------------------------------------------------------------
# Bernoulli visible units refuse values outside [0, 1] by design; scikit-learn's generic
# checks feed data outside that range (blobs, shifted normals), so for the Bernoulli RBM those
# checks are declared as expected failures here, with the reason.  The same estimator with
# Gaussian visible units (support: all reals) passes every check.
_OUT_OF_SUPPORT = "the check's synthetic data lie outside [0, 1], which Bernoulli units refuse"
_BERNOULLI_XFAIL = {name: _OUT_OF_SUPPORT for name in [
    "check_pipeline_consistency", "check_estimators_pickle", "check_f_contiguous_array_estimator",
    "check_transformer_data_not_an_array", "check_transformer_general", "check_transformer_preserve_dtypes",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_fit2d_1sample",
    "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
    "check_n_features_in", "check_fit2d_predict1d", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self", "check_readonly_memmap_input",
    "check_n_features_in_after_fitting", "check_positive_only_tag_during_fit", "check_estimators_dtypes"]}


# A DBN's score_samples is a Monte Carlo estimate of its lower bound: a row's draws depend on where
# it sits in the batch, so scores of a subset or of reordered rows differ within the Monte Carlo error.
_STOCHASTIC_SCORE = "score_samples is a Monte Carlo estimate whose draws depend on the rows' positions"
_DBN_XFAIL = {name: _STOCHASTIC_SCORE for name in ["check_methods_sample_order_invariance",
                                                   "check_methods_subset_invariance"]}


def _expected_failures(est):
    return {**(_BERNOULLI_XFAIL if est.visible == "bernoulli" else {}),
            **(_DBN_XFAIL if isinstance(est, hm.DBN) else {})}


@parametrize_with_checks([hm.RBM(n_hidden=3, epochs=2, visible="gaussian", learning_rate=0.001),
                          hm.RBM(n_hidden=3, epochs=2),
                          hm.DBM(n_hidden=(3, 2), visible="gaussian", epochs=2, learning_rate=0.001,
                                 pretrain_params={"epochs": 2, "learning_rate": 0.001}),
                          hm.DBN(n_hidden=(3, 2), visible="gaussian", rbm_params={"epochs": 2, "learning_rate": 0.001})],
                         expected_failed_checks=_expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# -- conventions ---------------------------------------------------------------------------
def test_init_stores_arguments_unchanged_and_clone_works():
    lr = [0.1, 0.01]
    est = hm.RBM(n_hidden=7, learning_rate=lr, visible={"name": "softmax", "group_size": 7})
    assert est.learning_rate is lr
    c = clone(est)
    assert c.get_params()["learning_rate"] == lr and c.get_params()["visible"] == est.visible
    assert not hasattr(c, "model_")


def test_presets_have_full_signatures():
    g = hm.GaussianBernoulliRBM(n_hidden=3, epochs=1)
    assert g.get_params()["visible"] == "gaussian" and g.get_params()["epochs"] == 1
    assert clone(g).get_params() == g.get_params()
    b = hm.BernoulliMultinomialRBM(4)
    assert b.hidden == "multinomial"
    b.fit(X01[:, :N_VISIBLE], )
    H = b.transform(X01)
    assert np.allclose(H.sum(1), 1.0, atol=1e-5)


def test_fitted_attributes_match_sklearn_layout(dtype):
    est = fitted(dtype=str(dtype)[6:])
    assert est.components_.shape == (N_HIDDEN, N_VISIBLE)
    assert est.intercept_visible_.shape == (N_VISIBLE,) and est.intercept_hidden_.shape == (N_HIDDEN,)
    assert est.n_features_in_ == N_VISIBLE
    assert est.transform(X01).dtype == (np.float32 if dtype == torch.float32 else np.float64)
    assert isinstance(est.model_, hm.RBMModel)


def test_methods_shapes_and_values():
    est = fitted()
    assert est.transform(X01).shape == (len(X01), N_HIDDEN)
    assert est.fit_transform(X01).shape == (len(X01), N_HIDDEN)
    assert est.free_energy(X01).shape == (len(X01),)
    s = est.score_samples(X01)
    assert s.shape == (len(X01),) and (s <= 0).all()
    assert est.score(X01) == pytest.approx(s.mean(), rel=1e-6)
    r = est.reconstruct(X01)
    assert r.shape == X01.shape and ((r >= 0) & (r <= 1)).all()
    for out in (est.gibbs(X01, 3), est.sample(N_SAMPLES, 10), est.run_hidden(np.eye(N_HIDDEN))):
        assert set(np.unique(out)) <= {0.0, 1.0}
    assert est.sample(N_SAMPLES, 10).shape == (N_SAMPLES, N_VISIBLE)
    h = est.run_visible(X01)
    assert h.shape == (len(X01), N_HIDDEN) and set(np.unique(h)) <= {0.0, 1.0}
    trace = est.daydream(3, trace=True)
    assert trace.shape == (4, N_VISIBLE)
    assert set(np.unique(trace[1:])) <= {0.0, 1.0}
    assert est.daydream(2, n_dreams=5).shape == (5, N_VISIBLE)


def test_torch_tensors_in_tensors_out_and_inputs_never_modified():
    est = fitted()
    t = torch.as_tensor(X01, dtype=torch.float32)
    t_copy, x_copy = t.clone(), X01.copy()
    out = est.transform(t)
    assert isinstance(out, torch.Tensor) and out.shape == (len(X01), N_HIDDEN)
    est.partial_fit(t)
    est.fit(X01)
    est.complete(X01, np.ones_like(X01, dtype=bool))
    assert torch.equal(t, t_copy) and np.array_equal(X01, x_copy)


def test_complete_keeps_clamped_units():
    est = fitted()
    mask = np.zeros_like(X01, dtype=bool)
    mask[:, :3] = True
    out = est.complete(X01, mask, n_steps=5)
    assert np.array_equal(out[:, :3], X01[:, :3])


def test_partial_fit_counts_epochs():
    est = hm.RBM(n_hidden=3, random_state=0, metrics=None)
    est.partial_fit(X01).partial_fit(X01)
    assert est.trainer_.epoch == 2


def test_from_arrays_gives_a_ready_estimator():
    W = RNG.normal(size=(N_VISIBLE, N_HIDDEN))
    b, c = RNG.normal(size=N_VISIBLE), RNG.normal(size=N_HIDDEN)
    est = hm.RBM.from_arrays(W, b, c, dtype="float64")
    assert np.allclose(est.components_, W.T) and np.allclose(est.intercept_visible_, b)
    expected = 1 / (1 + np.exp(-(X01 @ W + c)))
    assert np.allclose(est.transform(X01), expected)
    with pytest.raises(ValueError, match="W must be 2-D"):
        hm.RBM.from_arrays(W[0], b, c)
    with pytest.raises(ValueError, match="vb_init must have shape"):
        hm.RBM.from_arrays(W, c, c)


def test_softmax_visible_units_round_trip():
    onehot = np.eye(3)[RNG.integers(0, 3, (40, 3))].reshape(40, 9)
    est = hm.RBM(n_hidden=N_HIDDEN, visible={"name": "softmax", "group_size": 3}, epochs=3, random_state=0,
                 metrics=["pseudo_log_likelihood", "log_likelihood"]).fit(onehot)
    s = est.sample(5, 5).reshape(5, 3, 3)
    assert np.array_equal(s.sum(-1), np.ones((5, 3)))
    assert np.isfinite(est.history_["train_log_likelihood"]).all()


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("X,match", [
    (np.array([[0.0, np.nan, 1.0]]), "NaN"),
    (np.array([[0.0, np.inf, 1.0]]), "infinity"),
    (np.array([[0.0, 3.0, 1.0]]), "outside the support of Bernoulli units"),
    (np.array([[0.0, -0.5, 1.0]]), "outside the support"),
    (np.zeros((0, 3)), "0 sample"),
    (np.zeros(3), "Reshape your data"),
])
def test_bad_data_is_refused_with_a_clear_message(X, match):
    with pytest.raises(ValueError, match=match):
        hm.RBM(n_hidden=2, epochs=1).fit(X)


def test_probabilities_are_valid_bernoulli_data():
    hm.RBM(n_hidden=2, epochs=1, random_state=0).fit(np.full((4, 3), 0.3))


def test_wrong_number_of_features_at_transform():
    est = fitted()
    with pytest.raises(ValueError, match=f"expecting {N_VISIBLE} features"):
        est.transform(X01[:, :3])


def test_non_one_hot_softmax_groups_are_refused():
    est = hm.RBM(n_hidden=2, visible={"name": "softmax", "group_size": 3}, epochs=1)
    bad = np.array([[1, 1, 0, 0, 0, 1], [1, 0, 0, 0, 1, 0]], dtype=float)
    with pytest.raises(ValueError, match="row 0, group 0"):
        est.fit(bad)
    with pytest.raises(ValueError, match="group 1"):
        est.fit(np.array([[1, 0, 0, 0, 0, 0]], dtype=float))


@pytest.mark.parametrize("params,match", [
    (dict(learning_rate=-0.1), "learning_rate must be positive"),
    (dict(learning_rate=[0.1, 0]), "learning_rate must be positive"),
    (dict(k=0), "k must be an integer >= 1"),
    (dict(k=1.5), "k must be an integer"),
    (dict(momentum=1.0), "momentum must be in"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(n_hidden=0), "n_hidden must be an integer >= 1"),
    (dict(visible="bernouli"), "unknown unit type 'bernouli'"),
    (dict(dtype="float16"), "dtype must be one of"),
    (dict(dropout=1.5), "dropout must be None or in"),
    (dict(metrics=["accuracy"]), "unknown metrics"),
    (dict(optimizer="lbfgs"), "optimizer must be"),
    (dict(n_temperatures=0), "n_temperatures must be an integer >= 1"),
])
def test_bad_hyperparameters_are_refused_at_fit(params, match):
    est = hm.RBM(**dict(dict(n_hidden=2, epochs=1), **params))  # construction never validates
    with pytest.raises(ValueError, match=match):
        est.fit(X01)


def test_unfitted_estimator_says_so():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        hm.RBM().transform(X01)


def test_custom_unit_type_plugs_into_the_estimator():
    """A user's unit type: {-1, +1} spins, one small subclass, used by name and by class."""
    from harmonium.units import Units, register_units

    class Spin(Units):
        name = "spin-test"
        support = "{-1, +1} (or means in [-1, 1])"

        def mean(self, a, beta=1.0):
            return torch.tanh(self.natural(a, beta))

        def sample(self, a, beta=1.0, generator=None, mean=None):
            m = self.mean(a, beta) if mean is None else mean
            u = torch.rand(m.shape, generator=generator, dtype=m.dtype, device=m.device)
            return torch.where(u < (1 + m) / 2, 1.0, -1.0).to(m.dtype)

        def log_partition(self, a, beta=1.0):
            eta = self.natural(a, beta)
            return (eta.abs() + torch.log1p(torch.exp(-2 * eta.abs()))).sum(-1)  # log 2cosh(eta)

        def validate(self, x, what="X"):
            super().validate(x, what)
            if (x.abs() > 1).any():
                raise ValueError(f"{what} is outside the support of spin units, {self.support}")

        def site_states(self):
            return torch.tensor([[-1.0], [1.0]])

    register_units(Spin)
    X = np.where(X01 > 0, 1.0, -1.0)
    est = hm.RBM(n_hidden=N_HIDDEN, visible="spin-test", hidden=Spin, epochs=5, random_state=0, dtype="float64",
                 metrics=["log_likelihood", "pseudo_log_likelihood"]).fit(X)
    assert set(np.unique(est.sample(4, 3))) <= {-1.0, 1.0}
    assert np.isfinite(est.history_["train_log_likelihood"]).all()
    from harmonium import estimate
    V = torch.cat(list(est.model_.visible.enumerate_states()))
    assert torch.logsumexp(estimate.exact_log_likelihood(est, V), 0).item() == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="spin units"):
        est.transform(X * 2)
