"""Unit types: what one layer of a Boltzmann machine is.

A layer of ``n`` units with states ``x`` contributes to the energy of a machine

    E(x; a) = bias_energy(x) - T(x) . a

where ``a`` is the input the layer receives through the weights from its neighbours
and ``T`` is the layer's *statistic* (the identity for Bernoulli units, ``x / sigma``
for Gaussian units).  Given ``a``, the units are independent of each other (or of
the other groups, for softmax units), so every unit type knows in closed form

* ``mean(a)``          the conditional mean E[x | a],
* ``sample(a)``        a draw from p(x | a),
* ``log_partition(a)`` log sum_x exp(-bias_energy(x) + T(x) . a), summed over the layer,
                       which is the layer's term of the free energy,
* ``bias_energy(x)``   the energy of x on its own (biases, base measure),
* ``log_prob(x, a)``   log p(x | a), from the three above,
* ``validate(x)``      raises ``ValueError`` for data outside the support or NaN.

Tempering (parallel tempering, annealed importance sampling) multiplies the bias
energy by an inverse temperature ``beta``; every method takes it, default 1.

A new unit type is one small subclass; see ``Spin`` in the tests for a {-1, +1} unit.
Discrete unit types also say how to enumerate their states (``site_size`` and
``site_states``): a *site* is one unit, or one group of mutually exclusive units.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

Beta = float | Tensor

__all__ = [
    "Units",
    "Bernoulli",
    "Gaussian",
    "Softmax",
    "Multinomial",
    "make_units",
    "register_units",
]


class Units(nn.Module):
    """Base class of a layer of ``n`` stochastic units with a learnable bias.

    Subclasses implement ``mean``, ``sample``, ``log_partition`` and ``validate``;
    the default ``bias_energy`` is linear, ``-x . b``.  ``support`` is a short
    human-readable description used in error messages.
    """

    name: str = "units"
    support: str = "real numbers"
    #: True when the statistic T(x) depends on parameters of this layer other than
    #: the bias (then their gradient needs the coupling term, see ``RBMModel``).
    coupled_parameters: bool = False
    #: True when the bias energy is ``-x . b`` (the fast gradient path applies).
    linear_bias: bool = True
    #: Number of units that form one site (enumerable block); 1 unless grouped.
    site_size: int = 1

    def __init__(self, n: int) -> None:
        super().__init__()
        n = int(n)
        if n < 1:
            raise ValueError(f"a layer needs at least one unit, got n={n}")
        self.n = n
        self.bias = nn.Parameter(torch.zeros(n))

    # -- the energy -------------------------------------------------------------
    def statistic(self, x: Tensor) -> Tensor:
        """T(x), the quantity that couples to the weights."""
        return x

    def bias_energy(self, x: Tensor, beta: Beta = 1.0) -> Tensor:
        """beta times the energy of the states alone, summed over units: shape x.shape[:-1]."""
        return -_scale(x @ self.bias, beta)

    def bias_energy_terms(self, x: Tensor) -> Tensor:
        """Per-unit terms of ``bias_energy`` (beta = 1), shape ``x.shape``."""
        return -x * self.bias

    def natural(self, a: Tensor, beta: Beta = 1.0) -> Tensor:
        """Natural parameter ``beta * b + a`` of linear-bias units."""
        if is_one(beta):
            return a + self.bias
        return a + beta * self.bias

    # -- conditionals ------------------------------------------------------------
    def mean(self, a: Tensor, beta: Beta = 1.0) -> Tensor:  # pragma: no cover - abstract
        """E[x | input a]."""
        raise NotImplementedError("abstract method: a unit type defines its conditional mean")

    def sample(self, a: Tensor, beta: Beta = 1.0, generator: torch.Generator | None = None,
               mean: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        """A draw from p(x | input a); ``mean`` may pass ``self.mean(a, beta)`` if already known."""
        raise NotImplementedError("abstract method: a unit type defines its sampler")

    def log_partition(self, a: Tensor, beta: Beta = 1.0) -> Tensor:  # pragma: no cover - abstract
        """log sum_x exp(-beta * bias_energy(x) + T(x) . a), summed over the layer."""
        raise NotImplementedError("abstract method: a unit type defines its log-partition")

    def log_prob(self, x: Tensor, a: Tensor) -> Tensor:
        """log p(x | input a) = -bias_energy(x) + T(x) . a - log_partition(a), summed over the layer
        (a density for continuous units): one value per row."""
        return -self.bias_energy(x) + (self.statistic(x) * a).sum(-1) - self.log_partition(a)

    # -- data --------------------------------------------------------------------
    def validate(self, x: Tensor, what: str = "X") -> None:
        """Raise ``ValueError`` if ``x`` is not a batch of states (or means) of this layer."""
        if x.ndim != 2 or x.shape[1] != self.n:
            raise ValueError(f"{what} must have shape (n_samples, {self.n}), got {tuple(x.shape)}")
        if not all_finite(x):
            raise ValueError(f"{what} contains NaN or infinite values")

    def init_bias(self, data_mean: Tensor) -> Tensor:
        """A good starting bias for data with the given per-unit mean (default: zeros)."""
        return torch.zeros_like(data_mean)

    def shift_bias(self, delta: Tensor) -> None:
        """Add ``delta`` to the natural parameter of every unit (used by centering)."""
        with torch.no_grad():
            self.bias.add_(delta)

    def bias_as_input(self, delta: Tensor) -> Tensor:
        """The input with the same effect on p(x | .) as adding ``delta`` to the bias (the inverse of
        ``shift_bias``); AIS uses it to sample from models whose biases are interpolated."""
        if not self.linear_bias:
            raise ValueError(f"{type(self).__name__} must define bias_as_input (its bias energy is not linear)")
        return delta

    def default_offset(self) -> Tensor:
        """A neutral centering offset for this layer (the mean under a zero input)."""
        with torch.no_grad():
            return self.statistic(self.mean(torch.zeros_like(self.bias) - self.bias)).detach().clone()

    # -- enumeration (discrete unit types) ----------------------------------------
    def site_states(self) -> Tensor:
        """All states of one site, shape (n_states, site_size); continuous types raise."""
        raise ValueError(f"{type(self).__name__} units are continuous and cannot be enumerated")

    def site_quadrature(self) -> tuple[Tensor, Tensor]:
        """States and log-weights to sum (or integrate) one site over, for every site:
        shapes (n_sites, S, site_size) and (n_sites, S).  Discrete units: all states, weight 1."""
        states = self.site_states().to(self.bias)
        n_sites = self.n // self.site_size
        return (states.expand(n_sites, *states.shape),
                torch.zeros(n_sites, states.shape[0], dtype=states.dtype, device=states.device))

    @property
    def enumerable(self) -> bool:
        try:
            self.site_states()
        except ValueError:
            return False
        return True

    def n_states(self) -> float:
        """Number of joint states of the layer (inf for continuous layers)."""
        if not self.enumerable:
            return math.inf
        try:
            return float(self.site_states().shape[0]) ** (self.n // self.site_size)
        except OverflowError:  # more than ~1.8e308 states (e.g. 1024 binary units): as good as infinite
            return math.inf

    def enumerate_states(self, chunk: int | None = None):
        """Yield all joint states of the layer, in chunks of rows (float64)."""
        states = self.site_states().to(torch.float64)
        n_sites = self.n // self.site_size
        s = states.shape[0]
        total = s ** n_sites
        chunk = chunk or min(total, 1 << 16)
        for start in range(0, total, chunk):
            idx = torch.arange(start, min(start + chunk, total), dtype=torch.int64)
            digits = []
            for _ in range(n_sites):
                digits.append(idx % s)
                idx = idx // s
            digits = torch.stack(digits[::-1], dim=1)  # (rows, n_sites)
            yield states[digits].reshape(-1, self.n)

    # -- gradients -----------------------------------------------------------------
    def bias_energy_grads(self, x: Tensor, weights: Tensor | None = None) -> list[Tensor]:
        """Gradient of the (weighted) batch mean of ``bias_energy(x)`` w.r.t. this layer's parameters."""
        if self.linear_bias and len(self._parameters) == 1 and not self._modules:  # only the bias
            return [-(x.mean(0) if weights is None else weights @ x)]
        params = list(self.parameters())
        with torch.enable_grad():
            e = self.bias_energy(x.detach())
            e = e.mean() if weights is None else (weights * e).sum()
            return list(torch.autograd.grad(e, params, allow_unused=True))

    def write_gradient(self, x_pos: Tensor, x_neg: Tensor, w_pos: Tensor | None = None,
                       w_neg: Tensor | None = None, momentum: float = 0.0) -> None:
        """``.grad`` <- momentum ``.grad`` + <d bias_energy/dtheta>_pos - <d bias_energy/dtheta>_neg for
        this layer's parameters (rows weighted by ``w_*`` when given, else averaged)."""
        b = self.bias
        if self.linear_bias and len(self._parameters) == 1 and not self._modules:
            if b.grad is None:
                b.grad = torch.zeros_like(b)
            # d/db of -x.b is -x: <x>_neg - <x>_pos as two fused mat-vec products
            w_n = x_neg.new_full((x_neg.shape[0],), 1.0 / x_neg.shape[0]) if w_neg is None else w_neg
            w_p = x_pos.new_full((x_pos.shape[0],), 1.0 / x_pos.shape[0]) if w_pos is None else w_pos
            b.grad.addmv_(x_neg.T, w_n, beta=momentum).addmv_(x_pos.T, w_p, alpha=-1.0)
            return
        gp = self.bias_energy_grads(x_pos, w_pos)
        gn = self.bias_energy_grads(x_neg, w_neg)
        for p, a, c in zip(self.parameters(), gp, gn):
            if a is None or c is None:
                g = torch.zeros_like(p) if a is None and c is None else (a if c is None else -c)
            else:
                g = a - c
            accumulate_grad(p, g, momentum)

    def extra_repr(self) -> str:
        return f"n={self.n}"

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (for save/load)."""
        return {"n": self.n}


def all_finite(x: Tensor) -> bool:
    """Whether every entry of x is finite; the sum (a reduction, no temporary the size of x) decides
    unless it overflows, and only then the entries are checked one by one."""
    if x.numel() == 0 or bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def accumulate_grad(p: Tensor, g: Tensor, momentum: float) -> None:
    """p.grad <- momentum p.grad + g (or g when there is no gradient yet)."""
    if p.grad is None:
        p.grad = g.detach().clone()
    elif momentum:
        p.grad.mul_(momentum).add_(g)
    else:
        p.grad.copy_(g)


def is_one(beta: Beta) -> bool:
    """True for the plain (untempered) case, so that it costs no multiplication."""
    return not isinstance(beta, Tensor) and beta == 1


def _scale(e: Tensor, beta: Beta) -> Tensor:
    """beta * e for a per-row energy e, with beta a number or a (rows, 1) tensor."""
    if isinstance(beta, Tensor):
        return beta.reshape(beta.shape[:-1]) * e if beta.ndim == e.ndim + 1 else beta * e
    return e if beta == 1 else float(beta) * e


def _rand_like(p: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)


class Bernoulli(Units):
    """Binary units, x in {0, 1}: p(x = 1 | a) = sigmoid(b + a)."""

    name = "bernoulli"
    support = "[0, 1] (states 0/1, or probabilities)"

    def mean(self, a: Tensor, beta: Beta = 1.0) -> Tensor:
        return torch.sigmoid(self.natural(a, beta))

    def sample(self, a, beta=1.0, generator=None, mean=None):
        p = self.mean(a, beta) if mean is None else mean
        u = _rand_like(p, generator)
        # 1 where u < p, written over u in one pass (no bool temporary, no second pass to convert it)
        return torch.lt(u, p.detach(), out=u)

    def log_partition(self, a, beta=1.0):
        return nn.functional.softplus(self.natural(a, beta)).sum(-1)

    def validate(self, x, what="X"):
        super().validate(x, what)
        if not x.numel():
            return
        lo, hi = torch.aminmax(x)  # two reductions, no temporary the size of x
        if lo < 0 or hi > 1:
            raise ValueError(f"{what} has values outside the support of Bernoulli units, {self.support}: "
                             f"min {lo.item():g}, max {hi.item():g}")

    def init_bias(self, data_mean):
        p = data_mean.clamp(1e-3, 1 - 1e-3)
        return torch.log(p) - torch.log1p(-p)

    def site_states(self):
        return torch.tensor([[0.0], [1.0]])


class Gaussian(Units):
    """Real-valued units with standard deviation sigma (per unit, fixed or learned).

        bias_energy(x) = sum_i (x_i - b_i)^2 / (2 sigma_i^2),   T(x) = x / sigma
        p(x | a) = Normal(b + sigma a, sigma^2)   (at beta: Normal(b + sigma a / beta, sigma^2 / beta))
    """

    name = "gaussian"
    support = "real numbers"
    linear_bias = False

    def __init__(self, n: int, sigma: float | Tensor = 1.0, learn_sigma: bool = False) -> None:
        super().__init__(n)
        sigma_t = torch.as_tensor(sigma, dtype=torch.get_default_dtype()).expand(n).clone()
        if not (sigma_t > 0).all():
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.learn_sigma = bool(learn_sigma)
        log_sigma = torch.log(sigma_t)
        if self.learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
            self.coupled_parameters = True
        else:
            self.register_buffer("log_sigma", log_sigma)

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    def statistic(self, x):
        return x / self.sigma

    def bias_energy(self, x, beta=1.0):
        return _scale((((x - self.bias) / self.sigma) ** 2).sum(-1) * 0.5, beta)

    def bias_energy_terms(self, x):
        return 0.5 * ((x - self.bias) / self.sigma) ** 2

    def _check_beta(self, beta):
        if not isinstance(beta, Tensor) and beta <= 0 or isinstance(beta, Tensor) and (beta <= 0).any():
            raise ValueError("Gaussian units need an inverse temperature beta > 0")

    def mean(self, a, beta=1.0):
        if is_one(beta):
            return self.bias + self.sigma * a
        self._check_beta(beta)
        return self.bias + self.sigma * a / beta

    def sample(self, a, beta=1.0, generator=None, mean=None):
        m = self.mean(a, beta) if mean is None else mean
        noise = torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
        std = self.sigma if is_one(beta) else self.sigma / torch.sqrt(torch.as_tensor(beta, dtype=m.dtype))
        return m + std * noise

    def log_partition(self, a, beta=1.0):
        # log integral exp(-beta (x - b)^2 / (2 s^2) + x a / s) dx
        #   = log(s sqrt(2 pi / beta)) + (m^2 - b^2) beta / (2 s^2),  m = b + s a / beta
        s = self.sigma
        if is_one(beta):
            return (torch.log(s) + 0.5 * math.log(2 * math.pi) + a * self.bias / s + 0.5 * a * a).sum(-1)
        self._check_beta(beta)
        beta_t = torch.as_tensor(beta, dtype=a.dtype, device=a.device)
        return (torch.log(s) + 0.5 * math.log(2 * math.pi) - 0.5 * torch.log(beta_t)
                + a * self.bias / s + 0.5 * a * a / beta_t).sum(-1)

    def init_bias(self, data_mean):
        return data_mean.clone()

    #: Gauss-Hermite nodes per unit for integrals over one unit (pseudo-likelihood)
    quadrature_nodes: int = 64

    def site_quadrature(self):
        """Gauss-Hermite nodes x = b + sigma sqrt(2) t with weights w e^{t^2} sigma sqrt(2), so that
        sum_k exp(log_w_k) f(x_k) approximates the integral of f over the real line for integrands
        with a Gaussian factor of this unit's width."""
        t, w = np.polynomial.hermite.hermgauss(self.quadrature_nodes)
        t = torch.as_tensor(t, dtype=self.bias.dtype, device=self.bias.device)
        w = torch.as_tensor(w, dtype=self.bias.dtype, device=self.bias.device)
        s = self.sigma.detach()[:, None]
        nodes = self.bias.detach()[:, None] + s * math.sqrt(2) * t
        log_w = torch.log(w) + t * t + torch.log(s * math.sqrt(2))
        return nodes[:, :, None], log_w

    def shift_bias(self, delta):
        with torch.no_grad():
            self.bias.add_(self.sigma * delta)

    def bias_as_input(self, delta):
        return delta / self.sigma

    def bias_energy_grads(self, x, weights=None):
        if self.learn_sigma:
            return super().bias_energy_grads(x, weights)
        # d/db of <(x - b)^2 / (2 sigma^2)> = -<x - b> / sigma^2
        if weights is None:
            return [-(x.mean(0) - self.bias) / self.sigma ** 2]
        return [-(weights @ x - weights.sum() * self.bias) / self.sigma ** 2]

    def default_offset(self):
        return (self.bias / self.sigma).detach().clone()

    def config(self):
        return {"n": self.n, "sigma": self.sigma.detach().cpu().tolist(), "learn_sigma": self.learn_sigma}


