"""Evaluation functions against brute force: log Z routes, pseudo-likelihood, reconstruction."""

import copy
import math

import numpy as np
import pytest
import torch

import harmonium as hm
from harmonium import estimate

from conftest import N_HIDDEN, N_SAMPLES, N_VISIBLE, all_states, make_model


def test_exact_log_partition_same_from_either_layer():
    """Enumerating the hidden layer (7 x 5 model) or the visible layer (transposed roles) agree."""
    m = make_model("bernoulli", "bernoulli", centered=True)
    V = all_states(m.visible)
    brute = torch.logsumexp(-m.free_energy(V), 0).item()
    assert estimate.enumeration_cost(m) == ("hidden", 2.0 ** N_HIDDEN)
    assert estimate.exact_log_partition(m) == pytest.approx(brute, abs=1e-10)


def test_exact_log_partition_accepts_estimators_and_refuses_huge_or_continuous():
    m = make_model("bernoulli", "bernoulli")
    est = hm.RBM.from_arrays(m.W.detach().numpy(), m.visible.bias.detach().numpy(),
                             m.hidden.bias.detach().numpy(), dtype="float64")
    assert estimate.exact_log_partition(est) == pytest.approx(estimate.exact_log_partition(m), abs=1e-10)
    big = hm.RBM.from_arrays(np.zeros((40, 41)), np.zeros(40), np.zeros(41))
    with pytest.raises(ValueError, match="use AIS"):
        estimate.exact_log_partition(big)
    gg = hm.RBM.from_arrays(np.zeros((3, 2)), np.zeros(3), np.zeros(2), visible="gaussian", hidden="gaussian")
    with pytest.raises(ValueError, match="continuous"):
        estimate.exact_log_partition(gg)


def test_zero_weight_model_log_z_is_closed_form(dtype):
    """W = 0: log Z = sum softplus(b) + sum softplus(c)."""
    g = torch.Generator().manual_seed(0)
    b = torch.randn(N_VISIBLE, generator=g, dtype=torch.float64)
    c = torch.randn(N_HIDDEN, generator=g, dtype=torch.float64)
    est = hm.RBM.from_arrays(np.zeros((N_VISIBLE, N_HIDDEN)), b.numpy(), c.numpy(), dtype=str(dtype)[6:])
    expected = torch.nn.functional.softplus(b).sum() + torch.nn.functional.softplus(c).sum()
    assert estimate.exact_log_partition(est) == pytest.approx(expected.item(), abs=1e-9 if dtype == torch.float64 else 1e-5)


