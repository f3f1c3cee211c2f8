"""The RBM model against exact enumeration: energies, free energies, conditionals, log Z,
the likelihood gradient, and the Gibbs sampler's stationary distribution."""

import pytest
import torch

from harmonium.estimate import exact_log_partition
from harmonium.rbm import RBMModel
from harmonium.sampling import ContrastiveDivergence, ParallelTempering, PersistentContrastiveDivergence

from conftest import N_HIDDEN, N_SAMPLES, N_VISIBLE, all_states, make_model

DISCRETE_PAIRS = [("bernoulli", "bernoulli"), ("softmax", "bernoulli"), ("bernoulli", "multinomial"),
                  ("softmax", "softmax")]
TOL = {torch.float32: 2e-4, torch.float64: 1e-10}


def sizes(visible, hidden):
    nv = 9 if visible == "softmax" else N_VISIBLE
    nh = 3 if hidden == "softmax" else N_HIDDEN
    return nv, nh


def joint_table(m: RBMModel):
    """All (v, h) pairs with their energies (float64)."""
    V, H = all_states(m.visible), all_states(m.hidden)
    vv = V.repeat_interleave(len(H), 0)
    hh = H.repeat(len(V), 1)
    return V, H, m.energy(vv, hh).view(len(V), len(H))


@pytest.mark.parametrize("centered", [False, True], ids=["plain", "centered"])
@pytest.mark.parametrize("visible,hidden", DISCRETE_PAIRS)
def test_free_energies_and_log_z_match_enumeration(visible, hidden, centered):
    nv, nh = sizes(visible, hidden)
    m = make_model(visible, hidden, nv, nh, centered=centered)
    V, H, E = joint_table(m)
    # F(v) = -log sum_h exp(-E(v, h)) and the same with v summed out
    assert torch.allclose(m.free_energy(V), -torch.logsumexp(-E, 1), atol=1e-10)
    assert torch.allclose(m.free_energy_hidden(H), -torch.logsumexp(-E, 0), atol=1e-10)
    log_z = torch.logsumexp(-E.flatten(), 0).item()
    assert exact_log_partition(m) == pytest.approx(log_z, abs=1e-9)


@pytest.mark.parametrize("visible,hidden", DISCRETE_PAIRS + [("gaussian", "bernoulli")])
def test_conditionals_match_enumeration(visible, hidden, dtype):
    nv, nh = sizes(visible, hidden)
    m = make_model(visible, hidden, nv, nh, centered=True)
    g = torch.Generator().manual_seed(1)
    if visible == "gaussian":
        v = torch.randn(N_SAMPLES, nv, generator=g, dtype=torch.float64)
    else:
        V = all_states(m.visible)
        v = V[torch.randint(len(V), (N_SAMPLES,), generator=g)]
    H = all_states(m.hidden)
    # p(h | v) by enumeration over h, for each v
    E = torch.stack([m.energy(v[i].expand(len(H), -1), H) for i in range(N_SAMPLES)])  # (n, |H|)
    p = torch.softmax(-E, 1)
    expected = p @ H
    m32 = m.to(dtype)
    got = m32.hidden_mean(v.to(dtype)).double()
    assert torch.allclose(got, expected, atol=TOL[dtype] * 10)
    m.double()
    if visible != "gaussian":
        V = all_states(m.visible)
        h = H[torch.randint(len(H), (N_SAMPLES,), generator=g)]
        E = torch.stack([m.energy(V, h[i].expand(len(V), -1)) for i in range(N_SAMPLES)])
        assert torch.allclose(m.visible_mean(h), torch.softmax(-E, 1) @ V, atol=1e-10)


def test_gaussian_visible_free_energy_matches_numerical_integration():
    """Gaussian-Bernoulli with 2 visible units: log Z from the hidden enumeration vs a 2-D integral."""
    m = make_model("gaussian", "bernoulli", 2, 3, scale=0.5)
    grid = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    V = torch.stack([gx.flatten(), gy.flatten()], 1)
    dens = torch.exp(-m.free_energy(V)).view(len(grid), len(grid))
    z = torch.trapezoid(torch.trapezoid(dens, grid, dim=1), grid)
    assert exact_log_partition(m) == pytest.approx(torch.log(z).item(), abs=1e-6)


