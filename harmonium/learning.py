"""The fit loop: batches, the gradient estimate, regularisers, schedules and the optimizer.

One update on a batch v+ of data:

1. positive phase  h+ = E[h | v+] (and hidden states drawn for the chains),
2. negative phase  (v-, h-) from the strategy (CD, PCD, parallel tempering),
3. ``RBMModel.write_gradient`` sets ``.grad`` to <dE/dtheta>_data - <dE/dtheta>_model,
4. regularisers add to ``.grad``: L2 on W, the sparsity penalty,
5. ``optimizer.step()`` (plain SGD with momentum by default, any torch optimizer allowed),
6. max-norm on the incoming weights of each hidden unit, centering offsets,
7. with ``ema_decay``, the moving average of the parameters (``ParameterAverage``).

Nothing in an update reads a value back to the host: metrics are computed once per epoch.
Under a ``torch.distributed`` process group each rank runs this on its share of every batch and
one all-reduce between steps 4 and 5 makes the global estimate (see ``harmonium.distributed``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import distributed
from .rbm import RBMModel
from .sampling import ContrastiveDivergence, make_negative_phase

__all__ = ["TrainingConfig", "TrainerBase", "Trainer", "MomentumSGD", "ParameterAverage", "DivergenceError",
           "at_epoch", "make_optimizer", "batches"]

Schedule = float | int | Sequence[float] | Sequence[int]


def at_epoch(value: Schedule, epoch: int):
    """The value of a constant or per-epoch sequence at ``epoch`` (the last entry repeats)."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
        if len(value) == 0:
            raise ValueError("an empty schedule")
        return value[min(epoch, len(value) - 1)]
    return value


class DivergenceError(FloatingPointError):
    """Training produced NaN or infinite parameters or chains (an ``ArithmeticError``)."""


