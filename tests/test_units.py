"""Tests for harmonium.units: the unit types of a Boltzmann machine layer.

The defining identity of a layer: for an input ``a`` of shape (batch, n),

    log_partition(a, beta) = log sum_x exp(-bias_energy(x, beta) + statistic(x) . a)

(an integral for Gaussian units), and ``mean`` / ``sample`` describe
p(x | a, beta) ~ exp(-bias_energy(x, beta) + statistic(x) . a).  The tests check
this against brute-force enumeration (discrete types), numerical integration
(Gaussian) and sampling statistics, in float32 and float64.

Sizes are distinct primes where possible (7 units, batch 11, groups of 3 in 9 or
of 7 in 14) so that broadcasting mistakes cannot pass.  Every random draw uses a
seeded ``torch.Generator``; the global RNG is never touched.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor

from harmonium import units as units_mod
from harmonium.units import Bernoulli, Gaussian, Multinomial, Softmax, Units, make_units, register_units

DTYPES = [torch.float32, torch.float64]
BATCH = 11


# =============================================================================
# A new unit type is one small subclass: {-1, +1} spins.
# =============================================================================
class Spin(Units):
    """Ising spins, x in {-1, +1}: E[x | a] = tanh(beta * b + a)."""

    name = "spin"
    support = "[-1, 1] (states -1/+1, or means)"

    def mean(self, a, beta=1.0):
        return torch.tanh(self.natural(a, beta))

    def sample(self, a, beta=1.0, generator=None, mean=None):
        m = self.mean(a, beta) if mean is None else mean
        u = torch.rand(m.shape, generator=generator, dtype=m.dtype, device=m.device)
        return torch.where(u < 0.5 * (1 + m), 1.0, -1.0).to(m.dtype)

    def log_partition(self, a, beta=1.0):
        eta = self.natural(a, beta)
        return torch.logaddexp(eta, -eta).sum(-1)  # log(2 cosh(eta)), stable

    def validate(self, x, what="X"):
        super().validate(x, what)
        if ((x < -1) | (x > 1)).any():
            raise ValueError(f"{what} has values outside the support of Spin units, {self.support}")

    def init_bias(self, data_mean):
        return torch.atanh(data_mean.clamp(-1 + 1e-3, 1 - 1e-3))

    def site_states(self):
        return torch.tensor([[-1.0], [1.0]])


# =============================================================================
# helpers
# =============================================================================
def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tols(dtype):
    """(rtol, atol) for comparing a layer's output in ``dtype`` with a float64 reference."""
    return (2e-5, 2e-5) if dtype == torch.float32 else (1e-10, 1e-10)


def close(actual: Tensor, expected: Tensor, dtype, scale: float = 1.0, msg: str = "") -> None:
    rtol, atol = tols(dtype)
    torch.testing.assert_close(actual.to(torch.float64), expected.to(torch.float64),
                               rtol=rtol * scale, atol=atol * scale, msg=msg or None)


def randomize(u: Units, seed: int, scale: float = 1.0) -> Units:
    """Random (seeded) bias so that nothing passes trivially at zero bias."""
    with torch.no_grad():
        u.bias.normal_(generator=gen(seed)).mul_(scale)
    return u


def prepare(u: Units, dtype, seed: int = 0) -> tuple[Units, Units]:
    """The layer (random bias) in ``dtype``, and a float64 copy with the same parameters."""
    randomize(u, seed)
    u = u.to(dtype)
    return u, copy.deepcopy(u).to(torch.float64)