@pytest.mark.parametrize("visible,hidden", DISCRETE_PAIRS)
def test_gradient_equals_exact_log_likelihood_gradient(visible, hidden):
    """<dE/dtheta>_data - <dE/dtheta>_model with the model expectation taken exactly
    (CD-infinity) equals the autograd gradient of the exact negative log-likelihood."""
    nv, nh = sizes(visible, hidden)
    m = make_model(visible, hidden, nv, nh, centered=True, scale=0.5)
    g = torch.Generator().manual_seed(3)
    V = all_states(m.visible)
    data = V[torch.randint(len(V), (N_SAMPLES,), generator=g)]
    with torch.enable_grad():
        log_z = torch.logsumexp(-m.free_energy(V), 0)
        nll = m.free_energy(data).mean() + log_z
        expected = torch.autograd.grad(nll, list(m.parameters()))
    with torch.no_grad():
        p_v = torch.softmax(-m.free_energy(V), 0)
        m.write_gradient(data, m.hidden_mean(data), V, m.hidden_mean(V), w_neg=p_v)
    for (name, p), e in zip(m.named_parameters(), expected):
        assert p.grad.shape == p.shape
        assert torch.allclose(p.grad, e, atol=1e-10), name


@pytest.mark.parametrize("visible", ["gaussian", "gaussian-learned"])
def test_gaussian_gradient_terms_are_free_energy_gradients(visible):
    """For Gaussian visibles (sigma fixed or learned) each phase contributes d<F(v)>/dtheta:
    checked on the data term with a zero-weight negative batch, and the two terms cancel
    when both phases see the same batch."""
    m = make_model(visible, "bernoulli", centered=True, scale=0.5)
    g = torch.Generator().manual_seed(3)
    data = torch.randn(N_SAMPLES, N_VISIBLE, generator=g, dtype=torch.float64)
    with torch.enable_grad():
        expected = torch.autograd.grad(m.free_energy(data).mean(), list(m.parameters()))
    with torch.no_grad():
        h = m.hidden_mean(data)
        m.write_gradient(data, h, data[:1], h[:1], w_neg=torch.zeros(1, dtype=torch.float64))
    names = [n for n, _ in m.named_parameters()]
    assert ("visible.log_sigma" in names) == (visible == "gaussian-learned")
    for (name, p), e in zip(m.named_parameters(), expected):
        assert torch.allclose(p.grad, e, atol=1e-9), name
    with torch.no_grad():
        m.write_gradient(data, h, data, h)
    assert all(torch.allclose(p.grad, torch.zeros_like(p), atol=1e-12) for p in m.parameters())


@pytest.mark.parametrize("n_visible, n_hidden, n_pos, n_neg", [
    (N_VISIBLE, N_HIDDEN, N_SAMPLES, 13),  # many rows for the weights: two in-place products
    (67, 71, 3, 2),  # few rows for the weights: both phases concatenated into one product
])
def test_weight_gradient_with_momentum_either_product_layout(dtype, n_visible, n_hidden, n_pos, n_neg):
    m = make_model("bernoulli", "bernoulli", n_visible, n_hidden, dtype=dtype, centered=True)
    g = torch.Generator().manual_seed(5)
    vp, vn = ((torch.rand(n, n_visible, generator=g) < 0.4).to(dtype) for n in (n_pos, n_neg))
    hp, hn = (torch.rand(n, n_hidden, generator=g).to(dtype) for n in (n_pos, n_neg))
    old = torch.randn(n_visible, n_hidden, generator=g).to(dtype)
    m.W.grad = old.clone()
    with torch.no_grad():
        m.write_gradient(vp, hp, vn, hn, momentum=0.7)
    mu, lam = m.visible_offset, m.hidden_offset
    expected = 0.7 * old + (vn - mu).T @ (hn - lam) / n_neg - (vp - mu).T @ (hp - lam) / n_pos
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(m.W.grad, expected, atol=tol, rtol=tol)


def exact_visible_marginals(m):
    V = all_states(m.visible)
    p = torch.softmax(-m.free_energy(V), 0)
    return p @ V


@pytest.mark.parametrize("sample_v", [True, None], ids=["sampled", "default"])
@pytest.mark.parametrize("sampler", ["gibbs", "tempering"])
def test_chains_sample_the_exact_distribution(sampler, sample_v):
    """The Gibbs sweep (and tempering with swaps) leaves p(v) invariant: after burn-in, the
    chains' visible means match the exact marginals within 5 standard errors.  Persistent chains
    continue from every sweep, so the default (``sample_v=None``) samples their visible states
    (passing means instead misses the marginals of this model by about 11 standard errors)."""
    m = make_model("bernoulli", "bernoulli", scale=1.5)
    g = torch.Generator().manual_seed(5)
    n = 4000
    start = m.start(torch.zeros(n, N_VISIBLE, dtype=torch.float64), generator=g)
    if sampler == "gibbs":
        phase = PersistentContrastiveDivergence(n)
    else:
        phase = ParallelTempering(n, 4)
    acc = torch.zeros(N_VISIBLE, dtype=torch.float64)
    n_keep = 0
    for it in range(80):
        s = phase.negative(m, start, 1, sample_v=sample_v, sample_h=True, generator=g)
        if it >= 40:
            acc += s.v.mean(0)
            n_keep += 1
    emp = acc / n_keep
    exact = exact_visible_marginals(m)
    se = torch.sqrt(exact * (1 - exact) / n)  # chains are correlated over time: bound by one batch
    assert (torch.abs(emp - exact) < 5 * se + 1e-3).all(), (emp, exact)
    if sampler == "tempering":
        rates = phase.swap_rates()
        assert ((0 < rates) & (rates <= 1)).all(), rates