class MomentumSGD(torch.optim.Optimizer):
    """SGD with momentum whose velocity lives in each parameter's ``.grad``.

    The gradient writer accumulates ``grad <- momentum * grad + g`` inside the matrix products
    (``RBMModel.write_gradient(momentum=...)``) and ``step`` only does ``p <- p - lr * grad``:
    the arithmetic of ``torch.optim.SGD(momentum=m, dampening=0)`` without its extra passes
    over the weights.  The velocity is saved as the usual ``momentum_buffer`` state.
    """

    accumulates_momentum = True

    def __init__(self, params, lr: float, momentum: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """The update itself, without ``Optimizer.step``'s hooks (the trainer calls this per batch)."""
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if ps:
                torch._foreach_add_(ps, [p.grad for p in ps], alpha=-group["lr"])

    def state_dict(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.state[p]["momentum_buffer"] = p.grad
        return super().state_dict()

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for p in group["params"]:
                buf = self.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    p.grad = buf.detach().clone()


@dataclass
class TrainingConfig:
    """The hyperparameters the loop needs (validated by the estimator)."""

    learning_rate: Schedule = 0.05
    momentum: Schedule = 0.9
    k: Schedule = 1
    batch_size: int = 10
    persistent: bool = False
    n_chains: int | None = None
    n_temperatures: int = 1
    l2: float = 0.0
    dropout: float | None = None
    sparsity_target: float | None = None
    sparsity_cost: float = 0.0
    sparsity_damping: float = 0.9
    max_norm: float | None = None
    centering: bool = False
    centering_rate: float = 0.01
    sample_v_states: bool | None = None
    sample_h_states: bool = True
    sample_data: bool = False
    optimizer: str | Callable[..., torch.optim.Optimizer] = "sgd"
    ema_decay: float = 0.0


class ParameterAverage:
    """An exponential moving average of a model's trainable parameters (Polyak averaging of the
    stochastic-approximation iterates; Swersky et al. 2010 recommend it for PCD and parallel
    tempering; ``finetune`` uses it too).

    After update t:  avg <- d_t avg + (1 - d_t) theta,  d_t = min(decay, (1 + t) / (10 + t))
    (the warm-up keeps the starting point from dominating).  The average lives in ``shadow``, a copy
    of the model: a centred RBM's shadow has its offsets moved with the model's (``set_offsets``
    shifts its biases by its own weights), so that the average is the average of the natural
    parameters, the ones that define the distribution.  ``swap`` exchanges the values of the
    model's and the shadow's parameters in place; ``swapped`` says whether the model now holds the
    average (training always runs on the live values)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.shadow = copy.deepcopy(model).requires_grad_(False)
        shadow = dict(self.shadow.named_parameters())
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self._live = [p for p in model.parameters() if p.requires_grad]
        self._avg = [shadow[n] for n in self.names]
        for p in self.shadow.parameters():
            p.grad = None
        self.decay = decay
        self.updates = 0
        self.swapped = False

    @torch.no_grad()
    def update(self) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._avg, self._live, 1.0 - d)
        self.updates += 1

    @torch.no_grad()
    def swap(self) -> None:
        for p, a in zip(self._live, self._avg):
            tmp = p.clone()
            p.copy_(a)
            a.copy_(tmp)
        self.swapped = not self.swapped

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "swapped": self.swapped,
                "shadow": {n: a.clone() for n, a in zip(self.names, self._avg)}}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Adopt a saved state (model files are checked when they are read, in ``base``)."""
        for n, a in zip(self.names, self._avg):
            a.copy_(state["shadow"][n])
        self.updates = int(state["updates"])
        self.swapped = bool(state["swapped"])


def make_optimizer(spec: str | Callable, params: list, learning_rate: Schedule, momentum: Schedule):
    """The optimizer for ``spec``: "sgd" (``MomentumSGD``), "adam", or a callable(params)."""
    lr0 = float(at_epoch(learning_rate, 0))
    if callable(spec):
        return spec(params)
    if spec == "sgd":
        return MomentumSGD(params, lr=lr0, momentum=float(at_epoch(momentum, 0)))
    if spec == "adam":
        return torch.optim.Adam(params, lr=lr0)
    raise ValueError(f"unknown optimizer {spec!r}; use 'sgd', 'adam' or a callable(params)")


def batches(X: Tensor, batch_size: int, generator: torch.Generator, group: distributed.Group | None = None):
    """Shuffled batches of X as (rows, global batch size), gathered into one reused buffer (valid
    until the next batch).  With a process group, the rows are this rank's contiguous share of the
    global batch (the permutation is the same on every rank: ``generator`` is shared)."""
    n = X.shape[0]
    perm = torch.randperm(n, generator=generator, device=X.device)
    buf = X.new_empty((min(batch_size, n), X.shape[1]))
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        n_global = len(idx)
        if group is not None:
            lo, hi = distributed.shard_bounds(n_global, group)
            idx = idx[lo:hi]
        out = buf if len(idx) == len(buf) else buf[: len(idx)]
        yield torch.index_select(X, 0, idx, out=out), n_global


class TrainerBase:
    """What every fit loop keeps between updates: the optimizer, schedules, the epoch counter,
    the divergence guard, the resume state and the data-parallel plumbing.  Subclasses own the
    chains (``_chains``, ``_load_chains``, ``_chain_groups``) and the update (``run_epoch``)."""

    def __init__(self, model: torch.nn.Module, config: Any, generator: torch.Generator) -> None:
        self.model = model
        self.config = config
        self.generator = generator
        self.epoch = 0
        self.optimizer = make_optimizer(config.optimizer, list(model.parameters()), config.learning_rate,
                                        config.momentum)
        self.hidden_activity: Tensor | None = None  # damped mean hidden activity for sparsity
        self._grad_momentum = 0.0
        self._fused = isinstance(self.optimizer, MomentumSGD)
        self.group = distributed.current()
        self._sampler = None if self.group is None else torch.Generator(device=generator.device)
        self._gathered_chains: dict[str, Tensor] | None = None
        decay = float(getattr(config, "ema_decay", 0.0))
        self.average = ParameterAverage(model, decay) if decay else None

    @property
    def sampler(self) -> torch.Generator:
        """The stream for sampling: the estimator's generator, or under a process group a per-rank
        stream re-seeded from it at every epoch (``generator`` itself then only shuffles)."""
        return self.generator if self.group is None else self._sampler

    def _data(self, v: Tensor, visible) -> Tensor:
        """The training rows as the update sees them: the rows, or with ``sample_data`` a fresh draw
        from the ``visible`` units with the rows as their means."""
        return visible.sample(v, 1.0, self.sampler, mean=v) if self.config.sample_data else v

    def _begin_epoch(self) -> None:
        self._apply_schedules()
        if self.group is not None:
            distributed.reseed_rank_stream(self._sampler, self.generator, self.group)

    def _write_weights(self, n_rows: int, n_global: int, n_chains: int, n_chains_global: int, like: Tensor):
        """(w_pos, w_neg, momentum) for the gradient writer: None/None/momentum for one process;
        under a process group every row weighs 1 / (global rows) and only rank 0 adds momentum."""
        if self.group is None:
            return None, None, self._grad_momentum
        w_pos = like.new_full((n_rows,), 1.0 / n_global)
        w_neg = like.new_full((n_chains,), 1.0 / n_chains_global)
        return w_pos, w_neg, self._grad_momentum if self.group.is_main else 0.0

    def _sync(self, rows: list[Tensor], n_global: int) -> list[Tensor]:
        """Batch means of ``rows`` (each (this rank's rows, d)); under a process group, summed over
        ranks in one all-reduce together with every parameter's ``.grad``."""
        if self.group is None:
            return [r.mean(0) for r in rows]
        means = [r.sum(0) / n_global for r in rows]
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        distributed.all_reduce_sum_(grads + means)
        return means

    def _apply_schedules(self) -> None:
        c, e = self.config, self.epoch
        if not callable(c.optimizer):
            for g in self.optimizer.param_groups:
                g["lr"] = float(at_epoch(c.learning_rate, e))
                if "momentum" in g:
                    g["momentum"] = float(at_epoch(c.momentum, e))
        accumulates = getattr(self.optimizer, "accumulates_momentum", False)
        self._grad_momentum = float(at_epoch(c.momentum, e)) if accumulates else 0.0

    def reconfigure(self, config: Any) -> None:
        """Adopt a configuration changed between fits (``set_params`` before a warm start, a resume or
        a save): schedules and rates simply follow it; a different optimizer starts with fresh state
        and a different sampler (kind, number of chains or temperatures) with fresh chains, started
        from the data as in a new fit, so that the state always matches the configuration."""
        old, self.config = self.config, config
        if config.optimizer != old.optimizer:
            self.optimizer = make_optimizer(config.optimizer, list(self.model.parameters()), config.learning_rate,
                                            config.momentum)
            self._fused = isinstance(self.optimizer, MomentumSGD)
        if self._sampler_layout(config) != self._sampler_layout(old):
            self._restart_chains()
            self._gathered_chains = None

    def _sampler_layout(self, config: Any) -> Any:
        """What the saved chains' layout depends on (chains restart when it changes)."""
        return None

    def _restart_chains(self) -> None:
        pass

    def _optimizer_step(self) -> None:
        if self._fused:
            self.optimizer.apply()
        else:
            self.optimizer.step()

    # -- the parameter average --------------------------------------------------------------
    def use_live(self) -> None:
        """Before training: the model holds the live parameters again, and the average follows the
        configuration (``ema_decay`` 0 drops it; a new one starts from the current parameters)."""
        a, decay = self.average, float(getattr(self.config, "ema_decay", 0.0))
        if a is not None and a.swapped:
            a.swap()
        if not decay:
            self.average = None
        elif a is None:
            self.average = ParameterAverage(self.model, decay)
        else:
            a.decay = decay

    def use_average(self) -> None:
        """After training: the model holds the averaged parameters (the live ones wait in the shadow)."""
        if self.average is not None and not self.average.swapped:
            self.average.swap()

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """The model holds the averaged parameters inside the block (for metrics and checkpoints)."""
        swap = self.average is not None and not self.average.swapped
        if swap:
            self.average.swap()
        try:
            yield
        finally:
            if swap:
                self.average.swap()

    def _update_average(self) -> None:
        if self.average is not None:
            self.average.update()

    def _chains(self) -> dict[str, Tensor]:
        return {}

    def _load_chains(self, chains: dict[str, Tensor]) -> None:
        pass

    def _chain_groups(self, key: str) -> int | None:
        """How the saved chain tensor ``key`` is laid out: a number of replica groups whose chains
        (rows within a group) are split across ranks, or None for a value every rank shares."""
        return 1

    # -- divergence guard ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A copy of everything an epoch changes (parameters, optimizer, chains, random state)."""
        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "trainer": copy.deepcopy(self._local_state()), "rng": self.generator.get_state()}

    def restore(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        self._load_local_state(copy.deepcopy(snap["trainer"]))
        self.generator.set_state(snap["rng"])

    def is_finite(self) -> bool:
        """Whether parameters, gradients and chains are all finite (on every rank; one host sync)."""
        tensors = [t for p in self.model.parameters() for t in (p, p.grad) if t is not None]
        tensors += [t for t in self._chains().values() if t.is_floating_point()]
        ok = bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
        return ok if self.group is None else distributed.all_true(ok, tensors[0].device)

    # -- state for resuming ------------------------------------------------------------------
    def _local_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epoch": self.epoch, "optimizer": self.optimizer.state_dict(),
                                 "chains": self._chains()}
        if self.hidden_activity is not None:
            state["hidden_activity"] = self.hidden_activity
        if self.average is not None:
            state["average"] = self.average.state_dict()
        return state

    def _load_local_state(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._load_chains(state.get("chains", {}))
        self.hidden_activity = state.get("hidden_activity")
        saved = state.get("average")
        if saved is None:
            self.average = None
        else:
            if self.average is None:
                self.average = ParameterAverage(self.model, float(getattr(self.config, "ema_decay", 0.0)))
            self.average.load_state_dict(saved)

    def gather_state(self) -> None:
        """Collect every rank's chains for ``state_dict`` (a collective: all ranks call it)."""
        if self.group is None:
            return
        full = {}
        for key, t in self._chains().items():
            groups = self._chain_groups(key)
            if groups is None:
                full[key] = t
            else:
                full[key] = distributed.gather_rows(t.reshape(groups, -1, *t.shape[1:]), 1).flatten(0, 1)
        self._gathered_chains = full

    def state_dict(self) -> dict[str, Any]:
        """The resume state; under a process group the chains of all ranks as of the last
        ``gather_state`` (``fit`` gathers them for every checkpoint and when it returns)."""
        state = self._local_state()
        if self.group is not None:
            state["chains"] = self._gathered_chains if self._gathered_chains is not None else {}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Adopt a saved state; under a process group, take this rank's share of the saved chains."""
        if self.group is not None:
            state = dict(state)
            chains = {}
            for key, t in state.get("chains", {}).items():
                groups = self._chain_groups(key)
                chains[key] = t if groups is None else distributed.split_rows(
                    t.reshape(groups, -1, *t.shape[1:]), self.group, 1).flatten(0, 1)
            state["chains"] = chains
        self._load_local_state(state)


class Trainer(TrainerBase):
    """Runs epochs of updates on an ``RBMModel``; the negative-phase strategy keeps the chains."""

    def __init__(self, model: RBMModel, config: TrainingConfig, generator: torch.Generator) -> None:
        super().__init__(model, config, generator)
        self._restart_chains()

    def _sampler_layout(self, config: TrainingConfig) -> tuple:
        persistent = config.persistent or config.n_temperatures > 1
        return (persistent, config.n_chains or config.batch_size, config.n_temperatures) if persistent else ()

    def _restart_chains(self) -> None:
        c = self.config
        self.n_chains = c.n_chains or c.batch_size  # over all ranks
        n_local = self.n_chains
        if self.group is not None and (c.persistent or c.n_temperatures > 1):
            if self.n_chains < self.group.world_size:
                raise ValueError(f"n_chains={self.n_chains} persistent chains cannot be split over "
                                 f"{self.group.world_size} ranks")
            lo, hi = distributed.shard_bounds(self.n_chains, self.group)
            n_local = hi - lo
        self.phase = make_negative_phase(c.persistent, n_local, c.n_temperatures)

    def _chains(self) -> dict[str, Tensor]:
        return self.phase.state_dict()

    def _load_chains(self, chains: dict[str, Tensor]) -> None:
        self.phase.load_state_dict(chains)

    def _chain_groups(self, key: str) -> int | None:
        return None if key == "parity" else getattr(self.phase, "n_temperatures", 1)

    # -- one update ------------------------------------------------------------------------
    def step(self, v: Tensor, k: int, n_global: int | None = None) -> None:
        """One update on the batch v (this rank's rows of a global batch of ``n_global`` rows)."""
        c, m, g = self.config, self.model, self.sampler
        n_global = v.shape[0] if n_global is None else n_global
        v = self._data(v, m.visible)
        if c.dropout:
            keep = torch.rand(v.shape, generator=g, dtype=v.dtype, device=v.device) >= c.dropout
            v = v * keep
        pos = m.start(v, sample_h=c.sample_h_states and self.phase.needs_positive_states, generator=g)
        neg = self.phase.negative(m, pos, k, sample_v=c.sample_v_states, sample_h=c.sample_h_states,
                                  generator=g)
        chains_global = n_global if isinstance(self.phase, ContrastiveDivergence) else self.n_chains
        w_pos, w_neg, momentum = self._write_weights(v.shape[0], n_global, neg.v.shape[0], chains_global, v)
        m.write_gradient(v, pos.h_mean, neg.v, neg.h_mean, w_pos, w_neg, momentum=momentum)
        sparse = c.sparsity_target is not None and c.sparsity_cost
        rows = [pos.h_mean, v] if sparse else []
        if c.centering:
            rows += [m.visible.statistic(v), m.hidden.statistic(pos.h_mean)]
        means = self._sync(rows, n_global)
        W = m.W
        if c.l2:
            W.grad.add_(W.detach(), alpha=c.l2)
        if sparse:
            q_batch, v_mean = means[0], means[1]
            if self.hidden_activity is None:
                self.hidden_activity = q_batch.detach().clone()
            else:
                self.hidden_activity.mul_(c.sparsity_damping).add_(q_batch, alpha=1 - c.sparsity_damping)
            # d/d(input) of the cross-entropy between target and activity, through the bias and W
            d = (self.hidden_activity - c.sparsity_target) * c.sparsity_cost
            m.hidden.bias.grad.add_(d)
            W.grad.addr_(v_mean, d)
        self._optimizer_step()
        if c.max_norm is not None:
            with torch.no_grad():
                norms = W.norm(dim=0, keepdim=True).clamp_min_(c.max_norm)
                W.mul_(c.max_norm / norms)
        if c.centering:
            r = c.centering_rate
            mu = torch.lerp(m.visible_offset, means[-2], r)
            lam = torch.lerp(m.hidden_offset, means[-1], r)
            m.set_offsets(mu, lam)
            if self.average is not None:
                self.average.shadow.set_offsets(mu, lam)
        self._update_average()

    def run_epoch(self, X: Tensor) -> None:
        """One pass over X (on the model's device) in shuffled batches."""
        self._begin_epoch()
        k = int(at_epoch(self.config.k, self.epoch))
        with torch.no_grad():
            if self.config.centering and not self.model.centered:  # a fresh model, or centering turned on
                self._init_offsets(X)
            for v, n in batches(X, self.config.batch_size, self.generator, self.group):
                self.step(v, k, n)
        self.epoch += 1

    def _init_offsets(self, X: Tensor) -> None:
        """Start the centering offsets at the data means of the visible statistic and at the hidden
        units' default (0.5 for Bernoulli); the distribution is unchanged, in the average too."""
        m = self.model
        mu, lam = m.visible.statistic(X).mean(0), m.hidden.default_offset()
        m.set_offsets(mu, lam)
        if self.average is not None:
            self.average.shadow.set_offsets(mu, lam)