def brute_pll(m, X):
    """sum_i log p(x_i | x_-i) by building every variant explicitly."""
    out = torch.zeros(len(X), dtype=torch.float64)
    vis = m.visible
    k = vis.site_size
    states = vis.site_states().double()
    for r, x in enumerate(X):
        for site in range(vis.n // k):
            variants = x.repeat(len(states), 1)
            variants[:, site * k:(site + 1) * k] = states
            f = m.free_energy(variants)
            out[r] += -m.free_energy(x[None])[0] - torch.logsumexp(-f, 0)
    return out


@pytest.mark.parametrize("visible,hidden", [("bernoulli", "bernoulli"), ("softmax", "bernoulli"),
                                            ("bernoulli", "multinomial")])
def test_pseudo_log_likelihood_matches_brute_force(visible, hidden, dtype):
    nv = 9 if visible == "softmax" else N_VISIBLE
    m = make_model(visible, hidden, nv, N_HIDDEN, centered=True)
    g = torch.Generator().manual_seed(2)
    V = all_states(m.visible)
    X = V[torch.randint(len(V), (N_SAMPLES,), generator=g)]
    expected = brute_pll(m, X)
    got = estimate.pseudo_log_likelihood(m.to(dtype), X.to(dtype), chunk_elements=50)  # force chunking
    assert torch.allclose(got.double(), expected, atol=1e-4 if dtype == torch.float32 else 1e-10)
    assert (got <= 0).all()


def test_pseudo_log_likelihood_of_gaussian_visibles_matches_numerical_integration():
    m = make_model("gaussian", "bernoulli", 3, N_HIDDEN, scale=0.5)
    g = torch.Generator().manual_seed(4)
    X = torch.randn(N_SAMPLES, 3, generator=g, dtype=torch.float64)
    grid = torch.linspace(-15, 15, 6001, dtype=torch.float64)
    expected = torch.zeros(N_SAMPLES, dtype=torch.float64)
    for r, x in enumerate(X):
        for i in range(3):
            variants = x.repeat(len(grid), 1)
            variants[:, i] = grid
            z = torch.trapezoid(torch.exp(-m.free_energy(variants)), grid)
            expected[r] += -m.free_energy(x[None])[0] - torch.log(z)
    got = estimate.pseudo_log_likelihood(m, X)
    assert torch.allclose(got, expected, atol=1e-6)


def test_reconstruction_error_and_free_energy_gap():
    m = make_model("bernoulli", "bernoulli")
    V = all_states(m.visible)
    r = m.visible_mean(m.hidden_mean(V))
    assert estimate.reconstruction_error(m, V) == pytest.approx(((V - r) ** 2).mean().item())
    a, b = V[:40], V[40:80]
    gap = estimate.free_energy_gap(m, a, b)
    assert gap == pytest.approx((m.free_energy(b).mean() - m.free_energy(a).mean()).item())
    assert estimate.free_energy_gap(m, a, a) == 0.0


def test_exact_log_likelihood_normalises():
    m = make_model("softmax", "bernoulli", 9, N_HIDDEN)
    V = all_states(m.visible)
    ll = estimate.exact_log_likelihood(m, V)
    assert math.isclose(torch.logsumexp(ll, 0).item(), 0.0, abs_tol=1e-10)


# -- annealed importance sampling ---------------------------------------------------------------
@pytest.mark.parametrize("visible,hidden,nv,nh", [
    ("bernoulli", "bernoulli", N_VISIBLE, N_HIDDEN), ("softmax", "bernoulli", 9, N_HIDDEN),
    ("gaussian", "bernoulli", N_VISIBLE, N_HIDDEN), ("bernoulli", "multinomial", N_VISIBLE, N_HIDDEN),
    ("bernoulli", "bernoulli", 23, 13)])
def test_ais_matches_exact_log_partition(visible, hidden, nv, nh, dtype):
    m = make_model(visible, hidden, nv, nh, centered=True).to(dtype)
    exact = estimate.exact_log_partition(m)
    r = estimate.ais(m, n_runs=100, betas=2000, random_state=0)
    assert abs(r.log_z - exact) <= 0.1
    lo, hi = r.log_z_interval
    assert lo <= r.log_z <= hi and hi - lo < 1.0
    assert r.log_weights.shape == (100,) and r.log_weights.dtype == torch.float64
    assert 1 <= r.ess <= 100


def test_ais_base_rate_model_and_reproducibility():
    m = make_model("bernoulli", "bernoulli", 23, 13, scale=0.5)
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(200, 23, generator=g, dtype=torch.float64) < torch.linspace(0.05, 0.95, 23)).double()
    exact = estimate.exact_log_partition(m)
    r = estimate.ais(m, n_runs=50, betas=1000, base_rate=X, random_state=1)
    assert abs(r.log_z - exact) <= 0.1
    again = estimate.ais(m, n_runs=50, betas=1000, base_rate=X, random_state=1)
    assert torch.equal(r.log_weights, again.log_weights)
    assert float(r) == r.log_z


def test_pooled_ais_is_one_run_with_all_the_chains():
    m = make_model("bernoulli", "bernoulli", 23, 13, scale=0.5)
    parts = [estimate.ais(m, n_runs=n, betas=300, random_state=s) for n, s in ((7, 1), (11, 2))]
    p = estimate.AISResult.pool(parts)
    w = torch.cat([r.log_weights for r in parts])
    assert torch.equal(p.log_weights, w) and p.n_betas == 300
    assert p.log_z == pytest.approx(float(torch.logsumexp(w, 0) - math.log(18)) + parts[0].log_z_base, abs=1e-9)
    assert p.log_z_interval[0] <= p.log_z <= p.log_z_interval[1] and 1.0 <= p.ess <= 18.0
    assert abs(p.log_z - estimate.exact_log_partition(m)) <= 0.5
    one = estimate.AISResult.pool(parts[:1])
    assert one.log_z == pytest.approx(parts[0].log_z, abs=1e-12) and one.ess == pytest.approx(parts[0].ess)
    with pytest.raises(ValueError, match="different paths"):
        estimate.AISResult.pool([parts[0], estimate.ais(m, n_runs=5, betas=200, random_state=3)])
    with pytest.raises(ValueError, match="at least one"):
        estimate.AISResult.pool([])


