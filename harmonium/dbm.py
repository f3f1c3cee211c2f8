"""The deep Boltzmann machine as a torch module: any depth, any unit type per layer.

Layers x_0 (visible), x_1, ..., x_L with statistics T_l and weights W_l of shape (n_l, n_{l+1}):

    E(x) = sum_l bias_energy_l(x_l) - sum_{l<L} T_l(x_l)^T W_l T_{l+1}(x_{l+1})

Given its two neighbours, a layer is independent of the rest; its input is

    a_l = T_{l-1}(x_{l-1}) W_{l-1} + T_{l+1}(x_{l+1}) W_l^T

so the even layers are conditionally independent given the odd ones and vice versa: block
Gibbs sampling alternates the two sets.  The positive phase uses the mean-field posterior
q(h | v) = prod_l q_l(x_l), found by fixed-point updates mu_l <- mean_l(a_l(mu)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .units import Units

__all__ = ["DBMModel"]


class DBMModel(nn.Module):
    """A DBM over ``layers`` (visible first) with weights ``W[l]`` between layers l and l+1."""

    def __init__(self, layers: Sequence[Units]) -> None:
        super().__init__()
        if len(layers) < 2:
            raise ValueError(f"a DBM needs a visible and at least one hidden layer, got {len(layers)} layers")
        for u in layers:
            if u.coupled_parameters:
                raise ValueError("DBM layers whose statistic depends on learned parameters (e.g. Gaussian with "
                                 "learn_sigma=True) are not supported")
        self.layers = nn.ModuleList(layers)
        self.W = nn.ParameterList([nn.Parameter(torch.zeros(a.n, b.n)) for a, b in zip(layers[:-1], layers[1:])])

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def sizes(self) -> list[int]:
        return [u.n for u in self.layers]

    # -- inputs and energies ---------------------------------------------------------
    def layer_input(self, x: Sequence[Tensor | None], l: int, scale_below: float = 1.0,
                    scale_above: float = 1.0) -> Tensor:
        """a_l from the neighbours' states in ``x`` (a list over layers; missing neighbours count 0)."""
        a = None
        if l > 0 and x[l - 1] is not None:
            a = self.layers[l - 1].statistic(x[l - 1]) @ self.W[l - 1]
            if scale_below != 1.0:
                a = a * scale_below
        if l < self.n_layers - 1 and x[l + 1] is not None:
            b = self.layers[l + 1].statistic(x[l + 1]) @ self.W[l].T
            if scale_above != 1.0:
                b = b * scale_above
            a = b if a is None else a + b
        if a is None:
            ref = next(t for t in x if t is not None)
            a = ref.new_zeros(ref.shape[0], self.layers[l].n)
        return a

    def energy(self, x: Sequence[Tensor]) -> Tensor:
        """E(x) for each row of a full configuration (all layers)."""
        e = sum(u.bias_energy(xl) for u, xl in zip(self.layers, x))
        for l, W in enumerate(self.W):
            t_lo = self.layers[l].statistic(x[l])
            t_hi = self.layers[l + 1].statistic(x[l + 1])
            e = e - ((t_lo @ W) * t_hi).sum(-1)
        return e

    def free_energy_even(self, x: Sequence[Tensor | None], parity: int = 0) -> Tensor:
        """-log sum over the layers of the other parity of exp(-E): those layers summed out in closed
        form given the layers of ``parity`` (entries of the other parity in ``x`` are ignored)."""
        keep = [xl if l % 2 == parity else None for l, xl in enumerate(x)]
        f = sum(self.layers[l].bias_energy(keep[l]) for l in range(self.n_layers) if l % 2 == parity)
        for l in range(self.n_layers):
            if l % 2 != parity:
                f = f - self.layers[l].log_partition(self.layer_input(keep, l))
        return f

    # -- inference -----------------------------------------------------------------------
    def upward_init(self, v: Tensor) -> list[Tensor]:
        """Initial mean-field means by one bottom-up pass, doubling the input of every layer but the
        top one (the missing top-down input, as in Salakhutdinov & Hinton 2009)."""
        x: list[Tensor | None] = [v] + [None] * (self.n_layers - 1)
        for l in range(1, self.n_layers):
            scale = 1.0 if l == self.n_layers - 1 else 2.0
            x[l] = self.layers[l].mean(self.layer_input(x[:l] + [None] * (self.n_layers - l), l, scale_below=scale))
        return x  # type: ignore[return-value]

    def mean_field(self, v: Tensor, *, max_updates: int = 30, tol: float = 1e-5, damping: float = 0.0,
                   init: list[Tensor] | None = None) -> tuple[list[Tensor], int]:
        """Mean-field posterior means [v, mu_1, ..., mu_L] for visible rows ``v``, and the number of
        sweeps used.  Each sweep updates the odd layers, then the even hidden layers (a
        coordinate ascent on the variational free energy); ``damping`` d mixes
        mu <- d mu + (1 - d) mean.  Stops when the largest change is below ``tol`` (one host sync
        per sweep) or after ``max_updates`` sweeps.
        """
        x = self.upward_init(v) if init is None else [v] + [t.clone() for t in init[1:]]
        n = 0
        for n in range(1, max_updates + 1):
            delta = v.new_zeros(())
            for parity in (1, 0):
                for l in range(parity or 2, self.n_layers, 2):
                    new = self.layers[l].mean(self.layer_input(x, l))
                    if damping:
                        new = damping * x[l] + (1 - damping) * new
                    delta = torch.maximum(delta, (new - x[l]).detach().abs().max())
                    x[l] = new
            if tol > 0 and float(delta) < tol:
                break
        return x, n

    def gibbs(self, x: list[Tensor], k: int = 1, *, sample: bool = True, clamp_visible: bool = False,
              generator: torch.Generator | None = None, beta: float = 1.0) -> tuple[list[Tensor], list[Tensor]]:
        """``k`` sweeps of block Gibbs sampling: odd layers given even ones, then even ones given odd.

        Returns (states, means) where means[l] is the conditional mean used for layer l in the last
        sweep.  With ``clamp_visible`` the visible layer stays fixed.  ``beta`` tempers the whole
        model except the visible bias energy (as for the RBM).
        """
        x = list(x)
        means = list(x)
        for _ in range(k):
            for parity in (1, 0):
                for l in range(parity, self.n_layers, 2):
                    if l == 0 and clamp_visible:
                        continue
                    a = self.layer_input(x, l)
                    b = 1.0 if l == 0 else beta
                    if beta != 1.0:
                        a = a * beta
                    means[l] = self.layers[l].mean(a, b)
                    x[l] = self.layers[l].sample(a, b, generator, mean=means[l]) if sample else means[l]
        return x, means

    # -- the likelihood gradient -------------------------------------------------------------
    def write_gradient(self, pos: Sequence[Tensor], neg: Sequence[Tensor], *, momentum: float = 0.0,
                       w_pos: Tensor | None = None, w_neg: Tensor | None = None,
                       offsets: Sequence[Tensor] | None = None) -> None:
        """``.grad`` <- momentum ``.grad`` + <dE/dtheta>_pos - <dE/dtheta>_neg, with ``pos`` the
        mean-field means given the data and ``neg`` the particles' states (or exact weighted states);
        rows weighted by ``w_*`` when given, else averaged.

        With ``offsets`` mu_l (one per layer, in statistic space) this is the *centered* gradient
        (Montavon & Mueller 2012; Melchior, Fischer & Wiskott 2016) written for these uncentered
        parameters: in the centered energy -sum_l (T_l - mu_l)^T W~_l (T_(l+1) - mu_(l+1)) - sum_l b~_l.T_l
        the gradients are G_l = <(T_l - mu_l)(T_(l+1) - mu_(l+1))^T> differences and the plain bias
        gradients g~_l; since b_l = b~_l - W_l mu_(l+1) - W_(l-1)^T mu_(l-1), the same step in the
        uncentered parameters has W-gradient G_l and bias gradient g~_l - G_l mu_(l+1) - G_(l-1)^T mu_(l-1).
        Only for layers whose bias is the natural parameter (``linear_bias``).
        """
        corr: list[Tensor | None] = [None] * self.n_layers
        with torch.no_grad():
            for l, W in enumerate(self.W):
                tp_lo, tp_hi = self.layers[l].statistic(pos[l]), self.layers[l + 1].statistic(pos[l + 1])
                tn_lo, tn_hi = self.layers[l].statistic(neg[l]), self.layers[l + 1].statistic(neg[l + 1])
                if offsets is not None:
                    tp_lo, tn_lo = tp_lo - offsets[l], tn_lo - offsets[l]
                    tp_hi, tn_hi = tp_hi - offsets[l + 1], tn_hi - offsets[l + 1]
                tn_lo = tn_lo / neg[0].shape[0] if w_neg is None else tn_lo * w_neg[:, None]
                tp_lo = tp_lo / -pos[0].shape[0] if w_pos is None else tp_lo * -w_pos[:, None]
                lo, hi = torch.cat([tn_lo, tp_lo]), torch.cat([tn_hi, tp_hi])
                if W.grad is None:
                    W.grad = torch.zeros_like(W)
                W.grad.addmm_(lo.T, hi, beta=momentum)
                if offsets is not None:  # G_l mu_(l+1) and G_l^T mu_l as matrix-vector products
                    below, above = lo.T @ (hi @ offsets[l + 1]), hi.T @ (lo @ offsets[l])
                    corr[l] = below if corr[l] is None else corr[l] + below
                    corr[l + 1] = above if corr[l + 1] is None else corr[l + 1] + above
        for l, units in enumerate(self.layers):
            units.write_gradient(pos[l], neg[l], w_pos, w_neg, momentum)
            if corr[l] is not None:
                units.bias.grad.sub_(corr[l])

    def extra_repr(self) -> str:
        return "sizes=" + "-".join(str(s) for s in self.sizes)
