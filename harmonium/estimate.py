"""Model evaluation: exact partition functions, likelihoods, pseudo-likelihood, reconstruction.

Every function accepts a fitted estimator (anything with a ``model_`` attribute) or the
torch model itself, and data as a tensor of the model's dtype and device.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .dbm import DBMModel
from .rbm import RBMModel

__all__ = [
    "ais",
    "AISResult",
    "default_betas",
    "exact_log_partition",
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
    X = _like(X, m)
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
    return -m.free_energy(_like(X, m)) - log_z


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
    X = _like(X, m)
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
    X = _like(X, m)
    r = m.visible_mean(m.hidden_mean(X))
    return float(((X - r) ** 2).mean())


@torch.no_grad()
def free_energy_gap(model, X_train: Tensor, X_val: Tensor) -> float:
    """mean F(X_val) - mean F(X_train): grows when the model overfits (Hinton 2010, sec. 6)."""
    m = as_model(model)
    return float(m.free_energy(_like(X_val, m)).mean() - m.free_energy(_like(X_train, m)).mean())


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


@torch.no_grad()
def ais(model, *, n_runs: int = 100, betas: Tensor | int | None = None, base_rate: Tensor | None = None,
        random_state: int | None = None, sample_h: bool = True, verbose: bool = False) -> AISResult:
    """Annealed importance sampling estimate of log Z for an RBM of any unit types.

    Intermediate distributions (Salakhutdinov & Murray 2008), with the hidden units summed out:

        log p*_beta(v) = -(1 - beta) E_A(v) - beta bias_energy(v) - beta lambda.a(v)
                         + hidden.log_partition(beta a(v), beta)

    where E_A is the bias energy of the base model: the same visible unit type with biases
    fitted to ``base_rate`` data (the unit type's ``init_bias`` of the data means) or zero
    biases (uniform for discrete units), and no coupling.  Each transition is a Gibbs sweep
    v -> h -> v at beta (the visible biases interpolated between the base and the model).
    The ``n_runs`` runs advance together as one batch; log-weights are accumulated in float64.
    ``betas``: a tensor of increasing values from 0 to 1, a number of betas for the standard
    three-segment schedule, or None for the standard 14,500.
    """
    m = as_model(model)
    p = m.W
    dtype, device = p.dtype, p.device
    if betas is None or isinstance(betas, int):
        betas = default_betas(betas)
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or len(betas) < 2 or betas[0] != 0 or betas[-1] != 1 or (betas.diff() < 0).any():
        raise ValueError("betas must increase from 0 to 1")
    vis, hid = m.visible, m.hidden
    base = copy.deepcopy(vis)
    with torch.no_grad():
        if base_rate is None:
            base.bias.zero_()
        else:
            x = _like(base_rate, m)
            vis.validate(x, "base_rate")
            base.bias.copy_(vis.init_bias(x.mean(0)))
    delta = vis.bias_as_input(base.bias - vis.bias)  # input that moves the model's visible bias to the base's
    g = torch.Generator(device=device)
    g.manual_seed(int(random_state) if random_state is not None else int(torch.randint(2 ** 62, (1,)).item()))
    zeros_v = torch.zeros(n_runs, m.n_visible, dtype=dtype, device=device)
    zeros_h = torch.zeros(1, m.n_hidden, dtype=dtype, device=device)
    log_z0 = float(base.log_partition(zeros_v[:1])[0]) + float(hid.log_partition(zeros_h, 0.0)[0])
    v = base.sample(zeros_v, 1.0, g)
    e_base = base.bias_energy(v)
    e_model = vis.bias_energy(v)
    a = m.hidden_input(v)
    log_w = torch.zeros(n_runs, dtype=torch.float64, device=device)

    def log_p(beta: float) -> Tensor:
        lp = -(1 - beta) * e_base - beta * e_model + hid.log_partition(beta * a, beta)
        if m.hidden_offset is not None:
            lp = lp - beta * (a @ m.hidden_offset)
        return lp

    steps = range(1, len(betas))
    if verbose:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="AIS", unit="beta", mininterval=1.0)
    bl = betas.tolist()
    prev = log_p(bl[0])
    for i in steps:
        beta = bl[i]
        cur = log_p(beta)
        log_w += (cur - prev).to(torch.float64)
        if i == len(bl) - 1:
            break
        # transition at beta: h ~ p_beta(h | v), v ~ p_beta(v | h)
        ab = a * beta
        h = hid.sample(ab, beta, g) if sample_h else hid.mean(ab, beta)
        c = m.visible_input(h, beta) + (1 - beta) * delta
        v = vis.sample(c, 1.0, g)
        e_base = base.bias_energy(v)
        e_model = vis.bias_energy(v)
        a = m.hidden_input(v)
        prev = log_p(beta)
    log_z, interval, ess = _log_z_summary(log_w, log_z0)
    return AISResult(log_z, interval, log_w.cpu(), ess, log_z0, len(bl))


@torch.no_grad()
def log_likelihood(model, X: Tensor, log_z: float | AISResult | None = None, **ais_options) -> Tensor:
    """log p(v) = -F(v) - log Z for each row (float64).  log Z: the given value, else exact when the
    model can be enumerated, else an AIS estimate (``ais_options`` are passed to ``ais``)."""
    m = as_model(model)
    if log_z is None:
        try:
            log_z = exact_log_partition(m)
        except ValueError:
            log_z = ais(m, **ais_options).log_z
    return exact_log_likelihood(m, X, float(log_z))
