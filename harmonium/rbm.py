"""The restricted Boltzmann machine as a torch module, over any pair of unit types.

With statistics T_v, T_h of the two layers (see ``harmonium.units``), weights W of
shape (n_visible, n_hidden) and centering offsets mu, lambda (zero unless centering):

    E(v, h) = bias_energy_v(v) + bias_energy_h(h) - (T_v(v) - mu)^T W (T_h(h) - lambda)

    hidden input   a(v) = (T_v(v) - mu) W          p(h | v) from hidden.mean(a)
    visible input  c(h) = (T_h(h) - lambda) W^T    p(v | h) from visible.mean(c)

    F(v) = -log sum_h exp(-E(v, h)) = bias_energy_v(v) + lambda . a(v) - hidden.log_partition(a(v))

At inverse temperature beta the interaction and the hidden layer's bias energy are scaled
by beta while the visible bias energy is not: beta = 0 is the independent model of the
visible biases, which parallel tempering and AIS use as their easy end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .units import Beta, Units, accumulate_grad, is_one

__all__ = ["RBMModel", "GibbsState"]


@dataclass
class GibbsState:
    """Where a Gibbs chain stands after a sweep.

    ``v`` the visible states used for statistics (samples or means), ``h_mean`` = E[h | v],
    ``h`` the hidden states that drive the next sweep, ``h_input`` the hidden input a(v)
    (kept for free energies and tempering swaps without another matrix product).
    """

    v: Tensor
    h_mean: Tensor
    h: Tensor
    h_input: Tensor


class RBMModel(nn.Module):
    """An RBM with ``visible`` and ``hidden`` unit layers and weights ``W`` (n_visible, n_hidden)."""

    def __init__(self, visible: Units, hidden: Units) -> None:
        super().__init__()
        if hidden.coupled_parameters:
            raise ValueError("hidden units whose statistic depends on learned parameters (e.g. Gaussian "
                             "with learn_sigma=True) are not supported; learn sigma on the visible layer")
        self.visible = visible
        self.hidden = hidden
        self.W = nn.Parameter(torch.zeros(visible.n, hidden.n))
        self.register_buffer("visible_offset", None)
        self.register_buffer("hidden_offset", None)
        #: multipliers of the bottom-up and top-down inputs: 2 doubles them for the greedy
        #: pretraining of a DBM (Salakhutdinov & Hinton 2009); 1 is the plain RBM
        self.up_factor = 1.0
        self.down_factor = 1.0

    @property
    def n_visible(self) -> int:
        return self.visible.n

    @property
    def n_hidden(self) -> int:
        return self.hidden.n

    @property
    def centered(self) -> bool:
        return self.visible_offset is not None

    # -- inputs and energies ------------------------------------------------------
    def hidden_input(self, v: Tensor, beta: Beta = 1.0) -> Tensor:
        """a(v) = beta (T_v(v) - mu) W."""
        t = self.visible.statistic(v)
        if self.visible_offset is not None:
            t = t - self.visible_offset
        a = t @ self.W
        if self.up_factor != 1.0:
            a = a * self.up_factor
        return a if is_one(beta) else a * beta

    def visible_input(self, h: Tensor, beta: Beta = 1.0) -> Tensor:
        """c(h) = beta (T_h(h) - lambda) W^T."""
        t = self.hidden.statistic(h)
        if self.hidden_offset is not None:
            t = t - self.hidden_offset
        c = t @ self.W.T
        if self.down_factor != 1.0:
            c = c * self.down_factor
        return c if is_one(beta) else c * beta

    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) for each row."""
        t = self.hidden.statistic(h)
        if self.hidden_offset is not None:
            t = t - self.hidden_offset
        return (self.visible.bias_energy(v) + self.hidden.bias_energy(h)
                - (self.hidden_input(v) * t).sum(-1))

    def free_energy_from_input(self, v: Tensor, a: Tensor, beta: Beta = 1.0) -> Tensor:
        """F_beta(v) given the already computed hidden input a = a(v) at beta = 1."""
        f = self.visible.bias_energy(v)
        if not (is_one(beta)):
            a = a * beta
        if self.hidden_offset is not None:
            f = f + a @ self.hidden_offset
        return f - self.hidden.log_partition(a, beta)

    def free_energy(self, v: Tensor, beta: Beta = 1.0) -> Tensor:
        """F(v) = -log sum_h exp(-beta-tempered E(v, h)), one value per row."""
        return self.free_energy_from_input(v, self.hidden_input(v), beta)

    def free_energy_hidden(self, h: Tensor) -> Tensor:
        """-log integral_v exp(-E(v, h)): the visible layer summed out."""
        c = self.visible_input(h)
        f = self.hidden.bias_energy(h)
        if self.visible_offset is not None:
            f = f + c @ self.visible_offset
        return f - self.visible.log_partition(c)

    # -- conditionals and Gibbs sampling -----------------------------------------------
    def hidden_mean(self, v: Tensor, beta: Beta = 1.0) -> Tensor:
        return self.hidden.mean(self.hidden_input(v, beta), beta)

    def visible_mean(self, h: Tensor, beta: Beta = 1.0) -> Tensor:
        return self.visible.mean(self.visible_input(h, beta))

    def sample_hidden(self, v: Tensor, beta: Beta = 1.0, generator: torch.Generator | None = None) -> Tensor:
        return self.hidden.sample(self.hidden_input(v, beta), beta, generator)

    def sample_visible(self, h: Tensor, beta: Beta = 1.0, generator: torch.Generator | None = None) -> Tensor:
        return self.visible.sample(self.visible_input(h, beta), 1.0, generator)

    def gibbs(self, h: Tensor, k: int = 1, *, beta: Beta = 1.0, sample_v: bool | None = True,
              sample_h: bool = True, generator: torch.Generator | None = None,
              clamp: tuple[Tensor, Tensor] | None = None, last_h: bool = True) -> GibbsState:
        """``k`` block-Gibbs sweeps h -> v -> h starting from hidden states ``h``.

        This is the one Gibbs step of the library: CD, PCD, parallel tempering, sampling,
        daydreaming and conditional completion all call it.  ``sample_h`` chooses samples or
        means for the hidden states passed on; ``sample_v`` the same for the visible states:
        True samples all of them, False passes means (mean-field sweeps, deterministic with
        ``sample_h=False``), None samples every visible state the chain continues from and
        keeps the means only in the last sweep of a chain that stops there (``last_h=False``):
        Hinton's reconstruction for CD.  ``clamp = (mask, values)`` keeps the visible units
        where ``mask`` is true fixed at ``values``.  ``last_h=False`` skips drawing the final
        hidden states (the returned ``h`` is then the mean), for callers such as CD that do
        not continue the chain.
        """
        for i in range(k):
            c = self.visible_input(h, beta)
            v = self.visible.mean(c)
            if sample_v or (sample_v is None and (last_h or i < k - 1)):
                v = self.visible.sample(c, 1.0, generator, mean=v)
            if clamp is not None:
                v = torch.where(clamp[0], clamp[1], v)
            a = self.hidden_input(v)
            a_beta = a if is_one(beta) else a * beta
            h_mean = self.hidden.mean(a_beta, beta)
            draw = sample_h and (last_h or i < k - 1)
            h = self.hidden.sample(a_beta, beta, generator, mean=h_mean) if draw else h_mean
        return GibbsState(v, h_mean, h, a)

    def start(self, v: Tensor, *, beta: Beta = 1.0, sample_h: bool = True,
              generator: torch.Generator | None = None) -> GibbsState:
        """The chain state at visible states ``v``: hidden means and states given v."""
        a = self.hidden_input(v)
        a_beta = a if is_one(beta) else a * beta
        h_mean = self.hidden.mean(a_beta, beta)
        h = self.hidden.sample(a_beta, beta, generator, mean=h_mean) if sample_h else h_mean
        return GibbsState(v, h_mean, h, a)

    # -- the likelihood gradient ---------------------------------------------------------
    def _centered(self, t: Tensor, offset: Tensor | None) -> Tensor:
        return t if offset is None else t - offset

    def weight_statistic(self, v: Tensor, h: Tensor, weights: Tensor | None = None) -> Tensor:
        """<(T_v(v) - mu) (T_h(h) - lambda)^T> over the batch (weighted if ``weights`` is given)."""
        tv = self._centered(self.visible.statistic(v), self.visible_offset)
        th = self._centered(self.hidden.statistic(h), self.hidden_offset)
        if weights is None:
            return tv.T @ th / v.shape[0]
        return (tv * weights[:, None]).T @ th

    def write_gradient(self, v_pos: Tensor, h_pos: Tensor, v_neg: Tensor, h_neg: Tensor,
                       w_pos: Tensor | None = None, w_neg: Tensor | None = None, *,
                       momentum: float = 0.0) -> None:
        """Set ``.grad`` of every parameter to the gradient of the negative log-likelihood.

            dNLL/dtheta = <dE/dtheta>_data - <dE/dtheta>_model

        estimated from the positive (data) batch and the negative (model) batch.  ``h_*``
        are hidden means (Rao-Blackwellised) or states; ``w_*`` optional per-row weights
        summing to one (exact expectations in tests use them).  With ``momentum`` m > 0 the
        estimate is accumulated instead, grad <- m grad + estimate, fused into the matrix
        products (``MomentumSGD`` keeps its velocity in ``.grad`` this way).
        """
        W = self.W
        tv_p = self._centered(self.visible.statistic(v_pos), self.visible_offset)
        th_p = self._centered(self.hidden.statistic(h_pos), self.hidden_offset)
        tv_n = self._centered(self.visible.statistic(v_neg), self.visible_offset)
        th_n = self._centered(self.hidden.statistic(h_neg), self.hidden_offset)
        if w_pos is not None:
            tv_p = tv_p * w_pos[:, None]
        if w_neg is not None:
            tv_n = tv_n * w_neg[:, None]
        a_p = 1.0 / v_pos.shape[0] if w_pos is None else 1.0
        a_n = 1.0 / v_neg.shape[0] if w_neg is None else 1.0
        with torch.no_grad():
            if W.grad is None:
                W.grad = torch.zeros_like(W)
            # in W's own (n_visible, n_hidden) layout, the momentum as the product's beta.  Each product
            # reads and writes the whole gradient buffer; for few rows (784 x 1024, batch 10) that pass
            # costs more than copying both phases into one product (0.24 against 0.31 ms), for many
            # (batch 100) less (1.63 against 1.70 ms)
            rows = tv_p.shape[0] + tv_n.shape[0]
            if 4 * rows * (tv_p.shape[1] + th_p.shape[1]) < W.numel():
                W.grad.addmm_(torch.cat([tv_n * a_n, tv_p * -a_p]).T, torch.cat([th_n, th_p]), beta=momentum)
            else:
                W.grad.addmm_(tv_n.T, th_n, beta=momentum, alpha=a_n).addmm_(tv_p.T, th_p, alpha=-a_p)
        self.hidden.write_gradient(h_pos, h_neg, w_pos, w_neg, momentum)
        if self.visible.coupled_parameters:
            params = list(self.visible.parameters())
            with torch.enable_grad():
                fp = self.free_energy(v_pos.detach())
                fn = self.free_energy(v_neg.detach())
                fp = fp.mean() if w_pos is None else (w_pos * fp).sum()
                fn = fn.mean() if w_neg is None else (w_neg * fn).sum()
                grads = torch.autograd.grad(fp - fn, params, allow_unused=True)
            for p, g in zip(params, grads):
                accumulate_grad(p, torch.zeros_like(p) if g is None else g, momentum)
        else:
            self.visible.write_gradient(v_pos, v_neg, w_pos, w_neg, momentum)

    # -- centering ----------------------------------------------------------------------
    def set_offsets(self, visible_offset: Tensor | None, hidden_offset: Tensor | None) -> None:
        """Move the centering offsets, shifting biases so that the distribution is unchanged.

        From -(T_v - mu)^T W (T_h - lambda): the natural parameter of the visibles changes by
        -W lambda, of the hiddens by -W^T mu; moving (mu, lambda) to (mu', lambda') is undone
        by adding W (lambda' - lambda) and W^T (mu' - mu) to them.  The energy changes by the constant
        mu^T W lambda - mu'^T W lambda', and so do every free energy and log Z: compare log Z across
        such a move only after adding it (log-probabilities need no correction).
        """
        with torch.no_grad():
            old_v = self.visible_offset if self.visible_offset is not None else torch.zeros_like(self.visible.bias)
            old_h = self.hidden_offset if self.hidden_offset is not None else torch.zeros_like(self.hidden.bias)
            new_v = visible_offset if visible_offset is not None else torch.zeros_like(old_v)
            new_h = hidden_offset if hidden_offset is not None else torch.zeros_like(old_h)
            self.visible.shift_bias(self.W @ (new_h - old_h))
            self.hidden.shift_bias(self.W.T @ (new_v - old_v))
        self.visible_offset = None if visible_offset is None else visible_offset.detach().clone()
        self.hidden_offset = None if hidden_offset is None else hidden_offset.detach().clone()

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, centered={self.centered}"
