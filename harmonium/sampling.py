"""Negative-phase strategies: where the model's samples for the gradient come from.

Each strategy takes the model and the positive chain state (the data batch with its
hidden means and states) and returns a ``GibbsState`` whose ``v`` and ``h_mean`` give
the negative statistics.  All of them run ``RBMModel.gibbs``; they differ only in where
the chains start and what they keep between updates.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .rbm import GibbsState, RBMModel

__all__ = ["ContrastiveDivergence", "PersistentContrastiveDivergence", "ParallelTempering", "make_negative_phase"]


class ContrastiveDivergence:
    """CD-k (Hinton 2002): chains start at the data and run k sweeps."""

    #: whether ``negative`` reads the positive phase's sampled hidden states (else their means suffice)
    needs_positive_states = True

    def negative(self, model: RBMModel, pos: GibbsState, k: int, *, sample_v: bool | None, sample_h: bool,
                 generator: torch.Generator | None) -> GibbsState:
        return model.gibbs(pos.h, k, sample_v=sample_v, sample_h=sample_h, generator=generator, last_h=False)

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"contrastive divergence keeps no chains, got state {sorted(state)}")


class PersistentContrastiveDivergence:
    """PCD-k (Tieleman 2008): ``n_chains`` persistent chains, independent of the batch size.

    The chains keep their hidden states from the previous update, so an update costs no
    extra matrix product over CD (the states are one parameter update stale, as is usual).
    Chains start from hidden states drawn given the first data batch seen, repeated as needed.
    """

    def __init__(self, n_chains: int) -> None:
        if n_chains < 1:
            raise ValueError(f"n_chains must be >= 1, got {n_chains}")
        self.n_chains = int(n_chains)
        self.h: Tensor | None = None

    @property
    def needs_positive_states(self) -> bool:
        """Only to start the chains: afterwards the positive phase needs no hidden draws."""
        return self.h is None

    def _init_chains(self, pos: GibbsState, n: int) -> Tensor:
        reps = -(-n // pos.h.shape[0])
        return pos.h.repeat(reps, 1)[:n].clone()

    def negative(self, model, pos, k, *, sample_v, sample_h, generator):
        if self.h is None:
            self.h = self._init_chains(pos, self.n_chains)
        state = model.gibbs(self.h, k, sample_v=sample_v, sample_h=sample_h, generator=generator)
        self.h = state.h
        return state

    def state_dict(self):
        return {} if self.h is None else {"h": self.h}

    def load_state_dict(self, state):
        self.h = state.get("h")
        if self.h is not None and self.h.shape[0] != self.n_chains:
            raise ValueError(f"saved chains have {self.h.shape[0]} rows, expected n_chains={self.n_chains}")


class ParallelTempering(PersistentContrastiveDivergence):
    """Parallel tempering (Desjardins et al. 2010) on persistent chains.

    ``n_temperatures`` replicas of the ``n_chains`` chains at inverse temperatures
    1 = beta_0 > ... > beta_{T-1} = beta_min, each with the tempered distribution
    p_beta(v, h) ~ exp(-E0(v) - beta E1(v, h)) where E0 is the visible bias energy and
    E1 the rest.  After the k sweeps, neighbours swap states with probability
    min(1, exp((beta_t - beta_{t+1}) (E1(x_t) - E1(x_{t+1})))), even pairs on one update,
    odd pairs on the next.  Statistics come from the beta = 1 replica.  ``swap_rates`` gives the
    acceptance rate of each neighbouring pair since the last reset (a pair near 0 blocks the flow
    between the temperatures: add temperatures there).
    """

    def __init__(self, n_chains: int, n_temperatures: int, beta_min: float = 0.0) -> None:
        super().__init__(n_chains)
        if n_temperatures < 2:
            raise ValueError(f"parallel tempering needs n_temperatures >= 2, got {n_temperatures}")
        self.n_temperatures = int(n_temperatures)
        self.betas = torch.linspace(1.0, beta_min, self.n_temperatures, dtype=torch.float64)
        self.parity = 0
        # accepted and attempted swaps of each neighbouring pair since the last reset (on the chains'
        # device: counting costs no host synchronisation)
        self._accepted: Tensor | None = None
        self._attempted: Tensor | None = None
        self._on_device: Tensor | None = None  # betas in the chains' dtype and device (copied once)

    def _device_betas(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        b = self._on_device
        if b is None or b.dtype != dtype or b.device != device:
            b = self._on_device = self.betas.to(dtype=dtype, device=device)
        return b

    def negative(self, model, pos, k, *, sample_v, sample_h, generator):
        T, C = self.n_temperatures, self.n_chains
        dtype, device = pos.h.dtype, pos.h.device
        if self.h is None:
            self.h = self._init_chains(pos, T * C)
        b = self._device_betas(dtype, device)
        beta = b.repeat_interleave(C)[:, None]
        s = model.gibbs(self.h, k, beta=beta, sample_v=sample_v, sample_h=sample_h, generator=generator)
        v, h, a = (x.view(T, C, -1) for x in (s.v, s.h, s.h_input))
        h_mean = s.h_mean.view(T, C, -1)
        # E1: the part of the energy that tempering scales, the hidden bias energy (without any
        # untempered base measure) minus the interaction a . (T_h(h) - lambda)
        th = model.hidden.statistic(h)
        if model.hidden_offset is not None:
            th = th - model.hidden_offset
        e1 = model.hidden.bias_energy(h) - model.hidden.bias_energy(h, 0.0) - (a * th).sum(-1)  # (T, C)
        lo = torch.arange(self.parity, T - 1, 2, device=device)
        self.parity ^= 1
        if len(lo):
            log_r = (b[lo] - b[lo + 1])[:, None] * (e1[lo] - e1[lo + 1])
            u = torch.rand(log_r.shape, generator=generator, dtype=dtype, device=device)
            swap = torch.log(u) < log_r  # (pairs, C)
            perm = torch.arange(T, device=device)[:, None].repeat(1, C)
            perm[lo] = torch.where(swap, lo[:, None] + 1, lo[:, None])
            perm[lo + 1] = torch.where(swap, lo[:, None], lo[:, None] + 1)
            idx = perm[:, :, None]
            v, h, a, h_mean = (torch.gather(x, 0, idx.expand_as(x)) for x in (v, h, a, h_mean))
            if self._accepted is None:
                self._accepted = torch.zeros(T - 1, dtype=torch.float64, device=device)
                self._attempted = torch.zeros(T - 1, dtype=torch.float64, device=device)
            self._accepted.index_add_(0, lo, swap.sum(1, dtype=torch.float64))
            self._attempted[lo] += C
        self.h = h.reshape(T * C, -1)
        return GibbsState(v[0], h_mean[0], h[0], a[0])

    def swap_rates(self, reset: bool = False) -> Tensor:
        """Acceptance rate of the swaps between temperatures t and t + 1, for t = 0 .. T - 2, since
        the last reset (NaN for a pair not yet tried); ``reset`` starts the counts again."""
        if self._accepted is None:
            rates = torch.full((self.n_temperatures - 1,), float("nan"), dtype=torch.float64)
        else:
            rates = self._accepted / self._attempted
        if reset:
            self._accepted = self._attempted = None
        return rates

    def state_dict(self):
        state = super().state_dict()
        state["parity"] = torch.tensor([self.parity])
        return state

    def load_state_dict(self, state):
        state = dict(state)
        self.parity = int(state.pop("parity", torch.tensor([0]))[0])
        self.h = state.get("h")
        if self.h is not None and self.h.shape[0] != self.n_chains * self.n_temperatures:
            raise ValueError(f"saved chains have {self.h.shape[0]} rows, expected "
                             f"{self.n_chains} chains x {self.n_temperatures} temperatures")


def make_negative_phase(persistent: bool, n_chains: int, n_temperatures: int):
    """The strategy for the estimator settings (``n_temperatures > 1`` implies persistent chains)."""
    if n_temperatures > 1:
        return ParallelTempering(n_chains, n_temperatures)
    if persistent:
        return PersistentContrastiveDivergence(n_chains)
    return ContrastiveDivergence()
