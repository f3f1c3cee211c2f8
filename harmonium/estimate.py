"""Model evaluation: exact partition functions, likelihoods, pseudo-likelihood, reconstruction.

Every function accepts a fitted estimator (anything with a ``model_`` attribute) or the
torch model itself, and data as a tensor of the model's dtype and device.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from .rbm import RBMModel

__all__ = [
    "exact_log_partition",
    "exact_log_likelihood",
    "pseudo_log_likelihood",
    "reconstruction_error",
    "free_energy_gap",
    "MAX_EXACT_STATES",
]

#: Largest number of joint states ``exact_log_partition`` will enumerate.
MAX_EXACT_STATES = 2 ** 24


def as_model(model) -> RBMModel:
    """The torch model behind an estimator (or the model itself)."""
    m = getattr(model, "model_", model)
    if not isinstance(m, RBMModel):
        raise TypeError(f"expected a fitted estimator or an RBMModel, got {type(model).__name__}")
    return m


def _like(x: Tensor, model: RBMModel) -> Tensor:
    p = model.W
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
    m = copy.deepcopy(as_model(model)).to(torch.float64)
    layer, n = enumeration_cost(m)
    if math.isinf(n):
        raise ValueError("exact log Z needs at least one discrete layer; both layers are continuous")
    if n > max_states:
        raise ValueError(f"exact log Z would enumerate {n:.3g} {layer} states (limit {max_states}); use AIS")
    units = m.hidden if layer == "hidden" else m.visible
    free = m.free_energy_hidden if layer == "hidden" else m.free_energy
    parts = [torch.logsumexp(-free(s.to(m.W.device)), 0) for s in units.enumerate_states()]
    return float(torch.logsumexp(torch.stack(parts), 0))


@torch.no_grad()
def exact_log_likelihood(model, X: Tensor, log_z: float | None = None) -> Tensor:
    """log p(v) = -F(v) - log Z for each row, in float64."""
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