def one_hot_draw(p: Tensor, u: Tensor) -> Tensor:
    """One-hot draws from the categorical rows of ``p`` (n, K) by inverse CDF, with the uniforms
    ``u`` (n, 1): the caller chooses where the uniforms come from."""
    idx = (p.cumsum(-1) < u).sum(-1, keepdim=True).clamp_(max=p.shape[-1] - 1)
    return torch.zeros_like(p).scatter_(-1, idx, 1.0)


class Softmax(Units):
    """Groups of ``group_size`` mutually exclusive binary units (one-hot per group).

    p(x_g = e_k | a) = softmax_k(b_gk + a_gk); the layer's log-partition is the sum over
    groups of logsumexp.  ``group_size=None`` makes the whole layer one K-way unit.
    """

    name = "softmax"
    support = "one-hot groups (or probability vectors)"
    n_draws: int = 1

    def __init__(self, n: int, group_size: int | None = None) -> None:
        super().__init__(n)
        k = self.n if group_size is None else int(group_size)
        if k < 2 or self.n % k:
            raise ValueError(f"group_size must be >= 2 and divide the number of units {self.n}, got {group_size}")
        self.group_size = k
        self.site_size = k

    def _groups(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:-1], self.n // self.group_size, self.group_size)

    def mean(self, a, beta=1.0):
        return self.n_draws * torch.softmax(self._groups(self.natural(a, beta)), -1).reshape(a.shape)

    def sample(self, a, beta=1.0, generator=None, mean=None):
        p = self.mean(a, beta) if mean is None else mean
        p = self._groups(p / self.n_draws)
        flat = p.reshape(-1, self.group_size)
        if self.n_draws == 1:
            out = one_hot_draw(flat, torch.rand(flat.shape[0], 1, generator=generator, dtype=p.dtype,
                                                device=p.device))
        else:
            idx = torch.multinomial(flat, self.n_draws, replacement=True, generator=generator)
            out = torch.zeros_like(flat).scatter_add_(-1, idx, torch.ones_like(idx, dtype=p.dtype))
        return out.reshape(a.shape)

    def log_partition(self, a, beta=1.0):
        return self.n_draws * torch.logsumexp(self._groups(self.natural(a, beta)), -1).sum(-1)

    def validate(self, x, what="X"):
        super().validate(x, what)
        g = self._groups(x)
        tol = 1e-4 * self.n_draws
        if (x < 0).any() or (x > self.n_draws).any() or ((g.sum(-1) - self.n_draws).abs() > tol).any():
            bad = ((g.sum(-1) - self.n_draws).abs() > tol) | (g < 0).any(-1) | (g > self.n_draws).any(-1)
            row, grp = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{what} is outside the support of {type(self).__name__} units, {self.support}: "
                             f"row {row}, group {grp} (units {grp * self.group_size}-"
                             f"{(grp + 1) * self.group_size - 1}) is {g[row, grp].tolist()}")

    def init_bias(self, data_mean):
        p = self._groups(data_mean / self.n_draws).clamp_min(1e-3)
        return torch.log(p / p.sum(-1, keepdim=True)).reshape(data_mean.shape)

    def site_states(self):
        return torch.eye(self.group_size)

    def default_offset(self):
        return torch.full_like(self.bias, self.n_draws / self.group_size).detach()

    def config(self):
        return {"n": self.n, "group_size": self.group_size}