def test_cd_chains_sample_and_keep_means_only_for_the_reconstruction(dtype):
    """CD-k with the default ``sample_v=None``: the k - 1 sweeps the chain continues from draw the
    visible states, so after 30 sweeps from all-zero rows the reconstructions (the visible means of
    the last sweep, the only ones kept as means) average to the exact marginals (with means in
    every sweep they miss them by about 12 standard errors)."""
    m = make_model(scale=1.5)
    exact = exact_visible_marginals(m).to(dtype)
    m = m.to(dtype)
    g = torch.Generator().manual_seed(11)
    n = 4000
    pos = m.start(torch.zeros(n, N_VISIBLE, dtype=dtype), generator=g)
    s = ContrastiveDivergence().negative(m, pos, 30, sample_v=None, sample_h=True, generator=g)
    assert ((s.v > 0) & (s.v < 1)).all(), "the reconstruction is the visible means"
    se = torch.sqrt(exact * (1 - exact) / n)
    assert (torch.abs(s.v.mean(0) - exact) < 5 * se + 1e-3).all(), (s.v.mean(0), exact)


def test_visible_means_everywhere_make_a_deterministic_mean_field_chain():
    """``sample_v=False`` with ``sample_h=False``: no draw anywhere, whatever the generator; the
    default draws the visible states the chain continues from."""
    m = make_model(scale=0.7)
    h = m.start(torch.zeros(N_SAMPLES, N_VISIBLE, dtype=torch.float64), sample_h=False).h

    def run(seed, sample_v):
        return m.gibbs(h, 3, sample_v=sample_v, sample_h=False, generator=torch.Generator().manual_seed(seed),
                       last_h=False).v

    assert torch.equal(run(1, False), run(2, False))
    assert not torch.equal(run(1, None), run(2, None))


def test_clamped_gibbs_samples_the_conditional():
    m = make_model("bernoulli", "bernoulli", scale=0.7)
    g = torch.Generator().manual_seed(7)
    n = 4000
    mask = torch.tensor([True, False, True, False, False, True, False])
    values = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    V = all_states(m.visible)
    keep = (V[:, mask] == values[mask]).all(1)
    p = torch.softmax(-m.free_energy(V[keep]), 0)
    exact = p @ V[keep]
    clamp = (mask.expand(n, -1), values.expand(n, -1))
    s = m.start(values.expand(n, -1).clone(), generator=g)
    s = m.gibbs(s.h, 30, generator=g, clamp=clamp)
    acc = torch.zeros_like(exact)
    for _ in range(20):
        s = m.gibbs(s.h, 1, generator=g, clamp=clamp)
        acc += s.v.mean(0)
    emp = acc / 20
    assert torch.equal(s.v[:, mask], values[mask].expand(n, -1))
    se = torch.sqrt(exact * (1 - exact) / n)
    assert (torch.abs(emp - exact) < 5 * se + 1e-3).all()


def test_centering_offsets_leave_the_distribution_unchanged():
    m = make_model("bernoulli", "bernoulli")
    V = all_states(m.visible)
    before = m.free_energy(V) + 0
    log_z = exact_log_partition(m)
    m.set_offsets(torch.full((N_VISIBLE,), 0.3, dtype=torch.float64), torch.full((N_HIDDEN,), 0.6, dtype=torch.float64))
    after = m.free_energy(V)
    # p(v) unchanged: free energies shift by a constant that log Z absorbs
    assert torch.allclose((-before - log_z), (-after - exact_log_partition(m)), atol=1e-10)
    # the constant is mu^T W lambda - mu'^T W lambda' (here mu = lambda = 0 before)
    mu, lam = m.visible_offset, m.hidden_offset
    torch.testing.assert_close(after - before, (-(mu @ m.W @ lam)).expand(len(V)), rtol=0, atol=1e-10)


def test_learned_sigma_on_hidden_units_is_refused():
    from harmonium.units import Bernoulli, Gaussian
    with pytest.raises(ValueError, match="learn sigma on the visible layer"):
        RBMModel(Bernoulli(3), Gaussian(2, learn_sigma=True))