def test_default_schedule_and_bad_schedules():
    b = estimate.default_betas()
    assert len(b) == 14500 and b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    assert (b < 0.5).sum() == 500 and ((b >= 0.5) & (b < 0.9)).sum() == 4000
    m = make_model()
    with pytest.raises(ValueError, match="increase from 0 to 1"):
        estimate.ais(m, betas=torch.tensor([0.0, 0.7, 0.5, 1.0]))
    with pytest.raises(ValueError, match="increase from 0 to 1"):
        estimate.ais(m, betas=torch.tensor([0.1, 1.0]))


def test_log_likelihood_uses_exact_or_ais():
    m = make_model()
    V = all_states(m.visible)
    ll = estimate.log_likelihood(m, V)
    assert torch.logsumexp(ll, 0).item() == pytest.approx(0.0, abs=1e-10)
    r = estimate.ais(m, n_runs=20, betas=500, random_state=0)
    ll_ais = estimate.log_likelihood(m, V, r)
    assert torch.allclose(ll_ais - ll, torch.full_like(ll, estimate.exact_log_partition(m) - r.log_z))


@pytest.mark.parametrize("visible,hidden,nv,nh", [
    ("bernoulli", "bernoulli", N_VISIBLE, N_HIDDEN),   # hidden layer enumerated
    ("bernoulli", "bernoulli", N_HIDDEN, 11),          # the other orientation: visible layer enumerated
    ("gaussian", "bernoulli", N_VISIBLE, N_HIDDEN),
    ("softmax", "bernoulli", 9, N_HIDDEN)])
def test_ais_default_schedule_is_within_a_tenth_of_a_nat_and_inside_its_interval(visible, hidden, nv, nh):
    m = make_model(visible, hidden, nv, nh, scale=1.0, seed=4)
    exact = estimate.exact_log_partition(m)
    r = estimate.ais(m, n_runs=100, random_state=0)  # 14,500 betas
    assert r.n_betas == 14500
    assert abs(r.log_z - exact) <= 0.1
    lo, hi = r.log_z_interval
    assert lo <= exact <= hi


def test_ais_error_shrinks_with_more_betas():
    """Mean absolute error over seeds falls as the schedule gets finer (in expectation)."""
    m = make_model("bernoulli", "bernoulli", 23, 13, scale=1.5, seed=1)
    exact = estimate.exact_log_partition(m)
    errors = []
    for n in (30, 300, 3000):
        errors.append(np.mean([abs(estimate.ais(m, n_runs=50, betas=n, random_state=s).log_z - exact)
                               for s in range(4)]))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.1


# -- importance sampling from a mixture of the samples' conditionals ---------------------------------------
def _exact_rbm_samples(m, n, seed):
    """Visible rows drawn exactly: h from p(h) by enumeration, then v from p(v | h)."""
    g = torch.Generator().manual_seed(seed)
    H = all_states(m.hidden).to(m.W.dtype)
    h = H[torch.multinomial(torch.softmax(-m.free_energy_hidden(H), 0), n, replacement=True, generator=g)]
    return m.visible.sample(m.visible_input(h), 1.0, g)