class Multinomial(Softmax):
    """A softmax unit drawn ``n_draws`` times: each group holds counts summing to ``n_draws``.

    The energy includes the multinomial coefficient as base measure,
    bias_energy(x) = -x . b - sum_g log(n! / prod_k x_gk!), so that the log-partition of a
    group is ``n_draws * logsumexp(b + a)`` (the replicated softmax of Salakhutdinov & Hinton).
    """

    name = "multinomial"
    support = "non-negative counts summing to n_draws in each group"
    linear_bias = True

    def __init__(self, n: int, group_size: int | None = None, n_draws: int = 1) -> None:
        super().__init__(n, group_size)
        if int(n_draws) < 1:
            raise ValueError(f"n_draws must be >= 1, got {n_draws}")
        self.n_draws = int(n_draws)

    def _log_coef(self, x: Tensor) -> Tensor:
        g = self._groups(x)
        return (math.lgamma(self.n_draws + 1) - torch.lgamma(g + 1).sum(-1)).sum(-1)

    def bias_energy(self, x, beta=1.0):
        # the base measure (the multinomial coefficient) is not tempered
        return _scale(-(x @ self.bias), beta) - self._log_coef(x)

    def bias_energy_terms(self, x):
        const = math.lgamma(self.n_draws + 1) / self.group_size
        return -x * self.bias + torch.lgamma(x + 1) - const

    def validate(self, x, what="X"):
        super().validate(x, what)

    def site_states(self):
        k, n = self.group_size, self.n_draws
        rows = [c for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n]
        return torch.tensor(rows, dtype=torch.get_default_dtype())

    def config(self):
        return {"n": self.n, "group_size": self.group_size, "n_draws": self.n_draws}