def rand_input(shape, dtype, seed: int, scale: float = 1.5) -> Tensor:
    return scale * torch.randn(shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def beta_arg(beta, batch: int, dtype):
    """Turn a beta spec into what the layer methods take: a float or a (batch, 1) tensor."""
    if beta == "tensor":
        return torch.linspace(0.15, 1.45, batch, dtype=torch.float64).to(dtype)[:, None]
    return float(beta)


def as_double(beta):
    return beta.to(torch.float64) if isinstance(beta, Tensor) else beta


def all_states(u: Units) -> Tensor:
    return torch.cat(list(u.enumerate_states()))


def brute_force(u: Units, a: Tensor, beta) -> tuple[Tensor, Tensor]:
    """log Z and E[x] by enumerating every joint state, from the layer's own energy."""
    X = all_states(u).to(a.dtype)  # (S, n)
    B, S, n = a.shape[0], X.shape[0], u.n
    Xb = X.expand(B, S, n)
    b = beta.reshape(B, 1, 1).expand(B, S, 1) if isinstance(beta, Tensor) else beta
    logits = -u.bias_energy(Xb, b) + (u.statistic(Xb) * a[:, None, :]).sum(-1)  # (B, S)
    assert logits.shape == (B, S)
    log_z = torch.logsumexp(logits, -1)
    w = torch.softmax(logits, -1)
    return log_z, (w[..., None] * Xb).sum(1)


def group_softmax(eta: Tensor, k: int) -> Tensor:
    return torch.softmax(eta.reshape(*eta.shape[:-1], -1, k), -1).reshape(eta.shape)


def expected_moments(u: Units, a: Tensor, beta) -> tuple[Tensor, Tensor]:
    """Per-unit conditional mean and variance from the textbook formulas (not the library's)."""
    b = u.bias.detach()
    bt = beta if isinstance(beta, Tensor) else torch.tensor(beta, dtype=a.dtype)
    if isinstance(u, Gaussian):
        s = u.sigma.detach()
        return b + s * a / bt, (s * s / bt).expand(a.shape)
    eta = bt * b + a
    if isinstance(u, Spin):
        m = torch.tanh(eta)
        return m, 1 - m * m
    if isinstance(u, Softmax):  # Multinomial included
        d = u.n_draws
        p = group_softmax(eta, u.group_size)
        return d * p, d * p * (1 - p)
    if isinstance(u, Bernoulli):
        p = torch.sigmoid(eta)
        return p, p * (1 - p)
    raise AssertionError(type(u))


def gaussian_numeric(u: Gaussian, a: Tensor, beta, n_grid: int = 1201) -> tuple[Tensor, Tensor]:
    """log Z and E[x] of a float64 Gaussian layer by trapezoidal integration, per unit.

    Integrating unit i while the others are held at reference values r gives
    log int exp(g(x)) dx_i = log Z_i + sum_{j != i} g_j(r_j); summing over i and
    subtracting (n - 1) g(r) leaves sum_i log Z_i, using only the layer's full
    ``bias_energy`` (so a tensor beta goes through the real code path).
    """
    B, n = a.shape
    s, b = u.sigma.detach(), u.bias.detach()
    bt = beta if isinstance(beta, Tensor) else torch.tensor(beta, dtype=a.dtype)
    centre = b + s * a / bt  # (B, n), used only to place the grid
    sd = (s / torch.sqrt(bt)).expand(B, n)
    t = torch.linspace(-12.0, 12.0, n_grid, dtype=a.dtype)
    grid = centre[..., None] + sd[..., None] * t  # (B, n, G)
    eye = torch.eye(n, dtype=torch.bool)
    X = torch.where(eye[None, :, None, :], grid[..., None], centre[:, None, None, :])  # (B, n_i, G, n)
    b4 = beta.reshape(B, 1, 1, 1) if isinstance(beta, Tensor) else beta
    g = -u.bias_energy(X, b4) + (u.statistic(X) * a[:, None, None, :]).sum(-1)  # (B, n, G)
    gmax = g.max(-1, keepdim=True).values
    w = torch.exp(g - gmax)
    integral = torch.trapezoid(w, grid, dim=-1)
    log_i = torch.log(integral) + gmax.squeeze(-1)  # (B, n)
    g_ref = -u.bias_energy(centre, beta) + (u.statistic(centre) * a).sum(-1)  # (B,)
    log_z = log_i.sum(-1) - (n - 1) * g_ref
    mean = torch.trapezoid(w * grid, grid, dim=-1) / integral
    return log_z, mean


# -- layer factories -------------------------------------------------------------
# small layers for enumeration
ENUM_LAYERS = {
    "bernoulli5": lambda: Bernoulli(5),
    "spin5": lambda: Spin(5),
    "softmax6g3": lambda: Softmax(6, group_size=3),
    "softmax7": lambda: Softmax(7),  # one 7-way group
    "multinomial4g2d3": lambda: Multinomial(4, group_size=2, n_draws=3),
    "multinomial6g3d3": lambda: Multinomial(6, group_size=3, n_draws=3),
}

SIGMAS7 = [0.3, 0.5, 0.8, 1.0, 1.3, 1.7, 2.3]

# layers for sampling and everything else
LAYERS = {
    "bernoulli7": lambda: Bernoulli(7),
    "spin7": lambda: Spin(7),
    "softmax9g3": lambda: Softmax(9, group_size=3),
    "softmax14g7": lambda: Softmax(14, group_size=7),
    "multinomial9g3d3": lambda: Multinomial(9, group_size=3, n_draws=3),
    "gaussian7": lambda: Gaussian(7, sigma=torch.tensor(SIGMAS7)),
    "gaussian7_learn": lambda: Gaussian(7, sigma=torch.tensor(SIGMAS7), learn_sigma=True),
}
DISCRETE_LAYERS = [k for k in LAYERS if not k.startswith("gaussian")]

BETAS = [1.0, 0.37, "tensor"]


def enum_params():
    # Multinomial at beta != 1 is a regression test: bias_energy once tempered the multinomial
    # coefficient (the base measure) while log_partition/mean/sample did not.
    return [pytest.param(name, beta, dtype, id=f"{name}-beta{beta}-{str(dtype)[6:]}")
            for name in ENUM_LAYERS for beta in BETAS for dtype in DTYPES]


# =============================================================================
# 1. discrete types: log_partition and mean against brute-force enumeration
# =============================================================================
@pytest.mark.parametrize("name,beta,dtype", enum_params())
def test_log_partition_matches_enumeration(name, beta, dtype):
    u, ref = prepare(ENUM_LAYERS[name](), dtype, seed=1)
    a = rand_input((BATCH, u.n), dtype, seed=2)
    b = beta_arg(beta, BATCH, dtype)
    log_z = u.log_partition(a, b)
    assert log_z.shape == (BATCH,)
    assert log_z.dtype == dtype
    expected, _ = brute_force(ref, a.to(torch.float64), as_double(b))
    close(log_z, expected, dtype, msg=f"log_partition of {name} at beta={beta}")


@pytest.mark.parametrize("name,beta,dtype", enum_params())
def test_mean_matches_enumeration(name, beta, dtype):
    u, ref = prepare(ENUM_LAYERS[name](), dtype, seed=3)
    a = rand_input((BATCH, u.n), dtype, seed=4)
    b = beta_arg(beta, BATCH, dtype)
    m = u.mean(a, b)
    assert m.shape == (BATCH, u.n)
    assert m.dtype == dtype
    _, expected = brute_force(ref, a.to(torch.float64), as_double(b))
    close(m, expected, dtype, msg=f"mean of {name} at beta={beta}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ENUM_LAYERS))
def test_log_prob_is_normalised_over_every_state(name, dtype):
    u, _ = prepare(ENUM_LAYERS[name](), dtype, seed=5)
    a = rand_input((BATCH, u.n), dtype, seed=6)
    X = all_states(u).to(dtype)  # (S, n)
    lp = u.log_prob(X[:, None, :].expand(-1, BATCH, -1), a)  # (S, BATCH)
    assert lp.shape == (len(X), BATCH) and lp.dtype == dtype
    close(torch.logsumexp(lp.double(), 0), torch.zeros(BATCH, dtype=torch.float64), dtype,
          msg=f"log_prob of {name} summed over its states")


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_prob_matches_torch_distributions(dtype):
    """Bernoulli, Gaussian, softmax and multinomial layers against torch.distributions."""
    D = torch.distributions
    a = rand_input((BATCH, 9), dtype, seed=7)
    g = gen(8)
    b, _ = prepare(Bernoulli(9), dtype, seed=9)
    x = (torch.rand(BATCH, 9, generator=g) < 0.5).to(dtype)
    close(b.log_prob(x, a), D.Bernoulli(logits=a + b.bias.detach()).log_prob(x).sum(-1), dtype)
    s, _ = prepare(Gaussian(9, sigma=torch.linspace(0.4, 2.0, 9)), dtype, seed=10)
    x = torch.randn(BATCH, 9, generator=g, dtype=torch.float64).to(dtype)
    close(s.log_prob(x, a), D.Normal(s.mean(a), s.sigma.detach()).log_prob(x).sum(-1), dtype)
    for u in (Softmax(9, group_size=3), Multinomial(9, group_size=3, n_draws=4)):
        u, _ = prepare(u, dtype, seed=11)
        logits = (a + u.bias.detach()).view(BATCH, 3, 3)
        x = u.sample(a, generator=g)
        draws = getattr(u, "n_draws", 1)
        expected = D.Multinomial(draws, logits=logits).log_prob(x.view(BATCH, 3, 3)).sum(-1)
        close(u.log_prob(x, a), expected, dtype, msg=type(u).__name__)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multinomial_at_beta_one_includes_multinomial_coefficient(dtype):
    # at beta = 1 a count vector's weight is the multinomial coefficient times exp(x . eta):
    # log Z = n_draws * logsumexp(eta) per group (replicated softmax)
    u, _ = prepare(Multinomial(6, group_size=3, n_draws=3), dtype, seed=5)
    a = rand_input((BATCH, 6), dtype, seed=6)
    eta = (a + u.bias).to(torch.float64).reshape(BATCH, 2, 3)
    close(u.log_partition(a), 3 * torch.logsumexp(eta, -1).sum(-1), dtype)
    # the coefficient: bias energy of a state at zero bias is -log(3! / prod x!)
    with torch.no_grad():
        u.bias.zero_()
    x = torch.tensor([[3.0, 0, 0, 1, 1, 1], [2, 1, 0, 0, 2, 1]], dtype=dtype)
    expected = -torch.tensor([math.log(1) + math.log(6), math.log(3) + math.log(3)], dtype=torch.float64)
    close(u.bias_energy(x), expected, dtype)


@pytest.mark.parametrize("name", list(ENUM_LAYERS) + ["gaussian7", "gaussian7_learn"])
@pytest.mark.parametrize("beta", [1.0, 0.37, "tensor"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_partition_gradient_is_expected_statistic(name, beta, dtype):
    """d log Z / d a = E[T(x)] and, for linear biases, d log Z / d b = beta * E[x]."""
    factory = ENUM_LAYERS.get(name) or LAYERS[name]
    u, _ = prepare(factory(), dtype, seed=7)
    b = beta_arg(beta, BATCH, dtype)
    a = rand_input((BATCH, u.n), dtype, seed=8).requires_grad_(True)
    log_z = u.log_partition(a, b)
    ga, gb = torch.autograd.grad(log_z.sum(), [a, u.bias])
    with torch.no_grad():
        m = u.mean(a, b)
        close(ga, u.statistic(m), dtype, scale=5)
        if u.linear_bias:
            bt = b if isinstance(b, Tensor) else torch.tensor(b, dtype=dtype)
            close(gb, (bt * m).sum(0), dtype, scale=20)


# =============================================================================
# 2. Gaussian: log_partition and mean against numerical integration
# =============================================================================
@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("beta", [1.0, 0.5, "tensor"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_log_partition_and_mean_match_integration(learn_sigma, beta, dtype):
    u, ref = prepare(Gaussian(7, sigma=torch.tensor(SIGMAS7), learn_sigma=learn_sigma), dtype, seed=9)
    assert torch.allclose(ref.sigma, torch.tensor(SIGMAS7, dtype=torch.float64), rtol=1e-6)
    a = rand_input((BATCH, 7), dtype, seed=10)
    b = beta_arg(beta, BATCH, dtype)
    log_z_num, mean_num = gaussian_numeric(ref, a.to(torch.float64), as_double(b))
    log_z = u.log_partition(a, b)
    assert log_z.shape == (BATCH,) and log_z.dtype == dtype
    close(log_z, log_z_num, dtype, scale=5 if dtype == torch.float32 else 1e2)
    m = u.mean(a, b)
    assert m.shape == (BATCH, 7) and m.dtype == dtype
    close(m, mean_num, dtype, scale=5 if dtype == torch.float32 else 1e2)
    # and the closed form b + sigma * a / beta
    bt = as_double(b) if isinstance(b, Tensor) else torch.tensor(b, dtype=torch.float64)
    closed = ref.bias.detach() + ref.sigma * a.to(torch.float64) / bt
    close(m, closed, dtype)


def test_gaussian_sigma_per_unit_and_statistic():
    u = Gaussian(7, sigma=torch.tensor(SIGMAS7))
    torch.testing.assert_close(u.sigma, torch.tensor(SIGMAS7))
    x = torch.randn(BATCH, 7, generator=gen(11))
    torch.testing.assert_close(u.statistic(x), x / torch.tensor(SIGMAS7))
    assert u.linear_bias is False
    scalar = Gaussian(5, sigma=0.7)
    torch.testing.assert_close(scalar.sigma, torch.full((5,), 0.7))
    learned = Gaussian(5, sigma=0.7, learn_sigma=True)
    assert {n for n, _ in learned.named_parameters()} == {"bias", "log_sigma"}
    assert {n for n, _ in scalar.named_parameters()} == {"bias"}
    assert "log_sigma" in dict(scalar.named_buffers())


def test_gaussian_rejects_nonpositive_beta():
    u = Gaussian(3)
    a = torch.zeros(2, 3)
    for beta in (0.0, -1.0, torch.tensor([[0.5], [0.0]])):
        with pytest.raises(ValueError, match="beta"):
            u.mean(a, beta)
        with pytest.raises(ValueError, match="beta"):
            u.log_partition(a, beta)


# =============================================================================
# 3. sampling statistics
# =============================================================================
N_SAMPLES = 20000


# four of the six (dtype, beta) combinations keep the run time down; each beta path and
# each dtype is still covered for every layer
SAMPLE_CASES = [(torch.float32, 1.0), (torch.float64, 1.0), (torch.float64, 0.37), (torch.float32, "tensor")]


@pytest.mark.parametrize("dtype,beta", SAMPLE_CASES, ids=["f32-beta1", "f64-beta1", "f64-beta0.37", "f32-tensor"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_sample_statistics(name, dtype, beta):
    u, _ = prepare(LAYERS[name](), dtype, seed=12)
    n = u.n
    row = rand_input((1, n), dtype, seed=13, scale=1.0)
    a = row.expand(N_SAMPLES, n)
    b = beta_arg(beta, N_SAMPLES, dtype)
    x = u.sample(a, b, generator=gen(14))
    assert x.shape == (N_SAMPLES, n) and x.dtype == dtype
    assert torch.isfinite(x).all()
    u.validate(x)  # samples are in the support

    m_exp, v_exp = expected_moments(u, a.to(torch.float64), as_double(b))
    # the library's mean is the textbook one
    close(u.mean(a[:BATCH], b[:BATCH] if isinstance(b, Tensor) else b), m_exp[:BATCH], dtype)
    # empirical mean within 5 standard errors of the conditional mean, per unit
    xd = x.to(torch.float64)
    resid = (xd - m_exp).sum(0)
    se = torch.sqrt(v_exp.sum(0)).clamp_min(1e-12)
    z = resid / se
    assert (z.abs() < 5).all(), f"standardized mean errors {z.tolist()}"

    if isinstance(u, Gaussian):
        # variance sigma^2 / beta: mean of squared standardized residuals is 1 +- 5 sqrt(2/N)
        r2 = ((xd - m_exp) ** 2 / v_exp).mean(0)
        assert ((r2 - 1).abs() < 5 * math.sqrt(2 / N_SAMPLES)).all(), r2.tolist()
    elif isinstance(u, Spin):
        assert ((x == 1) | (x == -1)).all()
    elif isinstance(u, Softmax):
        g = x.reshape(N_SAMPLES, -1, u.group_size)
        d = u.n_draws
        assert (g >= 0).all() and (g == g.round()).all()  # non-negative integer counts
        assert (g.sum(-1) == d).all()
        if d == 1:
            assert ((g == 0) | (g == 1)).all()  # one-hot
        # per-category frequencies match n_draws * softmax(beta b + a) (checked above via m_exp);
        # also check a multinomial-specific moment: the covariance of two categories, -d p_i p_j
        if d > 1:
            p = m_exp[0].reshape(-1, u.group_size) / d if not isinstance(b, Tensor) else None
            if p is not None:
                c = (g[..., 0] - d * p[:, 0]) * (g[..., 1] - d * p[:, 1])
                cov = c.to(torch.float64).mean(0)
                expected = -d * p[:, 0] * p[:, 1]
                se_c = c.to(torch.float64).std(0) / math.sqrt(N_SAMPLES)
                assert ((cov - expected).abs() < 5 * se_c).all(), (cov, expected)
    elif isinstance(u, Bernoulli):
        assert ((x == 0) | (x == 1)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_sample_reproducible_and_accepts_precomputed_mean(name, dtype):
    u, _ = prepare(LAYERS[name](), dtype, seed=15)
    a = rand_input((BATCH, u.n), dtype, seed=16)
    for beta in (1.0, 0.37, beta_arg("tensor", BATCH, dtype)):
        x1 = u.sample(a, beta, generator=gen(17))
        x2 = u.sample(a, beta, generator=gen(17))
        x3 = u.sample(a, beta, generator=gen(17), mean=u.mean(a, beta))
        torch.testing.assert_close(x1, x2, rtol=0, atol=0)
        torch.testing.assert_close(x1, x3, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_sample_with_generator_leaves_global_rng_alone(name):
    u, _ = prepare(LAYERS[name](), torch.float32, seed=18)
    a = rand_input((BATCH, u.n), torch.float32, seed=19)
    state = torch.get_rng_state()
    u.sample(a, 1.0, generator=gen(20))
    u.sample(a, 0.5, generator=gen(20))
    assert torch.equal(state, torch.get_rng_state())


# =============================================================================
# 4. validate
# =============================================================================
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_validate_rejects_nan_inf_and_wrong_shape(name, dtype):
    u = LAYERS[name]().to(dtype)
    n = u.n
    good = u.sample(torch.zeros(BATCH, n, dtype=dtype), generator=gen(21))
    u.validate(good)
    for bad_value in (float("nan"), float("inf"), float("-inf")):
        x = good.clone()
        x[3, 2] = bad_value
        with pytest.raises(ValueError, match="NaN or infinite"):
            u.validate(x)
    for shape in [(BATCH, n + 1), (BATCH, n - 1), (n,), (2, BATCH, n)]:
        with pytest.raises(ValueError, match=r"must have shape \(n_samples, %d\)" % n):
            u.validate(torch.zeros(shape, dtype=dtype) if not isinstance(u, Softmax) else
                       torch.ones(shape, dtype=dtype))
    # the name of the data appears in the message
    x = good.clone()
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="^visible data"):
        u.validate(x, "visible data")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_validate_accepts_means_and_samples(name, dtype):
    u, _ = prepare(LAYERS[name](), dtype, seed=22)
    a = rand_input((BATCH, u.n), dtype, seed=23, scale=4.0)
    u.validate(u.mean(a))
    u.validate(u.mean(a, 0.37))
    u.validate(u.sample(a, generator=gen(24)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_validate_bernoulli(dtype):
    u = Bernoulli(7)
    ok = torch.tensor([[0, 1, 0.3, 1, 0, 0.999, 0.0]] * 3, dtype=dtype)
    u.validate(ok)
    for bad in (3.0, -0.5, 1.0001):
        x = ok.clone()
        x[1, 4] = bad
        with pytest.raises(ValueError, match="outside the support of Bernoulli units") as info:
            u.validate(x)
        assert f"{bad:g}" in str(info.value)  # the offending extreme is reported


@pytest.mark.parametrize("dtype", DTYPES)
def test_validate_spin(dtype):
    u = Spin(5)
    u.validate(torch.tensor([[-1.0, 1, 1, -1, 0.25]], dtype=dtype))
    with pytest.raises(ValueError, match="outside the support of Spin"):
        u.validate(torch.tensor([[-1.0, 1, 2, -1, 1]], dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_validate_softmax(dtype):
    u = Softmax(9, group_size=3)
    rows = [[1, 0, 0, 0, 1, 0, 0, 0, 1],
            [0.2, 0.3, 0.5, 0, 0, 1, 1 / 3, 1 / 3, 1 / 3]]  # one-hot or probability vectors
    u.validate(torch.tensor(rows, dtype=dtype))
    bad_groups = {
        "two ones": [1, 1, 0],
        "all zero": [0, 0, 0],
        "negative": [-0.5, 1.5, 0],
        "sums to 1.5": [0.5, 0.5, 0.5],
        "above one": [2, -1, 0],
    }
    for label, grp in bad_groups.items():
        x = torch.tensor(rows * 2, dtype=dtype)
        x[2, 3:6] = torch.tensor(grp, dtype=dtype)  # row 2, group 1
        with pytest.raises(ValueError, match="outside the support of Softmax units") as info:
            u.validate(x, "V")
        msg = str(info.value)
        assert msg.startswith("V"), label
        assert "row 2" in msg and "group 1" in msg and "units 3-5" in msg, (label, msg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_validate_multinomial(dtype):
    u = Multinomial(6, group_size=3, n_draws=3)
    ok = torch.tensor([[3, 0, 0, 1, 1, 1], [0, 2, 1, 0, 0, 3], [1.5, 1, 0.5, 0.3, 0.7, 2]], dtype=dtype)
    u.validate(ok)  # counts, and means (fractional counts) summing to n_draws
    for grp in ([1, 1, 0], [1, 1, 2], [0, 0, 0], [4, -1, 0], [1, 0, 0]):
        x = ok.clone()
        x[1, 3:6] = torch.tensor(grp, dtype=dtype)
        with pytest.raises(ValueError, match="outside the support of Multinomial units") as info:
            u.validate(x)
        assert "row 1" in str(info.value) and "group 1" in str(info.value)


def test_validate_gaussian_accepts_any_real():
    u = Gaussian(3, sigma=0.5)
    u.validate(torch.tensor([[-1e6, 0.0, 1e6]]))


# =============================================================================
# 5. make_units and register_units
# =============================================================================
@pytest.fixture
def fresh_registry(monkeypatch):
    """A private copy of the unit registry, so registering test classes does not leak."""
    monkeypatch.setattr(units_mod, "_REGISTRY", dict(units_mod._REGISTRY))
    return units_mod._REGISTRY


@pytest.mark.parametrize("spec,cls", [
    ("bernoulli", Bernoulli), ("Bernoulli", Bernoulli), ("BERNOULLI", Bernoulli),
    ("gaussian", Gaussian), ("GaUsSiAn", Gaussian), ("multinomial", Multinomial),
    ("softmax", Softmax), ("Softmax", Softmax),
])
def test_make_units_by_name(spec, cls):
    u = make_units(spec, 7)
    assert type(u) is cls and u.n == 7
    if isinstance(u, Softmax):
        assert u.group_size == 7  # default: the whole layer is one group


def test_make_units_from_dict():
    u = make_units({"name": "softmax", "group_size": 3}, 9)
    assert type(u) is Softmax and u.n == 9 and u.group_size == 3
    u = make_units({"name": "Multinomial", "group_size": 3, "n_draws": 5}, 9)
    assert type(u) is Multinomial and u.group_size == 3 and u.n_draws == 5
    u = make_units({"name": "gaussian", "sigma": SIGMAS7, "learn_sigma": True}, 7)
    assert type(u) is Gaussian and u.learn_sigma
    torch.testing.assert_close(u.sigma.detach(), torch.tensor(SIGMAS7))
    # an "n" in the dict is ignored in favour of the size asked for
    u = make_units({"name": "bernoulli", "n": 3}, 7)
    assert u.n == 7
    spec = {"name": "softmax", "group_size": 3}
    make_units(spec, 9)
    assert spec == {"name": "softmax", "group_size": 3}  # not mutated
    with pytest.raises(ValueError, match="group_size"):
        make_units({"name": "softmax", "group_size": 3}, 7)


def test_make_units_from_class_and_instance():
    u = make_units(Bernoulli, 7)
    assert type(u) is Bernoulli and u.n == 7
    s = make_units(Spin, 5)
    assert type(s) is Spin and s.n == 5
    inst = Softmax(9, group_size=3)
    assert make_units(inst, 9) is inst
    with pytest.raises(ValueError, match="has 9 units, the data needs 7"):
        make_units(inst, 7)


@pytest.mark.parametrize("spec", ["boltzmann", "", {"group_size": 3}, {"name": "nope"}, 3, None, torch.nn.Linear])
def test_make_units_unknown_lists_known(spec):
    with pytest.raises(ValueError, match="unknown unit type") as info:
        make_units(spec, 7)
    msg = str(info.value)
    for known in ("bernoulli", "gaussian", "multinomial", "softmax"):
        assert known in msg


def test_register_units_makes_custom_type_available(fresh_registry):
    with pytest.raises(ValueError, match="unknown unit type"):
        make_units("spin", 5)
    assert register_units(Spin) is Spin  # usable as a decorator
    u = make_units("spin", 5)
    assert type(u) is Spin and u.n == 5
    assert type(make_units("SPIN", 5)) is Spin
    assert type(make_units({"name": "spin"}, 5)) is Spin
    with pytest.raises(ValueError) as info:
        make_units("ising", 5)
    assert "spin" in str(info.value)
    # round trip through the saved config
    assert type(make_units(units_mod.units_config(u), 5)) is Spin


# regression: register_units once stored cls.name verbatim while make_units looked up
# spec.lower(), so a mixed-case name could never be found (nor reloaded from units_config)
def test_register_units_with_mixed_case_name(fresh_registry):
    @register_units
    class IsingSpin(Spin):
        name = "IsingSpin"

    u = make_units("IsingSpin", 5)
    assert type(u) is IsingSpin
    assert type(make_units(units_mod.units_config(u), 5)) is IsingSpin


@pytest.mark.parametrize("name", list(LAYERS) + list(ENUM_LAYERS))
def test_units_config_round_trip(name, fresh_registry):
    register_units(Spin)
    u = (LAYERS.get(name) or ENUM_LAYERS[name])()
    cfg = units_mod.units_config(u)
    v = make_units(cfg, u.n)
    assert type(v) is type(u)
    assert units_mod.units_config(v) == cfg


# =============================================================================
# 6. bias_energy_grads
# =============================================================================
def autograd_grads(u: Units, x: Tensor, weights: Tensor | None) -> list[Tensor]:
    c = copy.deepcopy(u)
    params = list(c.parameters())
    with torch.enable_grad():
        e = c.bias_energy(x)
        loss = e.mean() if weights is None else (weights * e).sum()
        return list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_bias_energy_grads_match_autograd(name, dtype, weighted):
    u, _ = prepare(LAYERS[name](), dtype, seed=25)
    a = rand_input((BATCH, u.n), dtype, seed=26)
    x = u.sample(a, generator=gen(27))
    w = None
    if weighted:
        w = torch.rand(BATCH, generator=gen(28), dtype=torch.float64).to(dtype)
        w = w / w.sum()
    expected = autograd_grads(u, x, w)
    with torch.no_grad():  # works inside no_grad (e.g. a training step)
        got = u.bias_energy_grads(x, w)
    assert len(got) == len(list(u.parameters()))
    for g, e, p in zip(got, expected, u.parameters()):
        assert g.shape == p.shape and g.dtype == dtype
        close(g, e, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_bias_energy_grads_analytic(dtype):
    u, _ = prepare(Gaussian(7, sigma=torch.tensor(SIGMAS7), learn_sigma=True), dtype, seed=29)
    x = rand_input((BATCH, 7), dtype, seed=30, scale=2.0)
    w = torch.linspace(1, 2, BATCH, dtype=dtype)
    w = w / w.sum()
    gb, gs = u.bias_energy_grads(x, w)
    s, b = u.sigma.detach(), u.bias.detach()
    close(gb, -(w[:, None] * (x - b) / s**2).sum(0), dtype)
    close(gs, -(w[:, None] * ((x - b) / s) ** 2).sum(0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS) + list(ENUM_LAYERS))
def test_bias_energy_terms_sum_to_bias_energy(name, dtype):
    u, _ = prepare((LAYERS.get(name) or ENUM_LAYERS[name])(), dtype, seed=31)
    x = u.sample(rand_input((BATCH, u.n), dtype, seed=32), generator=gen(33))
    terms = u.bias_energy_terms(x)
    assert terms.shape == x.shape
    close(terms.sum(-1), u.bias_energy(x), dtype, scale=5)
    # tempering: a float beta and a (batch, 1) tensor beta agree row by row
    beta = beta_arg("tensor", BATCH, dtype)
    e_t = u.bias_energy(x, beta)
    assert e_t.shape == (BATCH,)
    e_f = torch.stack([u.bias_energy(x[i:i + 1], float(beta[i])) for i in range(BATCH)]).squeeze(-1)
    close(e_t, e_f, dtype, scale=5)


# regression: bias_energy once treated every beta that is not a Python float as a tensor
# (beta.squeeze), so beta=1 or beta=0 as a Python int raised AttributeError
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_beta_forms_agree(name, dtype):
    """beta as a Python int, a float, a 0-d tensor or a constant (batch, 1) tensor: same results."""
    u, _ = prepare(LAYERS[name](), dtype, seed=34)
    a = rand_input((BATCH, u.n), dtype, seed=35)
    x = u.sample(a, generator=gen(36))
    values = [1, 2] if isinstance(u, Gaussian) else [0, 1, 2]
    for v in values:
        forms = [v, float(v), torch.tensor(float(v), dtype=dtype), torch.full((BATCH, 1), float(v), dtype=dtype)]
        ref = forms[1]
        for beta in forms:
            tag = f"{name} beta={beta!r}"
            close(u.bias_energy(x, beta), u.bias_energy(x, ref), dtype, msg=tag)
            close(u.mean(a, beta), u.mean(a, ref), dtype, msg=tag)
            close(u.log_partition(a, beta), u.log_partition(a, ref), dtype, msg=tag)
            s1 = u.sample(a, beta, generator=gen(37))
            s2 = u.sample(a, ref, generator=gen(37))
            close(s1, s2, dtype, msg=tag)


# =============================================================================
# 7. constructor errors
# =============================================================================
@pytest.mark.parametrize("make,match", [
    (lambda: Bernoulli(0), "at least one unit"),
    (lambda: Bernoulli(-3), "at least one unit"),
    (lambda: Spin(0), "at least one unit"),
    (lambda: Gaussian(0), "at least one unit"),
    (lambda: Softmax(0, group_size=3), "at least one unit"),
    (lambda: Softmax(7, group_size=3), "group_size must be >= 2 and divide"),
    (lambda: Softmax(9, group_size=2), "group_size must be >= 2 and divide"),
    (lambda: Softmax(6, group_size=1), "group_size must be >= 2"),
    (lambda: Softmax(1), "group_size must be >= 2"),
    (lambda: Multinomial(9, group_size=4, n_draws=3), "group_size"),
    (lambda: Gaussian(5, sigma=0.0), "sigma must be positive"),
    (lambda: Gaussian(5, sigma=-1.0), "sigma must be positive"),
    (lambda: Gaussian(3, sigma=torch.tensor([1.0, 0.0, 2.0])), "sigma must be positive"),
    (lambda: Gaussian(3, sigma=float("nan")), "sigma must be positive"),
    (lambda: Multinomial(6, group_size=3, n_draws=0), "n_draws must be >= 1"),
    (lambda: Multinomial(6, group_size=3, n_draws=-2), "n_draws must be >= 1"),
])
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_constructor_defaults():
    u = Bernoulli(7)
    assert u.n == 7 and u.bias.shape == (7,) and torch.equal(u.bias.detach(), torch.zeros(7))
    assert isinstance(u.bias, torch.nn.Parameter)
    s = Softmax(9, group_size=3)
    assert s.site_size == 3 and s.n_draws == 1
    m = Multinomial(9, group_size=3, n_draws=4)
    assert m.n_draws == 4 and m.site_size == 3
    assert Softmax(9, group_size=3).n_draws == 1  # the instance attribute did not leak


# =============================================================================
# 8. numerical extremes
# =============================================================================
EXTREME_LAYERS = ["bernoulli7", "spin7", "softmax9g3", "softmax14g7", "multinomial9g3d3"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EXTREME_LAYERS)
def test_extreme_inputs_stay_finite(name, dtype):
    u, ref = prepare(LAYERS[name](), dtype, seed=36)
    n = u.n
    a = 1e3 * torch.randn(BATCH, n, generator=gen(37), dtype=torch.float64)
    a[0] = 1e3
    a[1] = -1e3
    a = a.to(dtype)
    for beta in (1.0, 0.37, beta_arg("tensor", BATCH, dtype)):
        log_z = u.log_partition(a, beta)
        m = u.mean(a, beta)
        assert torch.isfinite(log_z).all(), (beta, log_z)
        assert torch.isfinite(m).all(), beta
        u.validate(m)
        x = u.sample(a, beta, generator=gen(38))
        u.validate(x)
    # and the value is right: compare with the stable float64 formulas
    ad = a.to(torch.float64)
    eta = ad + ref.bias.detach()
    if isinstance(u, Softmax):
        expected = u.n_draws * torch.logsumexp(eta.reshape(BATCH, -1, u.group_size), -1).sum(-1)
    elif isinstance(u, Spin):
        expected = torch.logaddexp(eta, -eta).sum(-1)
    else:
        expected = torch.nn.functional.softplus(eta).sum(-1)
    close(u.log_partition(a), expected, dtype)
    m_exp, _ = expected_moments(ref, ad, 1.0)
    close(u.mean(a), m_exp, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [k for k in ENUM_LAYERS])
def test_extreme_inputs_match_enumeration(name, dtype):
    u, ref = prepare(ENUM_LAYERS[name](), dtype, seed=39)
    a = (1e3 * torch.randn(BATCH, u.n, generator=gen(40), dtype=torch.float64)).to(dtype)
    log_z, m = brute_force(ref, a.to(torch.float64), 1.0)
    close(u.log_partition(a), log_z, dtype)
    close(u.mean(a), m, dtype)


# =============================================================================
# enumeration, sites and the rest of the small API
# =============================================================================
@pytest.mark.parametrize("name,n_states", [
    ("bernoulli5", 32), ("spin5", 32), ("softmax6g3", 9), ("softmax7", 7),
    ("multinomial4g2d3", 16), ("multinomial6g3d3", 100),
])
def test_enumerate_states(name, n_states):
    u = ENUM_LAYERS[name]()
    assert u.enumerable
    assert u.n_states() == n_states
    X = all_states(u)
    assert X.dtype == torch.float64
    assert X.shape == (n_states, u.n)
    assert torch.unique(X, dim=0).shape[0] == n_states
    u.validate(X)
    chunks = list(u.enumerate_states(chunk=5))
    assert all(c.shape[0] <= 5 for c in chunks)
    assert torch.equal(torch.cat(chunks), X)


def test_site_states():
    torch.testing.assert_close(Bernoulli(3).site_states(), torch.tensor([[0.0], [1.0]]))
    torch.testing.assert_close(Spin(3).site_states(), torch.tensor([[-1.0], [1.0]]))
    torch.testing.assert_close(Softmax(6, 3).site_states(), torch.eye(3))
    ms = Multinomial(4, group_size=2, n_draws=3).site_states()
    assert sorted(map(tuple, ms.tolist())) == [(0, 3), (1, 2), (2, 1), (3, 0)]
    assert Multinomial(9, group_size=3, n_draws=3).site_states().shape == (10, 3)  # C(5, 2)


@pytest.mark.parametrize("name", ["bernoulli5", "spin5", "softmax6g3", "multinomial6g3d3"])
def test_site_quadrature_discrete(name):
    u, _ = prepare(ENUM_LAYERS[name](), torch.float64, seed=46)
    nodes, log_w = u.site_quadrature()
    n_sites, S = u.n // u.site_size, u.site_states().shape[0]
    assert nodes.shape == (n_sites, S, u.site_size) and log_w.shape == (n_sites, S)
    assert nodes.dtype == torch.float64
    for i in range(n_sites):
        torch.testing.assert_close(nodes[i], u.site_states().to(torch.float64))
    assert torch.equal(log_w, torch.zeros_like(log_w))


@pytest.mark.parametrize("dtype", DTYPES)
def test_site_quadrature_gaussian_integrates_the_conditional(dtype):
    """sum_k w_k exp(-bias_energy_i(x_k) + x_k a_i / sigma_i) = Z_i for every unit i."""
    u, _ = prepare(Gaussian(7, sigma=torch.tensor(SIGMAS7)), dtype, seed=47)
    nodes, log_w = u.site_quadrature()
    assert nodes.shape[0] == 7 and nodes.shape[2] == 1 and log_w.shape == nodes.shape[:2]
    x = nodes[..., 0]  # (7, K)
    b, s = u.bias.detach()[:, None], u.sigma.detach()[:, None]
    a = rand_input((7,), dtype, seed=48, scale=1.0)[:, None]
    log_z = torch.logsumexp(log_w - 0.5 * ((x - b) / s) ** 2 + x * a / s, -1).sum()
    close(log_z, u.log_partition(a.T).squeeze(0).to(torch.float64), dtype, scale=10)


def test_n_states_too_many_for_a_float_is_infinite():
    """2 ** 1024 overflows a float: a 1024-unit layer (a DBM's top layer on MNIST) has "infinitely"
    many states, which must not raise when a DBM asks whether exact enumeration is feasible."""
    assert Bernoulli(1023).n_states() == 2.0 ** 1023
    assert Bernoulli(1024).n_states() == math.inf
    assert Softmax(3 * 700, group_size=3).n_states() == math.inf


def test_gaussian_is_not_enumerable():
    u = Gaussian(3)
    assert not u.enumerable
    assert u.n_states() == math.inf
    with pytest.raises(ValueError, match="continuous"):
        u.site_states()
    with pytest.raises(ValueError, match="continuous"):
        next(u.enumerate_states())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_init_bias_reproduces_data_mean(name, dtype):
    u = LAYERS[name]().to(dtype)
    target, _ = expected_moments(randomize(LAYERS[name](), 41).double(),
                                 torch.zeros(1, u.n, dtype=torch.float64), 1.0)
    target = target[0].to(dtype)
    with torch.no_grad():
        u.bias.copy_(u.init_bias(target))
    close(u.mean(torch.zeros(1, u.n, dtype=dtype))[0], target, dtype, scale=10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_shift_bias_is_a_shift_of_the_input(name, dtype):
    u, _ = prepare(LAYERS[name](), dtype, seed=42)
    a = rand_input((BATCH, u.n), dtype, seed=43)
    delta = rand_input((u.n,), dtype, seed=44, scale=0.5)
    expected = u.mean(a + delta).detach()
    u.shift_bias(delta)
    close(u.mean(a), expected, dtype, scale=5)


@pytest.mark.parametrize("name", list(LAYERS))
def test_default_offset_is_statistic_of_mean_at_zero_natural_parameter(name):
    u, _ = prepare(LAYERS[name](), torch.float64, seed=45)
    off = u.default_offset()
    assert off.shape == (u.n,) and not off.requires_grad
    if isinstance(u, Gaussian):
        expected = u.bias.detach() / u.sigma.detach()
    elif isinstance(u, Softmax):
        expected = torch.full((u.n,), u.n_draws / u.group_size, dtype=torch.float64)
    elif isinstance(u, Spin):
        expected = torch.zeros(u.n, dtype=torch.float64)
    else:
        expected = torch.full((u.n,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(off, expected)
