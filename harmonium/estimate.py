"""Model evaluation: exact partition functions, likelihoods, pseudo-likelihood, reconstruction.

Every function accepts a fitted estimator (anything with a ``model_`` attribute) or the
torch model itself, and data as a tensor of the model's dtype and device.
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import distributed
from .dbm import DBMModel
from .rbm import RBMModel

__all__ = [
    "ais",
    "dbn_lower_bound",
    "reverse_ais",
    "mixture_importance_sampling",
    "ImportanceResult",
    "elbo",
    "AISResult",
    "default_betas",
    "exact_log_partition",
    "log_partition",
    "log_likelihood",
    "exact_log_likelihood",
    "pseudo_log_likelihood",
    "reconstruction_error",
    "free_energy_gap",
    "MAX_EXACT_STATES",
]

#: Largest number of joint states ``exact_log_partition`` will enumerate.
MAX_EXACT_STATES = 2 ** 24


def as_model(model, kinds: tuple = (RBMModel,)):
    """The torch model behind an estimator (or the model itself)."""
    m = getattr(model, "model_", model)
    if not isinstance(m, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"expected a fitted estimator or a {names}, got {type(model).__name__}")
    return m


def _joint_states(layers: list, chunk: int = 1 << 14):
    """All joint states of several layers, as lists of tensors (one per layer), in chunks."""
    per = [torch.cat(list(u.enumerate_states())) for u in layers]
    sizes = [len(p) for p in per]
    total = math.prod(sizes)
    for start in range(0, total, chunk):
        idx = torch.arange(start, min(start + chunk, total))
        out = []
        for p, s in zip(reversed(per), reversed(sizes)):
            out.append(p[idx % s])
            idx = idx // s
        yield out[::-1]


def dbm_enumeration_cost(model) -> tuple[int, float]:
    """The parity (0: even layers, visible included; 1: odd layers) whose joint states exact
    enumeration would sum over, and their number; the other layers are summed out in closed form."""
    m = as_model(model, (DBMModel,))
    best = (0, math.inf)
    for parity in (0, 1):
        cost = math.prod(m.layers[l].n_states() for l in range(parity, m.n_layers, 2))
        if cost < best[1]:
            best = (parity, cost)
    return best


def _like(x: Tensor, model) -> Tensor:
    p = next(model.parameters())
    return torch.as_tensor(x).to(dtype=p.dtype, device=p.device)


def _rows(x, model, what: str = "X") -> Tensor:
    """``x`` as the model's dtype and device, checked as a batch of the visible layer's states or means."""
    x = _like(x, model)
    (model.visible if isinstance(model, RBMModel) else model.layers[0]).validate(x, what)
    return x


def _states(samples, model) -> list[Tensor]:
    """Samples of the model, checked: visible rows for an RBM (a list's first entry will do), states
    of every layer for a DBM."""
    if isinstance(model, RBMModel):
        return [_rows(samples[0] if isinstance(samples, (list, tuple)) else samples, model, "samples")]
    xs = [_like(x, model) for x in samples]
    if len(xs) != model.n_layers:
        raise ValueError(f"need states of all {model.n_layers} layers of the DBM, got {len(xs)}")
    for l, (u, x) in enumerate(zip(model.layers, xs)):
        u.validate(x, f"samples[{l}]")
    return xs


def log_partition(model, log_z: float | AISResult | None = None, **ais_options) -> float | AISResult:
    """``log_z`` when given; else log Z exactly when the model can be enumerated, else an AIS
    estimate (``ais_options`` go to ``ais``)."""
    if log_z is not None:
        return log_z
    try:
        return exact_log_partition(model)
    except ValueError:
        return ais(model, **ais_options).log_z


def enumeration_cost(model) -> tuple[str, float]:
    """Which layer exact enumeration would sum over, and how many states that is."""
    m = as_model(model)
    nv, nh = m.visible.n_states(), m.hidden.n_states()
    return ("hidden", nh) if nh <= nv else ("visible", nv)


@torch.no_grad()
def exact_log_partition(model, *, max_states: int = MAX_EXACT_STATES) -> float:
    """log Z computed exactly in float64 by enumerating the layer with fewer states.

        log Z = logsumexp_h -F(h)   with the visibles summed out analytically, or
        log Z = logsumexp_v -F(v)   with the hiddens summed out.

    Raises ``ValueError`` when neither layer can be enumerated or the smaller one has more
    than ``max_states`` states (use AIS then).
    """
    mm = as_model(model, (RBMModel, DBMModel))
    if isinstance(mm, DBMModel):
        return _dbm_exact_log_partition(mm, max_states)
    m = copy.deepcopy(mm).to(torch.float64)
    layer, n = enumeration_cost(m)
    if math.isinf(n):
        raise ValueError("exact log Z needs at least one discrete layer; both layers are continuous")
    if n > max_states:
        raise ValueError(f"exact log Z would enumerate {n:.3g} {layer} states (limit {max_states}); use AIS")
    units = m.hidden if layer == "hidden" else m.visible
    free = m.free_energy_hidden if layer == "hidden" else m.free_energy
    parts = [torch.logsumexp(-free(s.to(m.W.device)), 0) for s in units.enumerate_states()]
    return float(torch.logsumexp(torch.stack(parts), 0))


def _dbm_exact_log_partition(model: DBMModel, max_states: int) -> float:
    m = copy.deepcopy(model).to(torch.float64)
    parity, n = dbm_enumeration_cost(m)
    if math.isinf(n):
        raise ValueError("exact log Z of this DBM needs the odd or the even layers to be discrete")
    if n > max_states:
        raise ValueError(f"exact log Z would enumerate {n:.3g} joint states (limit {max_states}); use AIS")
    layers = [m.layers[l] for l in range(parity, m.n_layers, 2)]
    parts = []
    for states in _joint_states(layers):
        x: list = [None] * m.n_layers
        for l, st in zip(range(parity, m.n_layers, 2), states):
            x[l] = st.to(m.W[0].device)
        parts.append(torch.logsumexp(-m.free_energy_even(x, parity), 0))
    return float(torch.logsumexp(torch.stack(parts), 0))


@torch.no_grad()
def dbm_unnormalized_log_prob(model, X: Tensor, *, max_states: int = MAX_EXACT_STATES) -> Tensor:
    """log sum_h exp(-E(v, h)) for each row v of X, exactly: the even hidden layers enumerated, the odd
    ones summed out in closed form (float64)."""
    m = copy.deepcopy(as_model(model, (DBMModel,))).to(torch.float64)
    X = _rows(X, m)
    even = [m.layers[l] for l in range(2, m.n_layers, 2)]
    if not even:
        return -m.free_energy_even([X] + [None] * (m.n_layers - 1), 0)
    n = math.prod(u.n_states() for u in even)
    if n > max_states:
        raise ValueError(f"exact log p(v) would enumerate {n:.3g} states per row (limit {max_states})")
    parts = []
    for states in _joint_states(even):
        S = states[0].shape[0]
        x: list = [X.repeat_interleave(S, 0)] + [None] * (m.n_layers - 1)
        for l, st in zip(range(2, m.n_layers, 2), states):
            x[l] = st.to(X).repeat(X.shape[0], 1)
        parts.append(torch.logsumexp((-m.free_energy_even(x, 0)).view(X.shape[0], S), 1))
    return torch.logsumexp(torch.stack(parts, 1), 1)


@torch.no_grad()
def exact_log_likelihood(model, X: Tensor, log_z: float | None = None) -> Tensor:
    """log p(v) = -F(v) - log Z for each row, in float64."""
    if isinstance(getattr(model, "model_", model), DBMModel):
        if log_z is None:
            log_z = exact_log_partition(model)
        return dbm_unnormalized_log_prob(model, X) - log_z
    m = copy.deepcopy(as_model(model)).to(torch.float64)
    if log_z is None:
        log_z = exact_log_partition(m)
    return -m.free_energy(_rows(X, m)) - log_z


@torch.no_grad()
def pseudo_log_likelihood(model, X: Tensor, *, chunk_elements: int = 1 << 24) -> Tensor:
    """Exact pseudo-log-likelihood sum_s log p(x_s | x_rest) of each row, over all sites.

    A site is one unit, or one group of a softmax/multinomial layer.  Each conditional is
    normalised over every state of its site:

        log p(x_s | x_rest) = -F(x) - log sum_{x'_s} w(x'_s) exp(-F(x'_s, x_rest))

    with the site's states and weights from ``Units.site_quadrature`` (all states with weight 1
    for discrete units, Gauss-Hermite nodes for Gaussian units).  This is the full sum, not the
    random single flip scaled by the number of features that scikit-learn's BernoulliRBM returns.
    The hidden input of each variant is a(x) + (T(x'_s) - T(x_s)) W_s: no matrix product per site.
    """
    m = as_model(model)
    vis = m.visible
    X = _rows(X, m)
    n, d = X.shape
    k = vis.site_size
    n_sites = d // k
    states, log_w = vis.site_quadrature()  # (n_sites, S, k), (n_sites, S)
    states, log_w = states.to(X), log_w.to(X)
    S = states.shape[1]
    flat = states.transpose(0, 1).reshape(S, d)  # row s: every site in its s-th state
    e_states = vis.bias_energy_terms(flat).view(S, n_sites, k).sum(-1).T  # (n_sites, S)
    t_states = vis.statistic(flat).view(S, n_sites, k).transpose(0, 1)  # (n_sites, S, k)
    Wg = m.W.view(n_sites, k, -1)
    n_hid = m.n_hidden
    per_site = S * n_hid
    site_chunk = max(1, min(n_sites, chunk_elements // per_site))
    rows = max(1, chunk_elements // (per_site * site_chunk))
    out = torch.empty(n, dtype=X.dtype, device=X.device)
    for r0 in range(0, n, rows):
        x = X[r0:r0 + rows]
        a = m.hidden_input(x)  # (b, h)
        f_x = m.free_energy_from_input(x, a)  # (b,)
        e_x = vis.bias_energy_terms(x).view(-1, n_sites, k).sum(-1)  # (b, n_sites)
        t_x = vis.statistic(x).view(-1, n_sites, k)
        total = torch.zeros(x.shape[0], dtype=X.dtype, device=X.device)
        for s0 in range(0, n_sites, site_chunk):
            sl = slice(s0, s0 + site_chunk)
            dt = t_states[None, sl] - t_x[:, sl, None, :]  # (b, c, S, k)
            da = torch.einsum("bcsk,ckh->bcsh", dt, Wg[sl])
            # F of each variant = F(x) + bias-energy change + offset term - log-partition change
            f = f_x[:, None, None] + (e_states[None, sl] - e_x[:, sl, None])
            if m.hidden_offset is not None:
                f = f + da @ m.hidden_offset
            f = f - m.hidden.log_partition(a[:, None, None, :] + da) + m.hidden.log_partition(a)[:, None, None]
            log_norm = torch.logsumexp(-f + log_w[None, sl], -1)  # (b, c)
            total += (-f_x[:, None] - log_norm).sum(-1)
        out[r0:r0 + rows] = total
    return out


@torch.no_grad()
def reconstruction_error(model, X: Tensor) -> float:
    """Mean squared error between X and E[v | E[h | X]], averaged over rows and units."""
    m = as_model(model)
    X = _rows(X, m)
    r = m.visible_mean(m.hidden_mean(X))
    return float(((X - r) ** 2).mean())


@torch.no_grad()
def free_energy_gap(model, X_train: Tensor, X_val: Tensor) -> float:
    """mean F(X_val) - mean F(X_train): grows when the model overfits (Hinton 2010, sec. 6)."""
    m = as_model(model)
    return float(m.free_energy(_rows(X_val, m, "X_val")).mean() - m.free_energy(_rows(X_train, m, "X_train")).mean())


def default_betas(n: int | None = None, dtype=torch.float64) -> Tensor:
    """Salakhutdinov & Murray (2008): 500 betas evenly on [0, 0.5), 4,000 on [0.5, 0.9) and 10,000 on
    [0.9, 1.0] (14,500 in all).  With ``n``, the same three segments scaled to n betas in all."""
    counts = (500, 4000, 10000)
    if n is not None:
        if n < 3:
            raise ValueError(f"need at least 3 intermediate distributions, got {n}")
        counts = tuple(max(1, round(n * c / 14500)) for c in counts)
    parts = [torch.linspace(0.0, 0.5, counts[0] + 1, dtype=dtype)[:-1],
             torch.linspace(0.5, 0.9, counts[1] + 1, dtype=dtype)[:-1],
             torch.linspace(0.9, 1.0, counts[2], dtype=dtype)]
    return torch.cat(parts)


@dataclass
class AISResult:
    """An AIS estimate of log Z.

    ``log_z``           log of the mean importance weight times Z_0;
    ``log_z_interval``  (log(Z - 3 sigma), log(Z + 3 sigma)), sigma the standard error of the
                        weights' mean (the lower end is -inf when Z - 3 sigma <= 0);
    ``log_weights``     per-run log-weights (float64);
    ``ess``             effective sample size (sum w)^2 / sum w^2.
    """

    log_z: float
    log_z_interval: tuple[float, float]
    log_weights: Tensor
    ess: float
    log_z_base: float
    n_betas: int

    def __float__(self) -> float:
        return self.log_z

    @classmethod
    def pool(cls, results: "list[AISResult]") -> "AISResult":
        """One estimate from several independent AIS runs of the same path (the same base model and
        betas): the mean of all their importance weights, as one run with all their chains."""
        if not results:
            raise ValueError("pool needs at least one AIS result")
        first = results[0]
        for r in results[1:]:
            if r.log_z_base != first.log_z_base or r.n_betas != first.n_betas:
                raise ValueError("pool: the results anneal different paths (base model or number of betas differ)")
        log_w = torch.cat([r.log_weights.double().cpu() for r in results])
        log_z, interval, ess = _log_z_summary(log_w, first.log_z_base)
        return cls(log_z, interval, log_w, ess, first.log_z_base, first.n_betas)


def _log_z_summary(log_w: Tensor, log_z0: float) -> tuple[float, tuple[float, float], float]:
    m = log_w.numel()
    mx = log_w.max()
    w = torch.exp(log_w - mx)  # scaled weights, max 1
    mean = w.mean()
    se = w.std(unbiased=True) / math.sqrt(m) if m > 1 else torch.tensor(0.0, dtype=w.dtype)
    log_z = float(torch.log(mean) + mx) + log_z0
    hi = float(torch.log(mean + 3 * se) + mx) + log_z0
    lo_val = mean - 3 * se
    lo = float(torch.log(lo_val) + mx) + log_z0 if lo_val > 0 else -math.inf
    ess = float(w.sum() ** 2 / (w * w).sum())
    return log_z, (lo, hi), ess


class _RBMPath:
    """The annealing path of an RBM over its visible states, the hidden units summed out:

        log p*_beta(v) = -(1 - beta) E_A(v) - beta bias_energy(v) - beta lambda.a(v)
                         + hidden.log_partition(beta a(v), beta)

    E_A is the bias energy of the base model (the same visible units with base-rate or zero
    biases, no coupling).  A transition is a Gibbs sweep v -> h -> v at beta, with the visible
    biases interpolated between the base model's and the model's."""

    def __init__(self, m: RBMModel, base, sample_h: bool) -> None:
        self.m, self.base, self.sample_h = m, base, sample_h
        self.delta = m.visible.bias_as_input(base.bias - m.visible.bias)

    def log_z0(self, like: Tensor) -> float:
        zeros_h = like.new_zeros(1, self.m.n_hidden)
        return float(self.base.log_partition(like.new_zeros(1, self.m.n_visible))[0]) + float(
            self.m.hidden.log_partition(zeros_h, 0.0)[0])

    def initial(self, n: int, like: Tensor, g) -> dict:
        return self._state(self.base.sample(like.new_zeros(n, self.m.n_visible), 1.0, g))

    def _state(self, v: Tensor) -> dict:
        return {"v": v, "eb": self.base.bias_energy(v), "em": self.m.visible.bias_energy(v),
                "a": self.m.hidden_input(v)}

    def from_samples(self, samples: list[Tensor]) -> dict:
        return self._state(samples[0])

    def log_p(self, s: dict, beta: float) -> Tensor:
        m = self.m
        lp = -(1 - beta) * s["eb"] - beta * s["em"] + m.hidden.log_partition(beta * s["a"], beta)
        if m.hidden_offset is not None:
            lp = lp - beta * (s["a"] @ m.hidden_offset)
        return lp

    def transition(self, s: dict, beta: float, g) -> dict:
        m = self.m
        ab = s["a"] * beta
        h = m.hidden.sample(ab, beta, g) if self.sample_h else m.hidden.mean(ab, beta)
        c = m.visible_input(h, beta) + (1 - beta) * self.delta
        return self._state(m.visible.sample(c, 1.0, g))


class _DBMPath:
    """The annealing path of a DBM over the states of the layers of one parity, the layers of the
    other parity summed out in closed form given them.  With ``parity`` 1 the state is the odd
    layers (for two hidden layers: h1 alone, v and h2 summed out, as Salakhutdinov & Hinton 2009).

    Every layer l has a base model A_l, the same units with their own biases (fitted to the data's
    marginals of that layer, or zero: uniform), and the path interpolates the energies,

        p*_beta(x) = exp(-(1 - beta) sum_l E_A,l(x_l) - beta E(x)),

    so a layer's conditional at beta has the input beta a_l + (1 - beta) delta_l, delta_l the base's
    bias relative to the model's as an input.  Summing out a layer gives its log-partition at that input
    plus a constant, -(1 - beta) (E_A,l - E_l + delta_l . T_l), the same for every state (linear bias
    energies, or Gaussian ones of one sigma).  A transition samples the summed layers given the kept
    ones, then the kept ones given those."""

    def __init__(self, m: DBMModel, bases: list, sample_h: bool, parity: int) -> None:
        self.m, self.bases, self.sample_h, self.parity = m, bases, sample_h, parity
        self.deltas, self.consts = [], []
        for u, b in zip(m.layers, bases):
            d = u.bias_as_input(b.bias - u.bias)
            z = d.new_zeros(1, u.n)
            self.deltas.append(d)
            self.consts.append(float((b.bias_energy(z) - u.bias_energy(z) + u.statistic(z) @ d)[0]))
        self.kept = [l for l in range(m.n_layers) if l % 2 == parity]
        self.summed = [l for l in range(m.n_layers) if l % 2 != parity]

    def log_z0(self, like: Tensor) -> float:
        return sum(float(b.log_partition(like.new_zeros(1, b.n))[0]) for b in self.bases)

    def _input(self, l: int, a: Tensor, beta: float) -> Tensor:
        return a * beta + (1 - beta) * self.deltas[l]

    def _sample_layer(self, l: int, a: Tensor, beta: float, g, mean_only: bool = False) -> Tensor:
        """A draw of layer l (or its mean) at beta given its input a from the layers around it."""
        u, a = self.m.layers[l], self._input(l, a, beta)
        return u.mean(a) if mean_only else u.sample(a, 1.0, g)

    def initial(self, n: int, like: Tensor, g) -> dict:
        x: list = [None] * self.m.n_layers
        for l in self.kept:
            b = self.bases[l]
            x[l] = b.sample(like.new_zeros(n, b.n), 1.0, g)
        return self._state(x)

    def from_samples(self, samples: list[Tensor]) -> dict:
        return self._state([x if l % 2 == self.parity else None for l, x in enumerate(samples)])

    def _state(self, x: list) -> dict:
        m = self.m
        return {"x": x, "a": {l: m.layer_input(x, l) for l in self.summed},
                "e": {l: (self.bases[l].bias_energy(x[l]), m.layers[l].bias_energy(x[l])) for l in self.kept}}

    def log_p(self, s: dict, beta: float) -> Tensor:
        lp = 0.0
        for eb, em in s["e"].values():
            lp = lp - (1 - beta) * eb - beta * em
        for l, a in s["a"].items():
            lp = lp + self.m.layers[l].log_partition(self._input(l, a, beta)) - (1 - beta) * self.consts[l]
        return lp

    def transition(self, s: dict, beta: float, g) -> dict:
        x = list(s["x"])
        for l in self.summed:
            x[l] = self._sample_layer(l, s["a"][l], beta, g, mean_only=not self.sample_h)
        for l in self.kept:
            x[l] = self._sample_layer(l, self.m.layer_input(x, l), beta, g)
        for l in self.summed:
            x[l] = None
        return self._state(x)


def _path(model, base_rate, sample_h: bool, parity: int = 0):
    m = as_model(model, (RBMModel, DBMModel))
    layers = [m.visible] if isinstance(m, RBMModel) else list(m.layers)
    bases = [copy.deepcopy(u) for u in layers]
    with torch.no_grad():
        for b in bases:
            b.bias.zero_()
        if base_rate is not None:
            x = _like(base_rate, m)
            layers[0].validate(x, "base_rate")
            means = [x.mean(0)]
            if isinstance(m, DBMModel):  # the hidden layers' marginals under the data: mean-field posteriors
                sums = [torch.zeros(u.n, dtype=x.dtype, device=x.device) for u in layers[1:]]
                for chunk in x.split(8192):
                    for total, q in zip(sums, m.mean_field(chunk)[0][1:]):
                        total += q.sum(0)
                means += [total / len(x) for total in sums]
            for u, b, mu in zip(layers, bases, means):
                b.bias.copy_(u.init_bias(mu))
    if isinstance(m, RBMModel):
        return m, _RBMPath(m, bases[0], sample_h)
    _check_parity(parity)
    return m, _DBMPath(m, bases, sample_h, parity)


def _check_parity(parity) -> None:
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 (the even layers, the visible one included) or 1 (the odd layers), "
                         f"got {parity!r}")


def _betas(betas) -> Tensor:
    if betas is None or isinstance(betas, int):
        betas = default_betas(betas)
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or len(betas) < 2 or not torch.isfinite(betas).all() or betas[0] != 0 or betas[-1] != 1 \
            or (betas.diff() < 0).any():
        raise ValueError("betas must increase from 0 to 1")
    return betas


def _generator(device, random_state, group: distributed.Group | None = None) -> torch.Generator:
    g = torch.Generator(device=device)
    seed = random_state if random_state is not None else int(np.random.SeedSequence().entropy % 2 ** 62)
    if group is not None and random_state is not None:  # a different stream on every rank
        seed = (int(seed) + 1_000_003 * group.rank) % 2 ** 63
    g.manual_seed(int(seed))
    return g


def _split_runs(rows: list[Tensor], group: distributed.Group | None) -> list[Tensor]:
    """This rank's share of the runs (all of them for one process)."""
    return rows if group is None else [distributed.split_rows(x, group) for x in rows]


def _all_runs(log_w: Tensor, group: distributed.Group | None) -> Tensor:
    """Every rank's log-weights, in rank order (the estimate is then the same on every rank)."""
    return log_w if group is None else distributed.gather_rows(log_w)


def _anneal(path, state: dict, betas: list[float], g, verbose: bool, desc: str) -> Tensor:
    """Sum over k of log p*_{b_k}(x_k) - log p*_{b_(k-1)}(x_k), with x_k the state after the
    transition at b_(k-1) (AIS forward when betas increase, reverse AIS when they decrease)."""
    log_w = None
    steps = range(1, len(betas))
    if verbose:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=desc, unit="beta", mininterval=1.0)
    prev = path.log_p(state, betas[0])
    for i in steps:
        cur = path.log_p(state, betas[i])
        d = (cur - prev).to(torch.float64)
        log_w = d if log_w is None else log_w + d
        if i == len(betas) - 1:
            break
        state = path.transition(state, betas[i], g)
        prev = path.log_p(state, betas[i])
    return log_w


@torch.no_grad()
def ais(model, *, n_runs: int = 100, betas: Tensor | int | None = None, base_rate: Tensor | None = None,
        random_state: int | None = None, sample_h: bool = True, parity: int = 0,
        verbose: bool = False) -> AISResult:
    """Annealed importance sampling estimate of log Z for an RBM of any unit types or a DBM of any depth.

    The annealing path runs from a base model at beta = 0 to the model at beta = 1.  The base model
    has the model's unit types with biases fitted to ``base_rate`` data (each unit type's
    ``init_bias`` of the data means; for a DBM's hidden layers, of their mean-field marginals under
    the data), or zero biases (uniform for discrete units) without it; an RBM's hidden layer is
    always uniform.  (Uniform hidden layers in a DBM favour, at small beta, states with the first
    hidden layer off and the second free; runs that settle there miss the rest of the mass.)  For an
    RBM the hidden layer is summed out analytically; for a DBM the odd layers (``parity=0``: the runs
    move the even layers, the visible one included) or the even ones (``parity=1``: for two hidden
    layers the runs move h1 alone, v and h2 summed out, the paper's choice).  See ``_RBMPath`` and
    ``_DBMPath``.  The two parities give the same estimate in expectation; neither was clearly better
    on the MNIST DBMs measured (docs/RESULTS.md, section 3).  The ``n_runs`` runs advance together as
    one batch; log-weights are accumulated in float64.  ``betas``: a tensor of increasing values from
    0 to 1, a number of betas for the standard three-segment schedule, or None for the standard 14,500.

    Under a ``torch.distributed`` process group (every rank calls this) the runs are split
    across ranks and the estimate is made from all of them on every rank.
    """
    if isinstance(n_runs, bool) or not isinstance(n_runs, (int, np.integer)) or n_runs < 1:
        raise ValueError(f"n_runs must be a positive integer, got {n_runs!r}")
    bl = _betas(betas).tolist()
    m, path = _path(model, base_rate, sample_h, parity)
    like = next(m.parameters())
    group = distributed.current()
    if group is not None and n_runs < group.world_size:
        raise ValueError(f"n_runs={n_runs} AIS runs cannot be split over {group.world_size} ranks")
    lo, hi = (0, n_runs) if group is None else distributed.shard_bounds(n_runs, group)
    g = _generator(like.device, random_state, group)
    log_w = _anneal(path, path.initial(hi - lo, like, g), bl, g, verbose and (group is None or group.is_main),
                    "AIS")
    log_w = _all_runs(log_w, group)
    log_z0 = path.log_z0(like)
    log_z, interval, ess = _log_z_summary(log_w, log_z0)
    return AISResult(log_z, interval, log_w.cpu(), ess, log_z0, len(bl))


@torch.no_grad()
def reverse_ais(model, samples, *, betas: Tensor | int | None = None, base_rate: Tensor | None = None,
                random_state: int | None = None, sample_h: bool = True, parity: int = 0,
                verbose: bool = False) -> AISResult:
    """Reverse AIS: the same path run from samples of the model (beta = 1) back to the base model.

    With w = prod_k p*_{b_(k-1)}(x_k) / p*_{b_k}(x_k), E[w] = Z_0 / Z when the starting samples are
    exact, so log Z_0 - log mean(w) is a stochastic *upper* bound on log Z, where forward AIS gives
    a stochastic lower bound (the bidirectional sandwich of Grosse, Ghahramani & Adams 2015, the
    idea behind RAISE, Burda, Grosse & Salakhutdinov 2015).  Log-likelihoods computed with it are
    conservative.  ``samples``: visible rows (RBM; the hidden units are summed out) or, for a DBM,
    a list of states of every layer (e.g. the persistent particles, or long Gibbs chains). With
    approximate samples the bound is approximate: a gap between the two estimates that is large
    compared with their intervals says that neither can be trusted.  ``parity``: which layers of a
    DBM the runs move, as for ``ais`` (the samples' states of the other layers are not used).  Under
    a process group the samples (the same on every rank) are split across ranks, as ``ais`` splits
    its runs.
    """
    bl = _betas(betas).flip(0).tolist()
    m, path = _path(model, base_rate, sample_h, parity)
    like = next(m.parameters())
    samples = _states(samples, m)
    if len({x.shape[0] for x in samples}) > 1:
        raise ValueError(f"the layers' samples have different numbers of rows: {[x.shape[0] for x in samples]}")
    if samples[0].shape[0] < 1:
        raise ValueError("reverse AIS needs at least one sample")
    group = distributed.current()
    samples = _split_runs(samples, group)
    g = _generator(like.device, random_state, group)
    log_w = _anneal(path, path.from_samples(samples), bl, g, verbose and (group is None or group.is_main),
                    "reverse AIS")
    log_w = _all_runs(log_w, group)
    log_z0 = path.log_z0(like)
    # log Z = log Z_0 - log mean w: report it through the same summary on -log w
    mx = log_w.max()
    w = torch.exp(log_w - mx)
    mean = w.mean()
    se = w.std(unbiased=True) / math.sqrt(w.numel()) if w.numel() > 1 else torch.zeros((), dtype=w.dtype)
    log_z = log_z0 - float(torch.log(mean) + mx)
    lo = log_z0 - float(torch.log(mean + 3 * se) + mx)
    hi = log_z0 - float(torch.log(mean - 3 * se) + mx) if mean - 3 * se > 0 else math.inf
    ess = float(w.sum() ** 2 / (w * w).sum())
    return AISResult(log_z, (lo, hi), log_w.cpu(), ess, log_z0, len(bl))


@dataclass
class ImportanceResult:
    """An importance-sampling estimate of log Z (see ``mixture_importance_sampling``).

    ``log_z``           log of the mean importance weight: a stochastic lower bound, E[log Z_hat] <= log Z;
    ``log_z_interval``  (log(Z - 3 sigma), log(Z + 3 sigma)) from the weights' standard error;
    ``log_weights``     per-draw log-weights log p*(x) - log q(x) (float64);
    ``ess``             effective sample size (sum w)^2 / sum w^2.
    """

    log_z: float
    log_z_interval: tuple[float, float]
    log_weights: Tensor
    ess: float

    def __float__(self) -> float:
        return self.log_z

    def lower_bound(self, delta: float = 1e-3) -> float:
        """log Z_hat - log(1 / delta): below log Z with probability at least 1 - delta (Markov's
        inequality on the unbiased estimate Z_hat, whatever the proposal)."""
        return self.log_z - math.log(1.0 / delta)


def _conditional_log_prob(u, x: Tensor, a: Tensor, log_part: Tensor) -> Tensor:
    """log p(x_m | input a_n) for every draw m and component n: -E(x_m) + T(x_m) . a_n - A(a_n), with
    ``log_part`` = A(a) (the bias inside E and A)."""
    return u.statistic(x) @ a.T - u.bias_energy(x)[:, None] - log_part


@torch.no_grad()
def mixture_importance_sampling(model, samples, *, n_draws: int = 20000, parity: int = 1,
                                random_state: int | None = None) -> ImportanceResult:
    """log Z by importance sampling from a proposal built on (approximate) samples of the model.

    The proposal is the mixture q(x) = 1/N sum_n p(x | s_n) of the conditionals of the RBM's hidden
    layer given each sample's visible row, or of a DBM's layers of ``parity`` given each sample's
    other layers (1: for two hidden layers, h1 given v and h2); the target p*(x) has the other
    layers summed out in closed form.  Z_hat = mean p*(x)/q(x) is unbiased for any proposal, so
    log Z_hat is a stochastic lower bound on log Z that needs no annealing path and no equilibrium:
    ``lower_bound(delta)`` holds with probability 1 - delta.  The bound is tight only when the
    samples cover the model's mass; a bound above a forward-AIS estimate shows that AIS missed mass.
    ``samples``: visible rows for an RBM, states of every layer for a DBM (e.g. persistent particles).
    """
    m = as_model(model, (RBMModel, DBMModel))
    m = copy.deepcopy(m).to(torch.float64)
    g = _generator(m.W[0].device if isinstance(m, DBMModel) else m.W.device, random_state)
    if isinstance(m, RBMModel):
        kept = {"h": (m.hidden, m.hidden_input(_states(samples, m)[0]))}
    else:
        _check_parity(parity)
        xs = _states(samples, m)
        kept = {l: (m.layers[l], m.layer_input(xs, l)) for l in range(parity, m.n_layers, 2)}
    n = next(iter(kept.values()))[1].shape[0]
    if n < 1 or n_draws < 2:
        raise ValueError(f"need at least one sample and two draws, got {n} samples and n_draws={n_draws}")
    comp = torch.randint(n, (n_draws,), generator=g, device=g.device)
    draws = {key: u.sample(a[comp], 1.0, g) for key, (u, a) in kept.items()}
    log_parts = {key: u.log_partition(a) for key, (u, a) in kept.items()}
    log_q = torch.empty(n_draws, dtype=torch.float64, device=comp.device)
    chunk = max(1, (1 << 22) // n)  # draws x components per block: at most 4M entries
    for s in range(0, n_draws, chunk):
        lq = sum(_conditional_log_prob(u, draws[key][s:s + chunk], a, log_parts[key])
                 for key, (u, a) in kept.items())
        log_q[s:s + chunk] = torch.logsumexp(lq, 1)
    log_q -= math.log(n)
    if isinstance(m, RBMModel):
        log_p = -m.free_energy_hidden(draws["h"])
    else:
        log_p = -m.free_energy_even([draws.get(l) for l in range(m.n_layers)], parity)
    log_w = log_p - log_q
    log_z, interval, ess = _log_z_summary(log_w, 0.0)
    return ImportanceResult(log_z, interval, log_w.cpu(), ess)


@torch.no_grad()
def elbo(model, X: Tensor, log_z: float | AISResult | None = None, *, max_updates: int = 100,
         tol: float = 1e-6) -> Tensor:
    """The variational lower bound on log p(v) of a DBM, any depth, for each row (float64):

        ELBO(v) = E_q[-E(v, h)] + H(q) - log Z

    with q = prod_l q_l the mean-field posterior.  After a final undamped sweep each factor is
    q_l(x) = exp(-bias_energy_l(x) + T_l(x).a_l) / Z_l(a_l), so its share of E_q[-bias energy] + H
    is log Z_l(a_l) - a_l . E_q[T_l] in closed form, for any unit type; the couplings contribute
    E_q[T_l] W_l E_q[T_(l+1)].  ``log_z``: given, else exact for small models, else AIS.
    """
    mm = as_model(model, (DBMModel,))
    m = copy.deepcopy(mm).to(torch.float64)
    v = _rows(X, m)
    log_z = log_partition(m, log_z)
    x, _ = m.mean_field(v, max_updates=max_updates, tol=tol)
    inputs = {}
    for parity in (1, 0):
        for l in range(parity or 2, m.n_layers, 2):
            inputs[l] = m.layer_input(x, l)
            x[l] = m.layers[l].mean(inputs[l])
    total = -m.layers[0].bias_energy(v)
    for l, a in inputs.items():
        u = m.layers[l]
        total = total + u.log_partition(a) - (a * u.statistic(x[l])).sum(-1)
    for l, W in enumerate(m.W):
        total = total + ((m.layers[l].statistic(x[l]) @ W) * m.layers[l + 1].statistic(x[l + 1])).sum(-1)
    return total - float(log_z)


@torch.no_grad()
def dbn_lower_bound(models, X: Tensor, log_z: float | AISResult | None = None, *, n_samples: int = 100,
                    random_state: int | None = None, **ais_options) -> Tensor:
    """A stochastic lower bound on log p(v) of a deep belief network, for each row (float64).

    ``models``: the stack's RBMs, bottom first (RBM estimators or models; a fitted ``DBN``'s
    ``rbms_``).  With h_0 = v, the recognition pass q_l(h_(l+1) | h_l) of each RBM below the top
    and its conditional p_l(h_l | h_(l+1)) as the directed generative layer (Hinton et al. 2006;
    Salakhutdinov & Murray 2008, section 4),

        log p(v) >= E_q[ sum_l (log p_l(h_l | h_(l+1)) - log q_l(h_(l+1) | h_l)) - F_top(h_(L-1)) ] - log Z_top

    where the top RBM's free energy sums its hidden layer out exactly.  The expectation is the mean
    over ``n_samples`` draws of the recognition pass per row: an unbiased estimate of the bound.  For
    one RBM it is log p(v) itself.  ``log_z``: the top RBM's log Z, given, else exact when it can be
    enumerated, else AIS (``ais_options`` and ``random_state`` go to ``ais``).
    """
    ms = [copy.deepcopy(as_model(m)).to(torch.float64) for m in models]
    if not ms:
        raise ValueError("a DBN needs at least one RBM")
    for l in range(len(ms) - 1):
        if ms[l].n_hidden != ms[l + 1].n_visible:
            raise ValueError(f"RBM {l} has {ms[l].n_hidden} hidden units but RBM {l + 1} has "
                             f"{ms[l + 1].n_visible} visible units")
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    v = _rows(X, ms[0])
    top = ms[-1]
    log_z = log_partition(top, log_z, random_state=random_state, **ais_options)
    g = _generator(v.device, random_state)
    total = torch.zeros(len(v), dtype=torch.float64, device=v.device)
    for _ in range(n_samples if len(ms) > 1 else 1):
        x = v
        for m in ms[:-1]:
            a = m.hidden_input(x)
            h = m.hidden.sample(a, generator=g)
            total += m.visible.log_prob(x, m.visible_input(h)) - m.hidden.log_prob(h, a)
            x = h
        total -= top.free_energy(x)
    return total / (n_samples if len(ms) > 1 else 1) - float(log_z)


@torch.no_grad()
def log_likelihood(model, X: Tensor, log_z: float | AISResult | None = None, **ais_options) -> Tensor:
    """log p(v) = -F(v) - log Z for each row of an RBM's data (float64).  log Z: the given value,
    else exact when the model can be enumerated, else an AIS estimate (``ais_options`` go to ``ais``).
    For a DBM, log p(v) is exact for small models; use ``elbo`` for large ones."""
    m = as_model(model, (RBMModel, DBMModel))
    return exact_log_likelihood(m, X, float(log_partition(m, log_z, **ais_options)))