@pytest.mark.parametrize("visible,hidden,centered", [
    ("bernoulli", "bernoulli", False), ("gaussian", "bernoulli", False), ("bernoulli", "softmax", False),
    ("bernoulli", "bernoulli", True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixture_importance_sampling_matches_exact_log_z(visible, hidden, centered, dtype):
    m = make_model(visible, hidden, scale=0.8, centered=centered).double()
    exact = estimate.exact_log_partition(m)
    v = _exact_rbm_samples(m, N_SAMPLES * 10, 0)
    m, v = m.to(dtype), v.to(dtype)
    r = estimate.mixture_importance_sampling(m, v, n_draws=20000, random_state=1)
    assert abs(r.log_z - exact) <= 0.1, (r.log_z, exact)
    assert r.log_z_interval[0] <= r.log_z <= r.log_z_interval[1]
    assert r.lower_bound(1e-3) == pytest.approx(r.log_z - math.log(1e3))
    assert r.ess > 100 and r.log_weights.shape == (20000,)


def test_mixture_importance_sampling_is_a_lower_bound_when_the_samples_miss_mass():
    m = make_model(scale=4.0)  # strong weights: p(h | v) is sharp
    exact = estimate.exact_log_partition(m)
    V = all_states(m.visible).double()
    v = V[m.free_energy(V).argmax()][None]  # the least probable row: a proposal far from the mass
    res = [estimate.mixture_importance_sampling(m, v, n_draws=200, random_state=s) for s in range(20)]
    assert np.median([r.log_z for r in res]) < exact - 1.0  # typically far below ...
    assert all(r.lower_bound(1e-3) < exact for r in res)  # ... and above it with probability <= e^-t
    full = estimate.mixture_importance_sampling(m, _exact_rbm_samples(m, 200, 3), n_draws=20000, random_state=0)
    assert abs(full.log_z - exact) <= 0.1


def test_mixture_importance_sampling_refuses_bad_input():
    m = make_model()
    with pytest.raises(ValueError, match="samples"):
        estimate.mixture_importance_sampling(m, torch.full((3, N_VISIBLE), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        estimate.mixture_importance_sampling(m, torch.zeros(3, N_VISIBLE + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_draws"):
        estimate.mixture_importance_sampling(m, torch.zeros(3, N_VISIBLE, dtype=torch.float64), n_draws=1)


def _bad_rows_cases():
    X = torch.bernoulli(torch.full((N_SAMPLES, N_VISIBLE), 0.5, dtype=torch.float64))
    narrow, nan = X[:, :-1], X.clone()
    nan[3, 2] = float("nan")
    return [(narrow, r"X must have shape \(n_samples, 7\), got \(11, 6\)"), (nan, "X contains NaN"),
            (X * 2, "outside the support of Bernoulli units")]


@pytest.mark.parametrize("fn", ["exact_log_likelihood", "pseudo_log_likelihood", "reconstruction_error",
                                "log_likelihood"])
@pytest.mark.parametrize("X, match", _bad_rows_cases())
def test_evaluation_functions_refuse_bad_rows_by_name(fn, X, match):
    """The functional API checks its rows as the estimators do: not a matrix-product error or a NaN."""
    m = make_model("bernoulli", "bernoulli")
    with pytest.raises(ValueError, match=match):
        getattr(estimate, fn)(m, X)
    with pytest.raises(ValueError, match=match.replace("X ", "X_val ", 1)):
        estimate.free_energy_gap(m, torch.zeros(2, N_VISIBLE, dtype=torch.float64), X)


def test_ais_refuses_bad_runs_betas_and_samples():
    m = make_model("bernoulli", "bernoulli")
    for n_runs in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_runs must be a positive integer"):
            estimate.ais(m, n_runs=n_runs, betas=10)
    with pytest.raises(ValueError, match="increase from 0 to 1"):
        estimate.ais(m, n_runs=3, betas=torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="at least one sample"):
        estimate.reverse_ais(m, torch.zeros(0, N_VISIBLE), betas=10)
    with pytest.raises(ValueError, match=r"samples must have shape \(n_samples, 7\)"):
        estimate.reverse_ais(m, torch.zeros(3, N_HIDDEN), betas=10)


# -- the DBN's lower bound -----------------------------------------------------------------------
def _bernoulli_log_prob(x, logits):
    return torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)


def _dbn_exact(models, v):
    """log p(v) and the variational bound of a stack of Bernoulli RBMs (float64), by enumerating every
    hidden layer below the top: integrand f = sum_l log p(h_l | h_(l+1)) - log q(h_(l+1) | h_l) - F_top
    weighted by q, and log p(v) = logsumexp over the same states of log p(v, h) + entropy-free terms."""
    paths = [(v, torch.zeros(len(v), dtype=torch.float64), torch.zeros(len(v), dtype=torch.float64))]
    for m in models[:-1]:  # (state, log q so far, log p(h_l | h_(l+1)) so far) for every path
        H = all_states(m.hidden)
        new = []
        for x, log_q, log_p in paths:
            up = x @ m.W + m.hidden.bias  # q's logits
            for h in H:
                hh = h.expand(len(x), -1)
                new.append((hh, log_q + _bernoulli_log_prob(hh, up),
                            log_p + _bernoulli_log_prob(x, hh @ m.W.T + m.visible.bias)))
        paths = new
    top = models[-1]
    log_z = estimate.exact_log_partition(top)
    joint = torch.stack([log_p - top.free_energy(x) - log_z for x, _, log_p in paths])  # log p(v, h)
    log_q = torch.stack([q for _, q, _ in paths])
    q = log_q.exp()
    f = joint - log_q
    bound = (q * f).sum(0)
    sd = ((q * f ** 2).sum(0) - bound ** 2).clamp_min(0).sqrt()
    return torch.logsumexp(joint, 0), bound, sd


@pytest.mark.parametrize("sizes", [(7, 5, 3), (7, 5, 4, 3)])
def test_dbn_lower_bound_matches_enumeration(sizes, dtype):
    """The estimate is the enumerated bound within its Monte Carlo error, and the bound is below log p(v)."""
    models = [make_model(n_visible=a, n_hidden=b, seed=l, dtype=dtype) for l, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    v = (torch.rand(N_SAMPLES, sizes[0], generator=torch.Generator().manual_seed(3)) < 0.5).double()
    log_p, bound, sd = _dbn_exact([copy.deepcopy(m).double() for m in models], v)
    assert all(m.W.dtype == dtype for m in models)
    n = 2000
    est = estimate.dbn_lower_bound(models, v.to(dtype), n_samples=n, random_state=0)
    assert est.dtype == torch.float64 and est.shape == (N_SAMPLES,)
    assert ((est - bound).abs() <= 5 * sd / math.sqrt(n) + 1e-4).all(), (est - bound, sd / math.sqrt(n))
    assert (bound <= log_p + 1e-9).all() and (bound < log_p - 1e-3).any()
    again = estimate.dbn_lower_bound(models, v.to(dtype), n_samples=n, random_state=0)
    assert torch.equal(est, again)


@pytest.mark.parametrize("centered", [False, True])
def test_dbn_whose_top_is_its_rbm_transposed_has_a_tight_bound(centered, dtype):
    """Top RBM = the bottom one transposed (natural parameters; three idle top hidden units with
    zero weights): the DBN is the RBM, q(h|v) its exact posterior, and every recognition sample gives
    log p(v) itself (Hinton, Osindero & Teh 2006), with the top's own exact log Z."""
    bottom = make_model(centered=centered, dtype=dtype)
    natural = copy.deepcopy(bottom).double()
    natural.set_offsets(None, None)
    W = natural.W.detach().numpy()
    top = hm.RBM.from_arrays(np.hstack([W.T, np.zeros((N_HIDDEN, 3))]), natural.hidden.bias.detach().numpy(),
                             np.concatenate([natural.visible.bias.detach().numpy(), np.zeros(3)]),
                             dtype=str(dtype).removeprefix("torch."))
    v = (torch.rand(N_SAMPLES, N_VISIBLE, generator=torch.Generator().manual_seed(5)) < 0.5).to(dtype)
    bound = estimate.dbn_lower_bound([bottom, top], v, n_samples=3, random_state=0)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(bound, estimate.log_likelihood(bottom, v).double(), rtol=0, atol=tol)


def test_dbn_lower_bound_of_one_rbm_is_its_log_likelihood_and_refuses_bad_input():
    m = make_model()
    v = (torch.rand(N_SAMPLES, N_VISIBLE, generator=torch.Generator().manual_seed(4)) < 0.5).double()
    torch.testing.assert_close(estimate.dbn_lower_bound([m], v), estimate.log_likelihood(m, v))
    with pytest.raises(ValueError, match="RBM 0 has 5 hidden units but RBM 1 has 7 visible"):
        estimate.dbn_lower_bound([m, make_model()], v)
    with pytest.raises(ValueError, match="n_samples"):
        estimate.dbn_lower_bound([m, make_model(n_visible=N_HIDDEN, n_hidden=3)], v, n_samples=0)
    with pytest.raises(ValueError, match="outside the support"):
        estimate.dbn_lower_bound([m], v * 2)