_REGISTRY: dict[str, type[Units]] = {}


def register_units(cls: type[Units]) -> type[Units]:
    """Make a unit type available by its ``name`` (``visible="name"`` in estimators, and in model files)."""
    _REGISTRY[cls.name.lower()] = cls
    return cls


for _cls in (Bernoulli, Gaussian, Softmax, Multinomial):
    register_units(_cls)


def make_units(spec: str | Units | type[Units] | dict, n: int) -> Units:
    """Build a layer of ``n`` units from a name, a class, a {"name": ..., **kwargs} dict or a template instance."""
    if isinstance(spec, Units):
        if spec.n != n:
            raise ValueError(f"the {type(spec).__name__} layer given has {spec.n} units, the data needs {n}")
        return spec
    if isinstance(spec, type) and issubclass(spec, Units):
        return spec(n)
    kwargs: dict[str, Any] = {}
    if isinstance(spec, dict):
        kwargs = dict(spec)
        spec = kwargs.pop("name", None)
        kwargs.pop("n", None)
    if not isinstance(spec, str) or spec.lower() not in _REGISTRY:
        raise ValueError(f"unknown unit type {spec!r}; known: {sorted(_REGISTRY)} "
                         "(or pass a Units subclass or instance)")
    return _REGISTRY[spec.lower()](n, **kwargs)


def units_config(units: Units) -> dict[str, Any]:
    """{"name": ..., **constructor arguments}: the inverse of ``make_units`` for save/load."""
    return {"name": units.name, **units.config()}
